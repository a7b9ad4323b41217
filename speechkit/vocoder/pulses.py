"""A pulse-train input that tells an LPC vocoder's network where the glottal pulses go.

The network of an LPC vocoder has to place one pulse per pitch period in the excitation. Given the mel
and the mel-implied pitch features (``speechkit.vocoder.pitch``), wavenet-mini had not learned this after
9,000 steps: pYIN found 12% of its output's frames voiced, against 83.5% of the originals', and the filter
turned its noise into whispered speech. Neural source-filter vocoders (Wang, Takaki and Yamagishi, 2019)
do not ask the network to find the period. They give it a periodic source at the pitch, and the network
shapes it. This module builds that source from the mel alone, so a text-to-speech model's mel needs
nothing more.

The network reads four features per sample, each weighted by the frame's voicing: an impulse at each
pulse, the sine and cosine of the phase within the period, and the voicing itself. The period and the
voicing come from the autocorrelation that the mel implies (``implied_pitch``). Only the phase differs
between training and generation:

- in generation (``free_pulses``), the phase runs freely at the implied period, in TensorFlow ops, so the
  exported model computes it in its graph;
- in training (``aligned_pulses``), the pulses sit on the target residual's own peaks, tracked one
  implied period at a time. The network then learns that an input pulse means a pulse in its output.
"""

import numpy as np
import tensorflow as tf

from speechkit.vocoder.lpc import implied_autocorrelation
from speechkit.vocoder.pitch import MAX_PITCH_HZ, MIN_PITCH_HZ

__all__ = ["PULSE_FEATURES", "VOICING", "implied_pitch", "sample_frames", "free_pulses", "aligned_pulses"]

PULSE_FEATURES = 4
VOICING = (0.3, 0.7)  # the implied normalised autocorrelation at the period: unvoiced below, fully voiced above
_SEARCH = (0.75, 1.25)  # the next pulse is looked for this many implied periods after the last one


def implied_pitch(log_mel, *, frontend):
    """The period and voicing of each frame, from the autocorrelation that its mel implies.

    Args:
        log_mel: float32 [..., frames, n_mels], the front end's unnormalised log-mel.
        frontend: FrontendConfig that produced it.

    Returns:
        (period, voicing): float32 tensors [..., frames]; the period in samples (50-400 Hz), the voicing
        in [0, 1] (``VOICING`` maps the normalised autocorrelation at the period to it).
    """
    rate = frontend.sample_rate
    low, high = round(rate / MAX_PITCH_HZ), round(rate / MIN_PITCH_HZ)
    r, _ = implied_autocorrelation(log_mel, frontend=frontend)
    normalized = r[..., low:high + 1] / r[..., :1]
    period = tf.cast(low + tf.argmax(normalized, axis=-1, output_type=tf.int32), tf.float32)
    strength = tf.reduce_max(normalized, axis=-1)
    voicing = tf.clip_by_value((strength - VOICING[0]) / (VOICING[1] - VOICING[0]), 0.0, 1.0)
    return period, voicing


def sample_frames(num_samples, *, hop, context, frames):
    """int32 [num_samples]: the conditioning-mel frame of each sample (frame ``f`` is centred on sample
    ``(f - context) * hop``), at most ``frames - 1``."""
    index = context + (tf.range(num_samples) + hop // 2) // hop
    return tf.minimum(index, frames - 1)


def _features(impulse, phase, voicing):
    angle = 2.0 * np.pi * phase
    return tf.stack([voicing * impulse, voicing * tf.sin(angle), voicing * tf.cos(angle), voicing], axis=-1)


def free_pulses(mel, *, frontend, context, num_samples=None):
    """The pulse features of generation: a pulse every implied period, with a free-running phase.

    Args:
        mel: float32 [batch, frames + 2 * context, n_mels], the conditioning mel (``conditioning_mel``).
        frontend: FrontendConfig.
        context: int, the conditioning frames on each side.
        num_samples: int or scalar tensor, the samples to describe (default ``frames * hop``).

    Returns:
        float32 [batch, num_samples, PULSE_FEATURES].
    """
    hop = frontend.hop_length
    frames = tf.shape(mel)[1]
    if num_samples is None:
        num_samples = (frames - 2 * context) * hop
    period, voicing = implied_pitch(mel, frontend=frontend)
    index = sample_frames(num_samples, hop=hop, context=context, frames=frames)
    period, voicing = tf.gather(period, index, axis=1), tf.gather(voicing, index, axis=1)
    cycles = tf.cumsum(1.0 / tf.cast(period, tf.float64), axis=1)
    whole = tf.floor(cycles)
    impulse = whole - tf.pad(whole[:, :-1], [[0, 0], [1, 0]])
    phase = tf.cast(cycles - whole, tf.float32)
    return _features(tf.cast(impulse, tf.float32), phase, voicing)


def _track(magnitude, period, start, stop):
    """Pulse positions in ``[start, stop)``: the strongest sample of the first period, then the strongest
    of each span ``_SEARCH`` periods after the last pulse, while the whole span lies in the stretch (a cut
    span would put its last pulse on the strongest noise sample)."""
    first = start + int(np.argmax(magnitude[start:min(start + int(period[start]) + 1, stop)]))
    pulses = [first]
    while True:
        last = pulses[-1]
        lo, hi = last + int(_SEARCH[0] * period[last]), last + int(_SEARCH[1] * period[last]) + 1
        if hi > stop:
            return pulses
        pulses.append(lo + int(np.argmax(magnitude[lo:hi])))


def aligned_pulses(residual, period, voicing):
    """The pulse features of training: pulses on the residual's peaks, one implied period apart.

    Each voiced stretch (voicing > 0) is tracked on its own; the phase rises by one from pulse to pulse
    and runs on at the implied period before the first pulse and after the last.

    Args:
        residual: float numpy [samples], the excitation the network is trained to produce, sample ``t``
            at position ``t``.
        period, voicing: float numpy [samples], ``implied_pitch`` at each sample's frame.

    Returns:
        float32 numpy [samples, PULSE_FEATURES].
    """
    residual, period, voicing = (np.asarray(a, np.float64) for a in (residual, period, voicing))
    n = len(residual)
    impulse, phase = np.zeros(n), np.zeros(n)
    magnitude = np.abs(residual)
    voiced = np.concatenate([[False], voicing > 0, [False]])
    edges = np.flatnonzero(np.diff(voiced.astype(np.int8)))
    for start, stop in zip(edges[::2], edges[1::2]):
        pulses = np.array(_track(magnitude, period, start, stop))
        impulse[pulses] = 1.0
        t = np.arange(start, stop)
        counts = np.arange(len(pulses), dtype=np.float64)
        stretch = np.interp(t, pulses, counts)
        before, after = t < pulses[0], t > pulses[-1]
        stretch[before] = (t[before] - pulses[0]) / period[pulses[0]]
        stretch[after] = counts[-1] + (t[after] - pulses[-1]) / period[pulses[-1]]
        phase[start:stop] = stretch - np.floor(stretch)
    return _features(tf.constant(impulse, tf.float32), tf.constant(phase, tf.float32),
                     tf.constant(voicing, tf.float32)).numpy()
