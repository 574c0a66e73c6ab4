"""Training loops for the networks behind the learned methods (``genreg train ...``)."""
