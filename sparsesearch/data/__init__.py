"""Training data: the corpus (``corpus``), tokenized and packed into sequences, masked into MLM batches
(``batches``)."""
