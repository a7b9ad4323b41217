"""LPC source-filter split for the WaveNet vocoder (ExcitNet, Song et al. 2019; LPCNet, Valin and Skoglund 2019).

The spectral envelope is already in the log-mel that conditions the vocoder, so it is taken from there
rather than learned: linear prediction coefficients come from the log-mel alone (``lpc_from_log_mel``),
the WaveNet models the prediction residual (``excitation``), which is nearly white and far easier to
model than the waveform, and the all-pole filter 1 / A(z) puts the envelope back (``synthesize``, and
``synthesize_tf`` for the exported graph). ``excitation_span`` gives a training window's residual from the
coefficients of the frames around it.

The residual's level follows the speech's, over 60 dB, and a network that has to predict it from the mel
gets it wrong by more than 6 dB in one frame out of five (wavenet-mini, LPC campaign 1). The Levinson
recursion already predicts it: its final error is the residual's power per sample, within 2.5 dB (std) over
test utterances (``benchmarks/bench_lpc_level.py``). So a model can take that prediction, ``gain``, from the
mel as well (``source_filter``) and model the residual divided by it (``excitation(..., gain=gain)``): then
the level is the filter's job, and the network's only one is the excitation's shape: pulses, noise, or both.

Conventions: ``lpc[..., f, :]`` holds ``[1, a1, ..., ap]`` of A(z) = 1 + a1 z^-1 + ... + ap z^-p for
front-end frame ``f``. Sample ``t`` uses the frame whose centre is nearest, ``f(t) = min((t + hop // 2)
// hop, frames - 1)`` (frame ``f`` is centred on sample ``f * hop``), and the coefficients switch
abruptly halfway between frame centres. Analysis and synthesis read the same coefficients at every sample and start
from zero state, so ``synthesize(excitation(x, a), a) == x`` to float precision: the split itself loses
nothing, only the model's excitation does.

The coefficients come from the autocorrelation of the linear power that the mel power implies (through
the filterbank's pseudo-inverse), with a 60 Hz Gaussian lag window and a 1.0001 white-noise correction
(as in speech codecs, e.g. ITU-T G.729): both keep the normal equations well conditioned, so every frame's
filter is stable, even for silence or for a mel the acoustic model predicted.
"""

import functools
import math

import numba
import numpy as np
import tensorflow as tf

from speechkit.frontend import mel_filterbank

__all__ = ["implied_autocorrelation", "lpc_from_log_mel", "source_filter", "excitation", "excitation_span",
           "noise_excitation", "frame_power", "synthesize", "synthesize_tf", "EXCITATION_SCALE"]

LAG_WINDOW_HZ = 60.0
WHITE_NOISE_CORRECTION = 1.0001
MAX_REFLECTION = 0.999
_POWER_FLOOR = 1e-12  # relative to the mel power of the frame's loudest band; keeps r[0] > 0
# A gain-normalised residual is e / gain * EXCITATION_SCALE: on the mini test set its RMS is then about 0.08
# and 99.9% of its samples stay below 0.35 in magnitude, inside mu-law's [-1, 1] with room for pitch pulses.
EXCITATION_SCALE = 0.1


@functools.lru_cache(maxsize=8)
def _pseudo_inverse(frontend):
    """float32 numpy [n_mels, fft_bins], pinv of the front end's filterbank, computed eagerly even inside a graph."""
    with tf.init_scope():
        basis = mel_filterbank(frontend).numpy().astype(np.float64)
    return np.linalg.pinv(basis).astype(np.float32)


def _lag_window(order, sample_rate):
    """float64 numpy [order + 1]: Gaussian lag window with white-noise correction folded into lag 0."""
    lags = np.arange(order + 1)
    window = np.exp(-0.5 * (2.0 * math.pi * LAG_WINDOW_HZ * lags / sample_rate) ** 2)
    window[0] *= WHITE_NOISE_CORRECTION
    return window


def _window_energy(frontend):
    """float, sum of the squared mel analysis window (periodic Hann, as the front end's): r[0] of a frame over
    the signal's power per sample."""
    n = frontend.mel_frame_length
    return float(np.sum((0.5 - 0.5 * np.cos(2.0 * math.pi * np.arange(n) / n)) ** 2))


