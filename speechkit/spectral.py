"""Spectral comparisons shared by the vocoder and text-to-speech evaluations.

Both judge generated audio against a recording of the same words: mel cepstra and their distance
(mel-cepstral distortion, Kubichek 1993, in dB), and a figure of the two log-mel spectrograms one
above the other on one colour scale, so a listener's "it sounds smeared" has a picture.
"""

import os

import numpy as np
import scipy.fft
from matplotlib.figure import Figure

from speechkit.frontend import log_mel

__all__ = ["mel_cepstra", "cepstral_distortion_db", "save_mel_pair"]

_DB = 10.0 / np.log(10.0)


def mel_cepstra(log_mel_power, *, floor, num_cepstra=24):
    """Cepstra ``c_1 .. c_num_cepstra`` of log-mel power frames, floored at ``floor`` first.

    Args:
        log_mel_power: float [frames, n_mels], natural log of mel power.
        floor: float, the lowest log power kept (a fixed distance below the reference's peak keeps
            silence from dominating).
        num_cepstra: int, cepstra kept (``c_0``, the loudness, is left out).

    Returns:
        float64 [frames, num_cepstra].
    """
    amplitude = 0.5 * np.maximum(np.asarray(log_mel_power, np.float64), floor)
    return scipy.fft.dct(amplitude, type=2, norm="ortho", axis=-1)[..., 1:num_cepstra + 1]


def cepstral_distortion_db(reference, estimate):
    """Per-frame mel-cepstral distortion in dB between paired cepstra [frames, num_cepstra]."""
    return _DB * np.sqrt(2.0 * np.sum((np.asarray(reference) - np.asarray(estimate)) ** 2, axis=-1))


def save_mel_pair(path, audios, labels, *, frontend, title, dynamic_range_db=78.0):
    """Atomically write a PNG of the log-mel spectrograms of ``audios``, one above the other.

    Args:
        path: str, the ``.png`` to write.
        audios: two float32 [samples] waveforms, for example a recording and its synthesis.
        labels: two str, the row names.
        frontend: FrontendConfig whose log-mel is drawn.
        title: str.
        dynamic_range_db: float, the colour scale spans this far below the louder peak.
    """
    mels = [log_mel(a, config=frontend).numpy().T for a in audios]
    hi = max(m.max() for m in mels)
    lo = max(min(m.min() for m in mels), hi - dynamic_range_db / _DB)
    fig = Figure(figsize=(10, 5))
    axes = fig.subplots(len(mels), 1, sharex=True)
    for ax, mel, label in zip(axes, mels, labels):
        image = ax.imshow(mel, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma",
                          extent=[0, mel.shape[1] * frontend.hop_ms / 1000, 0, mel.shape[0]])
        ax.set_ylabel(f"{label}\nmel band")
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title)
    fig.colorbar(image, ax=axes, label="log mel power")
    tmp = f"{path[:-4]}.tmp.{os.getpid()}.png"
    fig.savefig(tmp, dpi=80)
    os.replace(tmp, path)
