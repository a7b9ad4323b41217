"""Pitch features from the log-mel alone, for a vocoder's conditioning (LPCNet's pitch inputs, from the mel).

An LPC vocoder's network has to place the glottal pulses, one pitch period apart, and an 80-band mel
holds the pitch only implicitly, in the harmonics its lowest bands resolve. LPCNet (Valin and Skoglund,
2019) gives its network the period and the correlation at it explicitly. Here they come from the mel
itself, so that a text-to-speech model's mel needs nothing else: the autocorrelation that the mel's power
implies (``speechkit.vocoder.lpc.implied_autocorrelation``), normalised by lag 0 and read at log-spaced
lags over the voice's pitch range. A voiced frame shows a peak at its period; an unvoiced one shows
none. The strongest of 48 such lags is within 50 cents of pYIN's pitch in 84.5% of the voiced frames of the
mini test set: 88-95% for the five voices above 160 Hz, 58-74% for the three at 92-121 Hz, whose harmonics
the lowest bands barely resolve (``benchmarks/bench_pitch.py``). The network reads the whole curve, with no
hard period or voicing decision.
"""

import numpy as np
import tensorflow as tf

from speechkit.vocoder.lpc import implied_autocorrelation

__all__ = ["pitch_lags", "pitch_features", "MIN_PITCH_HZ", "MAX_PITCH_HZ"]

MIN_PITCH_HZ = 50.0
MAX_PITCH_HZ = 400.0


def pitch_lags(count, sample_rate):
    """int numpy [count], distinct lags in samples, log-spaced from the period of MAX_PITCH_HZ to MIN_PITCH_HZ's.

    Raises:
        ValueError: ``count`` < 2, or more lags than the range holds distinct integers.
    """
    low, high = sample_rate / MAX_PITCH_HZ, sample_rate / MIN_PITCH_HZ
    lags = np.unique(np.round(np.geomspace(low, high, int(count))).astype(np.int64))
    if count < 2 or len(lags) != count:
        raise ValueError(f"need 2 to about {int(high - low)} distinct pitch lags between {low:g} and {high:g} "
                         f"samples, received: {count}")
    return lags


def pitch_features(log_mel, *, frontend, count):
    """The mel-implied normalised autocorrelation at ``count`` pitch lags, per frame: in [-1, 1].

    Pure TensorFlow ops, so the exported vocoder computes them from its input mel in the graph.

    Args:
        log_mel: float32 [..., frames, n_mels], the front end's unnormalised ``log_mel``.
        frontend: FrontendConfig that produced it.
        count: int >= 2, the number of lags (``pitch_lags``).

    Returns:
        float32 tensor [..., frames, count].
    """
    lags = pitch_lags(count, frontend.sample_rate)
    if lags[-1] >= frontend.mel_fft_length // 2:
        raise ValueError(f"a {MIN_PITCH_HZ:g} Hz period ({lags[-1]} samples) needs mel_fft_length > {2 * lags[-1]}, "
                         f"received: {frontend.mel_fft_length}")
    r, _ = implied_autocorrelation(log_mel, frontend=frontend)
    lags = tf.constant(lags, tf.int32)
    return tf.gather(r, lags, axis=-1) / r[..., :1]
