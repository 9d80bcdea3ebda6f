"""sparsesearch: search dynamic weight-sparsity training recipes by FLOP-adjusted time to a target MLM loss."""

__version__ = "0.1.0"
