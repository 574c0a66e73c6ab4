"""The application model, free of Qt: the experiment (ground truth, mask, noise, simulated measurement, finished
runs) with psygnal signals, reconstruction jobs and how one runs, image sources, session and results bundles (one
format for the app and ``genreg recon --out``), PSNR sweeps and the covariance inspector's decoding. The GUI
(:mod:`genreg_viewer.gui`) binds widgets to it; scripts and tests can drive it without a window."""

from .experiment import CUSTOM_MASK_SPEC, IMAGE_SIZE, ExperimentState, ImageInfo
from .jobs import ProgressUpdate, ReconJob, run_job
from .runs import RunRecord, describe_setting

__all__ = ["CUSTOM_MASK_SPEC", "IMAGE_SIZE", "ExperimentState", "ImageInfo", "ProgressUpdate", "ReconJob", "RunRecord",
           "describe_setting", "run_job"]
