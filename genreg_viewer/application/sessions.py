"""Sessions and results of the application's experiment as files: save, open and export an
:class:`ExperimentState`.

A *session* stores the experiment and the GUI settings, so the whole window can be restored; a *results* file
(``kind = "results"``) is the same without them. The layout of the metadata and its checks are in
:mod:`.session_schema`, the storage (``.npz``, ``.h5``, folders) in :mod:`.bundles`. Opening checks the whole
bundle before :meth:`ExperimentState.restore` replaces the state at once: a bad file is one
:class:`~.bundles.SessionError` and changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .bundles import Bundle, SessionError, read_bundle, write_bundle
from .experiment import ExperimentState
from .session_schema import build_bundle, check_bundle


def make_bundle(state: ExperimentState, kind: str = "session", gui: dict[str, Any] | None = None) -> Bundle:
    """The image, mask, measurement setting and runs of ``state`` (``kind``: ``session`` or ``results``)."""
    if state.image is None:
        raise ValueError("there is nothing to save: open an image first")
    return build_bundle(kind, state.image, state.mask, state.mask_spec, state.sigma, state.seed, state.image_info,
                        state.results, state.adjoint, None if gui is None else {"gui": gui})


def restore_bundle(bundle: Bundle, state: ExperimentState) -> dict[str, Any]:
    """Load the image, mask, noise and runs of ``bundle`` into ``state``; return its (checked) GUI settings.

    The whole bundle is checked first (:func:`check_bundle`); a bad one raises :class:`SessionError` and leaves
    ``state`` exactly as it was."""
    contents = check_bundle(bundle)
    state.restore(contents.image, contents.info, contents.mask, contents.mask_spec, contents.sigma, contents.seed,
                  contents.records)
    return contents.gui


def save_session(path: str | Path, state: ExperimentState, gui: dict[str, Any] | None = None) -> Path:
    """Write ``state`` and the window's settings ``gui`` as a session to ``path`` (see :func:`write_bundle`)."""
    return write_bundle(path, make_bundle(state, "session", gui or {}))


#: file types of a results export (the app's File > Export results, ``genreg recon --out``)
RESULTS_SUFFIXES = (".npz", ".h5", ".hdf5")


def check_results_path(path: str | Path) -> Path:
    """``path`` if it names a results file (``.npz``/``.h5``), else a ``ValueError`` saying so."""
    if Path(path).suffix.lower() not in RESULTS_SUFFIXES:
        raise ValueError(f"cannot export results to {Path(path).name}: use a .npz or .h5 file")
    return Path(path)


def export_results(path: str | Path, state: ExperimentState) -> Path:
    """Write the ground truth, mask, adjoint and every run's image and metrics to ``.npz``/``.h5``."""
    return write_bundle(check_results_path(path), make_bundle(state, "results"))


def load_session(path: str | Path, state: ExperimentState) -> dict[str, Any]:
    """Read, check and apply the session at ``path`` (see :func:`restore_bundle`); returns its GUI settings."""
    bundle = read_bundle(path)
    try:
        return restore_bundle(bundle, state)
    except SessionError as exc:
        raise SessionError(f"{Path(path).name}: {exc}") from None
