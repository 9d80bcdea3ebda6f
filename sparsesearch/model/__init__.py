"""The model: its shape and weight list (``shape``), the FLOP model (``flops``), the pre-trained embedding and
tokenizer (``embedding``) and the network (``network``). ``shape`` and ``flops`` are pure Python."""
