"""Data: loading fastMRI .h5 / images / .npy (``loading``), the synthetic knee phantom (``phantom``) and building
training/test slice sets (``dataset``)."""
