"""The shared audio front end, in TensorFlow ops only.

The same functions run inside ``tf.data`` pipelines, Keras models and exported SavedModels, so the
features a model was trained on are, bit for bit, the features it sees when served.

Framing is centred (as ``librosa.stft(center=True)``) with zero padding: an utterance of ``n``
samples gives ``1 + n // hop`` frames, and frame ``t`` is centred on sample ``t * hop``. Zero padding
(rather than reflection) makes the valid frames of an utterance identical whether it is alone or
inside a zero-padded batch.

Normalisation is per utterance by default (``normalization: utterance``: each bin's mean and variance
over the utterance's valid frames, so every frame depends on the whole audio). Streaming models use
``normalization: fixed``: per-bin statistics computed on the training set (``feature_statistics``,
filled in when training starts) and stored in the config, so each frame depends only on the samples
under its own window and ``framed_features`` can compute any stretch of frames from a piece of audio.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from speechkit.config import Config
from speechkit.errors import ConfigError

__all__ = [
    "FrontendConfig",
    "num_frames",
    "power_spectrogram",
    "log_spectrogram",
    "mel_filterbank",
    "log_mel",
    "normalize",
    "normalize_fixed",
    "raw_features",
    "framed_features",
    "feature_statistics",
    "features",
    "sequence_mask",
    "mu_law_encode",
    "mu_law_decode",
]

_FEATURE_KINDS = ("spectrogram", "mel")
_NORMALIZATIONS = ("utterance", "fixed")


@dataclasses.dataclass(frozen=True)
class FrontendConfig(Config):
    """Every front-end parameter; models store it and refuse to load under a different one.

    Args:
        sample_rate: int > 0, Hz. Audio is resampled to this rate on load.
        window_ms: float > 0, spectrogram window (Hann) length; 20 ms gives 320 samples and 161 bins.
        hop_ms: float > 0, frame shift shared by spectrogram and mel; must be a whole number of samples.
        n_mels: int > 0, number of mel bands.
        mel_window_ms: float > 0, window for the mel STFT; longer than ``window_ms`` so that the lowest
            bands of an 80-band filterbank still cover at least one FFT bin.
        mel_fft_length: int >= mel window in samples, FFT size for the mel STFT.
        fmin: float >= 0, Hz, lowest mel band edge.
        fmax: float in (fmin, sample_rate / 2], Hz, highest mel band edge.
        log_floor: float > 0, added to the power before the log so that silence stays finite.
        kind: ``"spectrogram"`` or ``"mel"``, the features a model consumes.
        normalize: bool, mean and variance normalisation of each bin (see ``normalization``).
        normalization: ``"utterance"`` (statistics of each utterance over its valid frames, so frame 0
            depends on the end of the audio) or ``"fixed"`` (``feature_mean`` and ``feature_std``, computed
            on a training set: each frame depends only on its own window, as streaming needs).
        feature_mean: tuple of ``num_features`` floats, the per-bin mean for ``"fixed"`` (empty otherwise,
            or before ``feature_statistics`` has filled it in).
        feature_std: tuple of ``num_features`` floats > 0, the per-bin standard deviation for ``"fixed"``.
        mu: int > 0, mu-law companding constant (255 gives 256 classes).
    """

    sample_rate: int = 16000
    window_ms: float = 20.0
    hop_ms: float = 10.0
    n_mels: int = 80
    mel_window_ms: float = 50.0
    mel_fft_length: int = 1024
    fmin: float = 0.0
    fmax: float = 8000.0
    log_floor: float = 1e-10
    kind: str = "spectrogram"
    normalize: bool = True
    normalization: str = "utterance"
    feature_mean: tuple[float, ...] = ()
    feature_std: tuple[float, ...] = ()
    mu: int = 255

    def __post_init__(self):
        if self.sample_rate <= 0:
            raise ConfigError(f"sample_rate must be > 0, received: {self.sample_rate}")
        for name in ("window_ms", "hop_ms", "mel_window_ms"):
            samples = getattr(self, name) * self.sample_rate / 1000
            if samples <= 0 or abs(samples - round(samples)) > 1e-9:
                raise ConfigError(
                    f"{name} must be a positive whole number of samples, received: {getattr(self, name)} ms")
        if self.mel_fft_length < self.mel_frame_length:
            raise ConfigError(
                f"mel_fft_length must be >= the mel window ({self.mel_frame_length} samples), "
                f"received: {self.mel_fft_length}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ConfigError(f"need 0 <= fmin < fmax <= sample_rate/2, received: fmin={self.fmin}, fmax={self.fmax}")
        if self.kind not in _FEATURE_KINDS:
            raise ConfigError(f"kind must be one of {_FEATURE_KINDS}, received: {self.kind!r}")
        if self.n_mels <= 0 or self.mu <= 0 or self.log_floor <= 0:
            raise ConfigError("n_mels, mu and log_floor must be > 0")
        if self.normalization not in _NORMALIZATIONS:
            raise ConfigError(f"normalization must be one of {_NORMALIZATIONS}, received: {self.normalization!r}")
        object.__setattr__(self, "feature_mean", tuple(float(v) for v in self.feature_mean))
        object.__setattr__(self, "feature_std", tuple(float(v) for v in self.feature_std))
        if self.normalization == "utterance" and (self.feature_mean or self.feature_std):
            raise ConfigError("feature_mean and feature_std are used only with normalization: fixed")
        if len(self.feature_mean) != len(self.feature_std) or len(self.feature_mean) not in (0, self.num_features):
            raise ConfigError(f"feature_mean and feature_std must both hold num_features={self.num_features} values "
                              f"(or none yet), received: {len(self.feature_mean)} and {len(self.feature_std)}")
        if any(not v > 0 for v in self.feature_std):
            raise ConfigError("feature_std values must be > 0")

    @property
    def frame_length(self):
        """int, spectrogram window in samples (320 at 16 kHz)."""
        return round(self.window_ms * self.sample_rate / 1000)

    @property
    def hop_length(self):
        """int, frame shift in samples (160 at 16 kHz)."""
        return round(self.hop_ms * self.sample_rate / 1000)

    @property
    def mel_frame_length(self):
        return round(self.mel_window_ms * self.sample_rate / 1000)

    @property
    def num_spectrogram_bins(self):
        """int, 1 + frame_length // 2 (161 at 16 kHz, 20 ms)."""
        return self.frame_length // 2 + 1

    @property
    def num_features(self):
        """int, feature dimension of ``features()``."""
        return self.num_spectrogram_bins if self.kind == "spectrogram" else self.n_mels

    @property
    def num_classes(self):
        """int, mu-law classes (256 for mu = 255)."""
        return self.mu + 1

    @property
    def causal(self):
        """bool, each feature frame depends only on the samples under its own window (no utterance statistics)."""
        return not self.normalize or self.normalization == "fixed"

    @property
    def needs_statistics(self):
        """bool, fixed normalisation whose statistics have not been computed yet (``feature_statistics``)."""
        return self.normalize and self.normalization == "fixed" and not self.feature_mean

    @property
    def analysis_window(self):
        """int, samples under one frame's window: ``frame_length`` or ``mel_frame_length`` by ``kind``."""
        return self.frame_length if self.kind == "spectrogram" else self.mel_frame_length

    def with_statistics(self, mean, std):
        """A copy with fixed normalisation statistics (``feature_statistics``), rounded to 6 decimals.

        Rounding keeps ``config.yaml`` readable and makes the statistics of a resumed run (computed
        again from the same data) compare equal with the saved ones.
        """
        return dataclasses.replace(self, normalization="fixed", feature_mean=tuple(round(float(v), 6) for v in mean),
                                   feature_std=tuple(round(float(v), 6) for v in std))

    def check_matches(self, other, *, source):
        """Raise ``ConfigError`` listing every field where ``other`` differs (a model trained on other features)."""
        diffs = [f"{f.name}: {getattr(self, f.name)!r} != {getattr(other, f.name)!r}"
                 for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)]
        if diffs:
            raise ConfigError(f"{source}: front-end config differs from the model's: " + "; ".join(diffs))


