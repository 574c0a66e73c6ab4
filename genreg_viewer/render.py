"""Rendering arrays to PNG files without Qt (CLI exports, docs): grey images and diverging correlation maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .fileio import atomic_path


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
    """A red/blue correlation map (diverging colormap symmetric about zero, levels [-1, 1]) with a star at
    ``pixel`` and a colour bar, optionally over a faint grey ``background`` image; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4.6, 4), dpi=120)
    if background is not None:
        axes.imshow(background, cmap="gray", vmin=0, vmax=1)
    shown = axes.imshow(correlation, cmap="RdBu_r", vmin=-1, vmax=1, alpha=0.85 if background is not None else 1.0)
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
