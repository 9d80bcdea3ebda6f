"""One training run: precision (``precision``), the trainer (``trainer``) and the auto target (``target``)."""
