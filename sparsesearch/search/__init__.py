"""The search: the space (``space``), the Ray Tune trial (``trial``), the driver (``driver``) and the worker
process helpers (``process``)."""
