"""Mel inversion with Griffin-Lim (Griffin and Lim 1984): the vocoder that needs no training.

Both versions undo the shared front end (``speechkit.frontend.log_mel``): the mel power is
``exp(log_mel) - log_floor``; the linear power spectrum is recovered through the front end's own
filterbank (``speechkit.frontend.mel_filterbank``) by non-negative least squares, and its square
root is given a phase by Griffin-Lim iterations over the front end's STFT (Hann window of
``mel_window_ms``, FFT of ``mel_fft_length``, hop ``hop_ms``, centred zero-padded frames).

The non-negative least squares starts from the filterbank's pseudo-inverse (negative power
clipped) and takes ``NNLS_ITERATIONS`` multiplicative updates (Lee and Seung 2001), a few matrix
products: ``librosa.util.nnls`` (L-BFGS-B) gives the same fit but took 130 s for a 3 s utterance
here, and SciPy's active-set ``nnls`` frame by frame 3.5 s.

- ``griffinlim_numpy`` (``speechkit synthesize --vocoder griffinlim``): ``librosa.griffinlim``
  (with its momentum 0.99, "fast Griffin-Lim", Perraudin et al. 2013).
- ``griffinlim_tf`` (the exported SavedModel): plain Griffin-Lim in ``tf.signal`` ops, so it runs
  inside a graph.
"""

import librosa
import numpy as np
import tensorflow as tf

from speechkit.frontend import mel_filterbank

__all__ = ["NNLS_ITERATIONS", "mel_power", "linear_power", "griffinlim_numpy", "griffinlim_tf"]

NNLS_ITERATIONS = 30
_EPS = 1e-12


def mel_power(log_mel, *, config):
    """Mel power float32 [frames, n_mels] >= 0 from the front end's log-mel (``exp(x) - log_floor``)."""
    return np.maximum(np.exp(np.asarray(log_mel, np.float64)) - config.log_floor, 0.0)


def _filterbank(config):
    """float64 numpy [fft_bins, n_mels], the front end's filterbank, computed eagerly even inside a ``tf.function``."""
    with tf.init_scope():
        return mel_filterbank(config).numpy().astype(np.float64)


def linear_power(log_mel, *, config, iterations=NNLS_ITERATIONS):
    """Non-negative linear power float64 [frames, fft_bins] whose mel is closest to ``log_mel``'s mel power.

    Args:
        log_mel: float [frames, n_mels]; config: FrontendConfig; iterations: int >= 0, multiplicative updates.
    """
    basis = _filterbank(config)
    mel = mel_power(log_mel, config=config)
    power = np.maximum(mel @ np.linalg.pinv(basis), 0.0) + _EPS
    numerator = mel @ basis.T
    for _ in range(int(iterations)):
        power *= numerator / np.maximum(power @ basis @ basis.T, _EPS)
    return power


def griffinlim_numpy(log_mel, *, config, iterations=32):
    """Waveform from a log-mel with librosa: NNLS through the filterbank, then Griffin-Lim.

    Args:
        log_mel: float32 [frames, n_mels], the front end's unnormalised log-mel.
        config: FrontendConfig (``kind: mel``).
        iterations: int > 0, Griffin-Lim iterations.

    Returns:
        float32 [(frames - 1) * hop] in [-1, 1] at ``config.sample_rate``.
    """
    magnitude = np.sqrt(linear_power(log_mel, config=config)).T
    audio = librosa.griffinlim(magnitude, n_iter=int(iterations), hop_length=config.hop_length,
                               win_length=config.mel_frame_length, n_fft=config.mel_fft_length, window="hann",
                               center=True, pad_mode="constant", length=(magnitude.shape[1] - 1) * config.hop_length,
                               random_state=0)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def _stft(signal, config):
    pad = config.mel_frame_length // 2
    padded = tf.pad(signal, [[pad, pad]])
    return tf.signal.stft(padded, frame_length=config.mel_frame_length, frame_step=config.hop_length,
                          fft_length=config.mel_fft_length, window_fn=tf.signal.hann_window, pad_end=False)


def _istft(spectrum, length, config):
    pad = config.mel_frame_length // 2
    window = tf.signal.inverse_stft_window_fn(config.hop_length, forward_window_fn=tf.signal.hann_window)
    signal = tf.signal.inverse_stft(spectrum, frame_length=config.mel_frame_length, frame_step=config.hop_length,
                                    fft_length=config.mel_fft_length, window_fn=window)
    return signal[pad:pad + length]


def griffinlim_tf(log_mel, *, config, iterations=32, nnls_iterations=NNLS_ITERATIONS):
    """Waveform from a log-mel in TensorFlow ops only (graph- and SavedModel-safe).

    Args:
        log_mel: float32 [frames, n_mels] tensor, the front end's unnormalised log-mel.
        config: FrontendConfig (``kind: mel``); its values become graph constants.
        iterations: int > 0, Griffin-Lim iterations.
        nnls_iterations: int >= 0, multiplicative updates of the power (``linear_power``).

    Returns:
        float32 [(frames - 1) * hop] tensor in [-1, 1].
    """
    log_mel = tf.convert_to_tensor(log_mel, tf.float32)
    basis64 = _filterbank(config)
    basis = tf.constant(basis64, tf.float32)
    gram = tf.constant(basis64 @ basis64.T, tf.float32)
    mel = tf.maximum(tf.exp(log_mel) - config.log_floor, 0.0)
    power = tf.maximum(tf.matmul(mel, tf.constant(np.linalg.pinv(basis64), tf.float32)), 0.0) + 1e-10
    numerator = tf.matmul(mel, basis, transpose_b=True)
    _, power = tf.while_loop(lambda i, _: i < nnls_iterations,
                             lambda i, p: (i + 1, p * numerator / tf.maximum(tf.matmul(p, gram), 1e-20)),
                             [tf.constant(0), power])
    magnitude = tf.sqrt(power)
    length = (tf.shape(log_mel)[0] - 1) * config.hop_length
    phase = tf.complex(tf.ones_like(magnitude), tf.zeros_like(magnitude))
    target = tf.complex(magnitude, tf.zeros_like(magnitude))

    def body(i, phase):
        signal = _istft(target * phase, length, config)
        spectrum = _stft(signal, config)
        return i + 1, spectrum / tf.cast(tf.maximum(tf.abs(spectrum), 1e-8), tf.complex64)

    _, phase = tf.while_loop(lambda i, _: i < iterations, body, [tf.constant(0), phase])
    return tf.clip_by_value(_istft(target * phase, length, config), -1.0, 1.0)