def num_frames(num_samples, config):
    """Frames produced for ``num_samples`` samples: ``1 + num_samples // hop`` (int or int tensor)."""
    return 1 + num_samples // config.hop_length


def sequence_mask(lengths, maxlen, dtype=tf.float32):
    """[batch, maxlen] mask, 1 for valid frames."""
    return tf.sequence_mask(lengths, maxlen, dtype=dtype)


def _as_batch(audio):
    audio = tf.convert_to_tensor(audio, dtype=tf.float32)
    return (audio[tf.newaxis], True) if audio.shape.rank == 1 else (audio, False)


def power_spectrogram(audio, *, config, frame_length=None, fft_length=None):
    """|STFT|^2 with a periodic Hann window and centred, zero-padded frames.

    Args:
        audio: float32 [batch, samples] or [samples] in [-1, 1].
        config: FrontendConfig.
        frame_length: window in samples; defaults to ``config.frame_length``.
        fft_length: FFT size; defaults to ``frame_length``.

    Returns:
        float32 [batch, 1 + samples // hop, fft_length // 2 + 1] (rank follows ``audio``).
    """
    audio, squeeze = _as_batch(audio)
    frame_length = frame_length or config.frame_length
    pad = frame_length // 2
    padded = tf.pad(audio, [[0, 0], [pad, pad + frame_length % 2]])
    power = _framed_power(padded, config=config, frame_length=frame_length, fft_length=fft_length)
    return power[0] if squeeze else power


