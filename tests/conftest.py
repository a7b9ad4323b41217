import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import pytest


@pytest.fixture
def tone():
    """A 1.2 s, 16 kHz test signal: a 440 Hz tone plus a little noise (float32 in [-1, 1])."""
    rng = np.random.default_rng(0)
    t = np.arange(int(16000 * 1.2) + 37) / 16000
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