def implied_autocorrelation(log_mel, *, frontend):
    """The autocorrelation of each frame's windowed signal that its mel power implies, up to a level.

    The linear power comes through the filterbank's pseudo-inverse (negative bins clipped); its inverse
    FFT is the autocorrelation at every lag. The coefficients and the pitch do not depend on the level:
    scaling each frame to a peak band of 1 keeps exp() finite for any predicted mel and makes the floor
    relative.

    Args:
        log_mel: float32 [..., frames, n_mels], the front end's unnormalised ``log_mel``.
        frontend: FrontendConfig that produced it.

    Returns:
        ``(r, peak)``: float32 [..., frames, mel_fft_length], r[k] at lag k (circular past the half), and
        float32 [..., frames, 1], each frame's largest log-mel value: r times exp(peak) is the absolute one.
    """
    log_mel = tf.convert_to_tensor(log_mel, tf.float32)
    inverse = tf.constant(_pseudo_inverse(frontend))
    peak = tf.reduce_max(log_mel, axis=-1, keepdims=True)
    power = tf.nn.relu(tf.tensordot(tf.exp(log_mel - peak), inverse, axes=1)) + _POWER_FLOOR
    return tf.signal.irfft(tf.complex(power, tf.zeros_like(power)), fft_length=[frontend.mel_fft_length]), peak