def _framed_power(signal, *, config, frame_length, fft_length=None):
    """|STFT|^2 of the frames whose windows lie wholly inside ``signal`` [batch, samples] (no padding)."""
    stft = tf.signal.stft(
        signal,
        frame_length=frame_length,
        frame_step=config.hop_length,
        fft_length=fft_length or frame_length,
        window_fn=tf.signal.hann_window,
        pad_end=False,
    )
    return tf.math.square(tf.math.abs(stft))


def framed_features(signal, *, config):
    """Raw ``config.kind`` features of a signal that already carries its framing context: the streaming path.

    Frame ``t`` reads ``signal[:, t * hop : t * hop + analysis_window]``; nothing is padded, so a
    piece of a stream that starts ``analysis_window // 2`` samples before a frame's centre gives
    exactly that frame of ``raw_features`` on the whole audio.

    Args:
        signal: float32 [batch, samples], samples >= ``config.analysis_window``.
        config: FrontendConfig.

    Returns:
        float32 [batch, 1 + (samples - analysis_window) // hop, num_features].
    """
    if config.kind == "spectrogram":
        power = _framed_power(signal, config=config, frame_length=config.frame_length)
        return tf.math.log(power + config.log_floor)
    power = _framed_power(signal, config=config, frame_length=config.mel_frame_length,
                          fft_length=config.mel_fft_length)
    return tf.math.log(tf.tensordot(power, mel_filterbank(config), axes=1) + config.log_floor)


def log_spectrogram(audio, *, config):
    """log(power + log_floor) over a 20 ms window: [batch, frames, 161] at 16 kHz."""
    return tf.math.log(power_spectrogram(audio, config=config) + config.log_floor)


def mel_filterbank(config):
    """float32 [mel_fft_length // 2 + 1, n_mels] HTK-scale triangular filterbank (``tf.signal``)."""
    return tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=config.n_mels,
        num_spectrogram_bins=config.mel_fft_length // 2 + 1,
        sample_rate=config.sample_rate,
        lower_edge_hertz=config.fmin,
        upper_edge_hertz=config.fmax,
    )


def log_mel(audio, *, config):
    """log(mel power + log_floor): [batch, frames, n_mels], same frame grid as ``log_spectrogram``."""
    power = power_spectrogram(audio, config=config, frame_length=config.mel_frame_length,
                              fft_length=config.mel_fft_length)
    mel = tf.tensordot(power, mel_filterbank(config), axes=1)
    return tf.math.log(mel + config.log_floor)


def normalize(features, lengths, *, epsilon=1e-5):
    """Per-utterance, per-bin mean and variance normalisation over valid frames only.

    Padded frames neither contribute to the statistics nor keep a value: they are set to 0, so
    an utterance normalises the same alone and inside a padded batch.

    Args:
        features: float32 [batch, frames, bins].
        lengths: int32 [batch], valid frames per utterance.

    Returns:
        float32 [batch, frames, bins].
    """
    mask = tf.expand_dims(sequence_mask(lengths, tf.shape(features)[1], features.dtype), -1)
    count = tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
    mean = tf.reduce_sum(features * mask, axis=1, keepdims=True) / count
    var = tf.reduce_sum(tf.square(features - mean) * mask, axis=1, keepdims=True) / count
    return (features - mean) * tf.math.rsqrt(var + epsilon) * mask


