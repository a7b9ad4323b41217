"""Test signals with a known pitch, shared by the pitch-feature and pulse tests."""

import numpy as np


def voiced(f0, seconds=0.5, sample_rate=16000):
    """A vowel-like tone: harmonics of ``f0`` falling 6 dB an octave, shaped by one broad formant at 600 Hz."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    x = sum(np.sin(2 * np.pi * h * f0 * t) / h * (1 + (h * f0 / 600) ** 2) ** -0.5
            for h in range(1, int(sample_rate / 2 / f0)))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)
