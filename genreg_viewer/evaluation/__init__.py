"""Dataset-scale evaluation (:mod:`.evaluate`, ``genreg evaluate``) and calibration of the posterior std maps
(:mod:`.calibration`, ``genreg calibrate``)."""