def raw_features(audio, *, config):
    """``config.kind`` features before normalisation: float32 [batch, 1 + samples // hop, num_features]."""
    return log_spectrogram(audio, config=config) if config.kind == "spectrogram" else log_mel(audio, config=config)


def normalize_fixed(features, *, config):
    """``(features - feature_mean) / feature_std`` per bin: a frame-wise (causal) normalisation.

    Raises:
        ConfigError: ``config`` has no statistics yet (``config.needs_statistics``).
    """
    if config.needs_statistics:
        raise ConfigError("normalization: fixed needs feature_mean and feature_std; compute them on the training "
                          "set (speechkit.frontend.feature_statistics, done when training starts)")
    mean = tf.constant(config.feature_mean, features.dtype)
    inv_std = tf.constant([1.0 / v for v in config.feature_std], features.dtype)
    return (features - mean) * inv_std


def feature_statistics(audios, *, config):
    """Per-bin mean and standard deviation of the raw features of ``audios``, for fixed normalisation.

    The sums run in float64 over every frame of every utterance, so the result does not depend on how
    the audio is batched.

    Args:
        audios: iterable of float32 [samples] arrays at ``config.sample_rate``.
        config: FrontendConfig.

    Returns:
        (mean, std): float64 numpy arrays [num_features].

    Raises:
        ConfigError: ``audios`` is empty.
    """
    total = np.zeros(config.num_features)
    squares = np.zeros(config.num_features)
    count = 0
    for audio in audios:
        feats = raw_features(np.asarray(audio, np.float32), config=config).numpy().astype(np.float64)
        total += feats.sum(axis=0)
        squares += np.square(feats).sum(axis=0)
        count += len(feats)
    if not count:
        raise ConfigError("feature statistics need at least one utterance")
    mean = total / count
    return mean, np.sqrt(np.maximum(squares / count - np.square(mean), 1e-10))


def features(audio, lengths, *, config):
    """The model input: ``config.kind`` features, normalised if configured, zero on padding.

    Args:
        audio: float32 [batch, samples], zero-padded.
        lengths: int32 [batch], valid samples per utterance.
        config: FrontendConfig.

    Returns:
        (features float32 [batch, frames, config.num_features], frame_lengths int32 [batch]).
    """
    audio = tf.convert_to_tensor(audio, tf.float32)
    lengths = tf.cast(lengths, tf.int32)
    feats = raw_features(audio, config=config)
    frame_lengths = num_frames(lengths, config)
    if config.normalize and config.normalization == "utterance":
        feats = normalize(feats, frame_lengths)
    elif config.normalize:
        feats = normalize_fixed(feats, config=config) * tf.expand_dims(
            sequence_mask(frame_lengths, tf.shape(feats)[1], feats.dtype), -1)
    else:
        feats = feats * tf.expand_dims(sequence_mask(frame_lengths, tf.shape(feats)[1], feats.dtype), -1)
    return feats, frame_lengths


def mu_law_encode(audio, mu=255):
    """Quantise float audio in [-1, 1] to int32 classes in [0, mu] with mu-law companding."""
    audio = tf.clip_by_value(tf.convert_to_tensor(audio, tf.float32), -1.0, 1.0)
    mu_f = tf.cast(mu, tf.float32)
    companded = tf.sign(audio) * tf.math.log1p(mu_f * tf.abs(audio)) / tf.math.log1p(mu_f)
    return tf.cast(tf.math.floor((companded + 1.0) / 2.0 * mu_f + 0.5), tf.int32)


def mu_law_decode(classes, mu=255):
    """Inverse of ``mu_law_encode``: int classes in [0, mu] to float32 audio in [-1, 1]."""
    mu_f = tf.cast(mu, tf.float32)
    companded = 2.0 * tf.cast(classes, tf.float32) / mu_f - 1.0
    return tf.sign(companded) * (tf.pow(1.0 + mu_f, tf.abs(companded)) - 1.0) / mu_f
