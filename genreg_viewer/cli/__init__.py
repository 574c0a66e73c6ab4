"""The ``genreg`` command-line interface: a thin layer over the core library."""
