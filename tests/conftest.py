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
