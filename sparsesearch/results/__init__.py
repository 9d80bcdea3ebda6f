"""Results, read from stored experiments only: the trial table (``table``), the Pareto front (``pareto``),
figures (``plots``), the console summary (``summary``), the export files (``export``) and the report
(``report``). No torch, no Ray."""
