import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

# 128x128 FFTs and small convolutions run faster on one thread than two (thread start-up dominates)
torch.set_num_threads(1)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def private_weight_set(tmp_path):
    """A weight set folder holding a copy of the phantom set's diagonal VAE and its base (others fall back)."""
    import shutil

    from genreg_viewer.weight_sets import resolve_weight_set

    folder = tmp_path / "weights"
    folder.mkdir()
    for name in ("vae_identity", "vae_diagonal"):
        for suffix in (".safetensors", ".json"):
            shutil.copy(resolve_weight_set("phantom").folder / f"{name}{suffix}", folder / f"{name}{suffix}")
    return folder