def lpc_from_log_mel(log_mel, *, frontend, order=16, return_gain=False):
    """LPC coefficients of each frame of a log-mel: the envelope the synthesis filter restores.

    Pure TensorFlow ops, so that an exported vocoder derives the coefficients from its input mel in
    the graph. The Levinson-Durbin recursion is unrolled over ``order`` and runs in float64: it divides
    by a prediction error that may fall 40 dB below r[0] (the white-noise correction's limit), where
    float32 would keep few digits.

    Args:
        log_mel: float32 [..., frames, n_mels], the front end's unnormalised ``log_mel`` (any leading dims).
        frontend: FrontendConfig that produced ``log_mel`` (its filterbank is inverted).
        order: int >= 1, prediction order p.
        return_gain: bool, also return each frame's ``gain``.

    Returns:
        float32 tensor [..., frames, order + 1], ``[1, a1, ..., ap]`` per frame; every frame's 1 / A(z) is
        stable (reflection coefficients clipped to +-``MAX_REFLECTION``). With ``return_gain``, a pair of
        it and ``gain``, float32 [..., frames] > 0: the residual's RMS that the prediction error implies,
        the final Levinson error over the window's energy.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, received: {order}")
    autocorrelation, peak = implied_autocorrelation(log_mel, frontend=frontend)
    r = tf.cast(autocorrelation[..., :order + 1], tf.float64) * tf.constant(_lag_window(order, frontend.sample_rate),
                                                                            tf.float64)

    a = tf.ones_like(r[..., :1])
    error = r[..., 0]
    for i in range(1, order + 1):
        acc = tf.reduce_sum(a * tf.reverse(r[..., 1:i + 1], axis=[-1]), axis=-1)
        k = tf.clip_by_value(-acc / error, -MAX_REFLECTION, MAX_REFLECTION)
        extended = tf.concat([a, tf.zeros_like(a[..., :1])], axis=-1)
        a = extended + k[..., tf.newaxis] * tf.reverse(extended, axis=[-1])
        error = error * (1.0 - k * k)
    if not return_gain:
        return tf.cast(a, tf.float32)
    log_power = tf.math.log(error / _window_energy(frontend)) + tf.cast(peak[..., 0], tf.float64)
    return tf.cast(a, tf.float32), tf.cast(tf.exp(0.5 * log_power), tf.float32)


def source_filter(log_mel, *, frontend, order, normalize):
    """The filter a residual model's samples go through: ``(lpc, gain)`` numpy, ``gain`` None unless ``normalize``.

    Args:
        log_mel: float32 [..., frames, n_mels], as for ``lpc_from_log_mel``.
        frontend: FrontendConfig.
        order: int >= 1.
        normalize: bool, the model's ``lpc_normalize``.

    Returns:
        float32 numpy ``lpc`` [..., frames, order + 1] and ``gain`` [..., frames] or None.
    """
    if not normalize:
        return lpc_from_log_mel(log_mel, frontend=frontend, order=order).numpy(), None
    lpc, gain = lpc_from_log_mel(log_mel, frontend=frontend, order=order, return_gain=True)
    return lpc.numpy(), gain.numpy()


def _frame_index(start, stop, frames, hop):
    """int numpy [stop - start]: the frame whose centre is nearest each sample, clipped to the last frame."""
    return np.minimum((np.arange(start, stop) + hop // 2) // hop, frames - 1)


def _residual(audio, coeffs, start):
    """float64 [len(coeffs)]: e[t] for t = start, start + 1, ..., ``coeffs[i]`` the coefficients of sample start + i.

    One multiply-add per tap over all samples at once: each sample's sum runs over the taps in the same
    order whatever the span, so a span gives the same bits as the whole utterance.
    """
    order = coeffs.shape[1] - 1
    padded = np.concatenate([np.zeros(order), audio])  # padded[t + order] = s[t]
    out = np.zeros(len(coeffs))
    for k in range(order + 1):
        out += coeffs[:, k] * padded[start + order - k:start + order - k + len(coeffs)]
    return out


def _normalized(residual, gain):
    """``residual`` (float64, per sample) divided by ``gain`` (per sample) and scaled by ``EXCITATION_SCALE``."""
    return residual * (EXCITATION_SCALE / np.asarray(gain, np.float64))


def excitation(audio, lpc, *, hop, gain=None):
    """The LPC residual e = A(z) s, the signal the WaveNet models in place of the waveform.

    Args:
        audio: float numpy [samples].
        lpc: float numpy [frames, p + 1] (``lpc_from_log_mel`` of the audio's log-mel).
        hop: int, samples per frame (``FrontendConfig.hop_length``).
        gain: float numpy [frames] or None; given (``lpc_from_log_mel(..., return_gain=True)``), the residual
            is normalised: ``e / gain * EXCITATION_SCALE``.

    Returns:
        float32 numpy [samples]; samples before the start count as 0.
    """
    audio = np.asarray(audio, np.float64)
    lpc = np.asarray(lpc, np.float64)
    index = _frame_index(0, len(audio), len(lpc), hop)
    out = _residual(audio, lpc[index], 0)
    if gain is not None:
        out = _normalized(out, np.asarray(gain)[index])
    return out.astype(np.float32)


def excitation_span(audio, lpc, *, hop, first_frame, start, stop, gain=None):
    """Samples ``[start, stop)`` of the whole utterance's ``excitation``, from the coefficients of a few frames.

    A training window needs the residual of a stretch of an utterance, and its mel (so its coefficients)
    only for the frames around it; the result equals that stretch of ``excitation(audio, lpc_of_all_frames)``
    bit for bit, provided those frames equal the utterance's.

    Args:
        audio: float numpy [samples], the whole utterance (the samples before ``start`` are the filter's past).
        lpc: float numpy [frames, p + 1], the coefficients of utterance frames ``first_frame``,
            ``first_frame + 1``, ...
        hop: int, samples per frame.
        first_frame: int, the utterance frame of ``lpc[0]`` (negative for frames before the start).
        start, stop: int, ``start <= stop``; positions outside the utterance give 0.
        gain: float numpy [frames] or None, the gains of the same frames as ``lpc``: normalises the residual
            as ``excitation``'s does.

    Returns:
        float32 numpy [stop - start].

    Raises:
        ValueError: a sample of the span inside the utterance needs a frame that ``lpc`` does not hold.
    """
    audio = np.asarray(audio, np.float64)
    lpc = np.asarray(lpc, np.float64)
    out = np.zeros(stop - start, np.float32)
    lo, hi = max(start, 0), min(stop, len(audio))
    if lo >= hi:
        return out
    index = _frame_index(lo, hi, 1 + len(audio) // hop, hop) - first_frame
    if index[0] < 0 or index[-1] >= len(lpc):
        raise ValueError(f"samples [{lo}, {hi}) need utterance frames {index[0] + first_frame} to "
                         f"{index[-1] + first_frame}, but lpc holds frames {first_frame} to "
                         f"{first_frame + len(lpc) - 1}")
    residual = _residual(audio, lpc[index], lo)
    out[lo - start:hi - start] = residual if gain is None else _normalized(residual, np.asarray(gain)[index])
    return out


def noise_excitation(residual, *, hop, seed=0):
    """White Gaussian noise with ``residual``'s RMS in each frame's samples: an excitation that knows the level only.

    Through ``synthesize`` it gives what the filter alone restores (whispered speech with the right envelope
    and loudness, no pitch): the reference a residual model's network has to beat.

    Args:
        residual: float numpy [samples], an utterance's ``excitation``.
        hop: int, samples per frame.
        seed: int, the noise seed.

    Returns:
        float32 numpy [samples].
    """
    frames = 1 + len(residual) // hop
    level = np.sqrt(frame_power(residual, hop=hop, frames=frames))[_frame_index(0, len(residual), frames, hop)]
    noise = np.random.default_rng(seed).standard_normal(len(residual))
    return (noise * level).astype(np.float32)


def frame_power(signal, *, hop, frames):
    """float64 numpy [frames]: the mean square of the samples nearest each frame's centre (the filter's frames).

    Args:
        signal: float numpy [samples].
        hop: int, samples per frame.
        frames: int, frames to return; samples past the last frame count towards it.
    """
    index = _frame_index(0, len(signal), frames, hop)
    return np.bincount(index, np.asarray(signal, np.float64) ** 2, minlength=frames) / np.maximum(
        np.bincount(index, minlength=frames), 1)


@numba.njit(cache=True, nogil=True)
def _all_pole(excitation, lpc, hop):
    """float64 [samples]: s[t] = e[t] - sum_k a[f(t), k] s[t - k] from zero state."""
    samples = excitation.shape[0]
    frames, taps = lpc.shape
    out = np.zeros(samples)
    for t in range(samples):
        f = min((t + hop // 2) // hop, frames - 1)
        acc = excitation[t]
        for k in range(1, min(taps - 1, t) + 1):
            acc -= lpc[f, k] * out[t - k]
        out[t] = acc
    return out


def _denormalized(excitation, gain, hop):
    """float64 numpy: a normalised excitation [samples] times its frames' ``gain`` [frames], over the scale."""
    index = _frame_index(0, len(excitation), len(gain), hop)
    return excitation * (np.asarray(gain, np.float64)[index] / EXCITATION_SCALE)


def synthesize(excitation, lpc, *, hop, gain=None):
    """Speech from an excitation through the all-pole filter 1 / A(z): the inverse of ``excitation``.

    Args:
        excitation: float numpy [samples] or [batch, samples].
        lpc: float numpy [frames, p + 1] or [batch, frames, p + 1] (matching ``excitation``'s rank).
        hop: int, samples per frame.
        gain: float numpy [frames] or [batch, frames] or None; given, ``excitation`` is normalised (as
            ``excitation(..., gain=gain)`` makes it) and is scaled back first.

    Returns:
        float32 numpy, the shape of ``excitation``. The recursion runs in float64, so rounding does not
        build up over long utterances.
    """
    excitation = np.asarray(excitation, np.float64)
    lpc = np.asarray(lpc, np.float64)
    if excitation.ndim == 2:
        if lpc.ndim != 3 or lpc.shape[0] != excitation.shape[0]:
            raise ValueError(f"a batch of excitations [batch, samples] needs lpc [batch, frames, p + 1], received: "
                             f"{excitation.shape} and {lpc.shape}")
        gains = [None] * len(excitation) if gain is None else gain
        return np.stack([synthesize(e, a, hop=hop, gain=g) for e, a, g in zip(excitation, lpc, gains)])
    if excitation.ndim != 1 or lpc.ndim != 2:
        raise ValueError(f"need excitation [samples] with lpc [frames, p + 1], received: {excitation.shape} and "
                         f"{lpc.shape}")
    if gain is not None:
        excitation = _denormalized(excitation, gain, hop)
    return _all_pole(np.ascontiguousarray(excitation), np.ascontiguousarray(lpc), int(hop)).astype(np.float32)


def synthesize_tf(excitation, lpc, *, hop, gain=None):
    """``synthesize`` in TensorFlow ops, for the exported SavedModel.

    A ``tf.while_loop`` over samples carrying the last p outputs: under XLA (``tf.function(jit_compile=True)``)
    each step is a few fused vector ops; without XLA every step pays op dispatch (10 s of audio on one
    CPU core: about 10 ms compiled, 2.3 s not).

    Args:
        excitation: float32 [batch, samples].
        lpc: float32 [batch, frames, p + 1], p known statically.
        hop: int, samples per frame.
        gain: float32 [batch, frames] or None, as in ``synthesize``.

    Returns:
        float32 tensor [batch, samples]. The recursion runs in float64, as ``synthesize``'s does: near
        the unit circle a float32 recursion drifts by several 1e-4 over a second of audio.
    """
    excitation = tf.cast(tf.convert_to_tensor(excitation, tf.float32), tf.float64)
    lpc = tf.cast(tf.convert_to_tensor(lpc, tf.float32), tf.float64)
    order = lpc.shape[-1] - 1
    samples = tf.shape(excitation)[1]
    index = tf.minimum((tf.range(samples) + hop // 2) // hop, tf.shape(lpc)[1] - 1)
    coeffs = tf.transpose(tf.gather(lpc[..., 1:], index, axis=1), [1, 0, 2])  # [samples, batch, p]
    if gain is not None:
        scale = tf.cast(tf.convert_to_tensor(gain, tf.float32), tf.float64) / EXCITATION_SCALE
        excitation = excitation * tf.gather(scale, index, axis=1)
    inputs = tf.transpose(excitation)  # [samples, batch]
    outputs = tf.TensorArray(tf.float64, size=samples)

    def body(t, state, outputs):
        s = inputs[t] - tf.reduce_sum(coeffs[t] * state, axis=-1)
        state = tf.concat([s[:, tf.newaxis], state[:, :order - 1]], axis=1)  # [s[t], ..., s[t - p + 1]]
        return t + 1, state, outputs.write(t, s)

    state = tf.zeros(tf.stack([tf.shape(excitation)[0], order]), tf.float64)
    _, _, outputs = tf.while_loop(lambda t, state, outputs: t < samples, body, (tf.constant(0), state, outputs))
    return tf.cast(tf.transpose(outputs.stack()), tf.float32)
