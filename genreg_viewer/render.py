"""Rendering arrays to PNG files without Qt (CLI exports, docs): grey images and diverging correlation maps.

:data:`DIVERGING_STOPS` is the one blue-white-red map of the project, used for correlation rows and differences in
CLI PNGs and in the app alike (the app builds its pyqtgraph map from the same stops): ColorBrewer's RdBu with its
centre replaced by pure white, so a value of exactly 0 is white (``#ffffff``) and the limits are always symmetric,
``[-v, v]`` (``[-1, 1]`` for correlations).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .fileio import atomic_path

#: ``(position in [0, 1], "#rrggbb")``: -v at 0, 0 at 0.5 (white), +v at 1; blue for negative, red for positive
DIVERGING_STOPS = (
    (0.0, "#053061"),
    (0.125, "#2166ac"),
    (0.25, "#4393c3"),
    (0.375, "#92c5de"),
    (0.5, "#ffffff"),
    (0.625, "#f4a582"),
    (0.75, "#d6604d"),
    (0.875, "#b2182b"),
    (1.0, "#67001f"),
)


def diverging_rgb(values: np.ndarray, limit: float) -> np.ndarray:
    """``values`` coloured with :data:`DIVERGING_STOPS` over the symmetric range ``[-limit, limit]`` (clipped):
    ``(..., 3)`` floats in [0, 1], linear between the stops; exactly white at 0."""
    if not limit > 0:
        raise ValueError(f"the colour limit must be positive, got {limit}")
    positions = np.array([p for p, _ in DIVERGING_STOPS])
    colours = np.array([[int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)] for _, c in DIVERGING_STOPS])
    t = np.clip((np.asarray(values, dtype=np.float64) / limit + 1) / 2, 0, 1)
    return np.stack([np.interp(t, positions, colours[:, k]) for k in range(3)], axis=-1)


def diverging_matplotlib():
    """:data:`DIVERGING_STOPS` as a matplotlib colormap (256 levels, so 0 falls on the white stop's bin)."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("genreg-diverging", list(DIVERGING_STOPS), N=257)


def save_grey_png(image: np.ndarray, path: str | Path, vmin: float = 0.0, vmax: float = 1.0) -> Path:
    """Write a 2-D array as an 8-bit grey PNG (values clipped to ``[vmin, vmax]``), atomically."""
    from PIL import Image

    array = np.asarray(image, dtype=np.float64)
    scaled = np.clip((array - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.round(scaled * 255).astype(np.uint8)).save(tmp, format="PNG")
    return Path(path)


def save_correlation_png(
    correlation: np.ndarray, path: str | Path, pixel: tuple[int, int] | None = None, title: str | None = None,
    background: np.ndarray | None = None,
) -> Path:
    """A correlation map in the project's diverging map (:data:`DIVERGING_STOPS`: white exactly at 0, levels
    [-1, 1]) with a star at ``pixel`` and a colour bar, optionally over a faint grey ``background`` image; written
    atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4.6, 4), dpi=120)
    if background is not None:
        axes.imshow(background, cmap="gray", vmin=0, vmax=1)
    shown = axes.imshow(correlation, cmap=diverging_matplotlib(), vmin=-1, vmax=1,
                        alpha=0.85 if background is not None else 1.0)
    if pixel is not None:
        axes.plot(pixel[1], pixel[0], marker="*", color="gold", markersize=12, markeredgecolor="black")
    axes.set_axis_off()
    if title:
        axes.set_title(title, fontsize=9)
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04, label="correlation")
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return Path(path)
