"""Conditional WaveNet: dilated causal convolutions, gated units, mu-law softmax output.

Van den Oord et al., "WaveNet: A Generative Model for Raw Audio" (2016), with the local (mel) and
global (speaker) conditioning of section 2.5 and the learned transposed-convolution upsampling of
Shen et al., "Natural TTS Synthesis by Conditioning WaveNet on Mel Spectrogram Predictions" (2018).

Teacher forcing: the network input at position ``t`` is sample ``t - 1`` (silence at ``t = 0``), so
output ``t`` is the distribution of sample ``t`` given the samples before it. Every convolution over
time is then causal: a sample never influences an output at or before its own position.

Frame alignment: the front end gives ``1 + n // hop`` frames for ``n`` samples, frame ``f`` centred
on sample ``f * hop``. Samples ``[f * hop, (f + 1) * hop)`` are conditioned on frame ``f`` (and, via
the pre-convolution, on frames ``f - context .. f + context``). The model input therefore holds
``context`` extra frames on each side (``frames + 2 * context`` in all); ``conditioning_mel``
computes them from zero-extended audio, exactly as the front end pads an utterance, so that a
training window cut from the middle of an utterance sees the same frames as full synthesis.

The full (teacher-forced) pass and the cached ``step`` share one set of weights and one gate
function, ``ResidualLayer._gate``: the full pass forms the dilated taps by shifting the whole
sequence; ``step`` reads them from per-layer ring buffers.
"""

import collections
import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from speechkit.config import Config
from speechkit.errors import ConfigError
from speechkit.frontend import FrontendConfig, log_mel, mu_law_decode
from speechkit.vocoder.pitch import pitch_features
from speechkit.vocoder.pulses import free_pulses

__all__ = [
    "WaveNetConfig",
    "ReceptiveField",
    "receptive_field",
    "dilations",
    "ResidualLayer",
    "MelUpsampler",
    "WaveNet",
    "conditioning_mel",
    "silence_class",
    "network_input",
]

_INPUT_TYPES = ("mulaw", "raw")
_CONDITIONING = ("mel", "none")
_RESIDUAL_SCALE = math.sqrt(0.5)


@dataclasses.dataclass(frozen=True)
class WaveNetConfig(Config):
    """WaveNet architecture. Cost per generated sample is about
    ``layers * (kernel_size * R * 2G + G * (R + S)) + S * H + H * classes`` multiply-adds.

    Args:
        input_type: ``"mulaw"`` (class index through an embedding) or ``"raw"`` (the mu-law
            decoded sample value through a 1x1 convolution).
        residual_channels: int > 0, R, width of the residual stream.
        gate_channels: int > 0, G, width of each of the tanh and sigmoid halves of a gated unit.
        skip_channels: int > 0, S, width of the skip connections.
        head_channels: int > 0, H, hidden width of the output head.
        kernel_size: int >= 2, taps of each dilated convolution.
        layers_per_stack: int > 0, dilations 1, 2, ..., 2**(layers_per_stack - 1) in each stack.
        stacks: int > 0, how often the dilation cycle repeats.
        conditioning: ``"mel"`` (local conditioning on the log-mel) or ``"none"`` (unconditional).
        cond_channels: int > 0, width of the upsampled conditioning.
        cond_context: int >= 0, mel frames of context on each side seen by the pre-convolution
            (kernel ``2 * cond_context + 1``).
        upsample_factors: tuple of int > 1, transposed-convolution strides; their product must equal
            the front end's hop in samples.
        num_speakers: int >= 0, speaker-embedding rows for global conditioning (0 = none).
        speaker_channels: int > 0, speaker-embedding width.
        mel_mean, mel_std: float, fixed affine scaling of the log-mel before the pre-convolution,
            so that conditioning inputs are of order one.
        num_classes: int, output classes; must equal the front end's ``mu + 1``.
        lpc_order: int >= 0; 0: the network models the waveform. p > 0 (mel conditioning only): it
            models the residual of an order-p linear predictor taken from its own log-mel, and an
            all-pole filter restores the waveform (``speechkit.vocoder.lpc``; ExcitNet, Song et al.,
            2019). The filter gives every frame its spectral envelope, so the network only has to
            learn the excitation: pitch pulses and noise.
        lpc_normalize: bool (``lpc_order`` > 0): the network models the residual divided by the level the
            predictor implies for it (``lpc_from_log_mel(..., return_gain=True)``), so that the filter sets
            the level and the network only the excitation's shape.
        pitch_features: int, 0 or >= 2 (mel conditioning only): the conditioning also gets the mel-implied
            normalised autocorrelation at this many log-spaced pitch lags, 50-400 Hz
            (``speechkit.vocoder.pitch``): the period the network's pulses must keep, which an 80-band mel
            holds only implicitly.
        mel_postfilter: int >= 0 (mel conditioning only): passes of the mel post-filter over every
            vocoded waveform (``speechkit.vocoder.postfilter``), which moves each frame's envelope to
            the conditioning mel's; 0 leaves the output as generated. A generation setting: changing it
            needs no retraining.
        pulse_input: bool (``lpc_order`` > 0): the conditioning also gets a pulse train at the mel-implied
            period (``speechkit.vocoder.pulses``): in training on the target residual's own peaks, in
            generation with a free-running phase. Its projection starts at zero, so a model without it
            can be continued with it (``train vocoder --init-from``).
    """

    input_type: str = "mulaw"
    residual_channels: int = 32
    gate_channels: int = 32
    skip_channels: int = 64
    head_channels: int = 128
    kernel_size: int = 2
    layers_per_stack: int = 10
    stacks: int = 2
    conditioning: str = "mel"
    cond_channels: int = 64
    cond_context: int = 2
    upsample_factors: tuple[int, ...] = (4, 5, 8)
    num_speakers: int = 0
    speaker_channels: int = 16
    mel_mean: float = -5.0
    mel_std: float = 4.0
    num_classes: int = 256
    lpc_order: int = 0
    lpc_normalize: bool = False
    pitch_features: int = 0
    mel_postfilter: int = 0
    pulse_input: bool = False

    def __post_init__(self):
        if self.input_type not in _INPUT_TYPES:
            raise ConfigError(f"input_type must be one of {_INPUT_TYPES}, received: {self.input_type!r}")
        if self.conditioning not in _CONDITIONING:
            raise ConfigError(f"conditioning must be one of {_CONDITIONING}, received: {self.conditioning!r}")
        for name in ("residual_channels", "gate_channels", "skip_channels", "head_channels", "layers_per_stack",
                     "stacks", "cond_channels", "speaker_channels", "num_classes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive int, received: {getattr(self, name)!r}")
        if self.kernel_size < 2:
            raise ConfigError(f"kernel_size must be >= 2, received: {self.kernel_size}")
        if self.cond_context < 0 or self.num_speakers < 0:
            raise ConfigError(f"cond_context and num_speakers must be >= 0, received: {self.cond_context}, "
                              f"{self.num_speakers}")
        if not self.upsample_factors or any(int(s) != s or s < 2 for s in self.upsample_factors):
            raise ConfigError(f"upsample_factors must be ints >= 2, received: {self.upsample_factors!r}")
        if self.mel_std <= 0:
            raise ConfigError(f"mel_std must be > 0, received: {self.mel_std}")
        if not isinstance(self.lpc_order, int) or self.lpc_order < 0:
            raise ConfigError(f"lpc_order must be an int >= 0, received: {self.lpc_order!r}")
        if self.lpc_order and (self.conditioning != "mel" or self.cond_context < 1):
            raise ConfigError("lpc_order > 0 needs mel conditioning with cond_context >= 1: the predictor "
                              "comes from the mel frames around each sample")
        if self.lpc_normalize and not self.lpc_order:
            raise ConfigError("lpc_normalize needs lpc_order > 0: the level comes from the predictor")
        if not isinstance(self.pitch_features, int) or self.pitch_features < 0 or self.pitch_features == 1:
            raise ConfigError(f"pitch_features must be 0 or an int >= 2, received: {self.pitch_features!r}")
        if self.pitch_features and self.conditioning != "mel":
            raise ConfigError("pitch_features needs mel conditioning: the features come from the mel")
        if not isinstance(self.mel_postfilter, int) or self.mel_postfilter < 0:
            raise ConfigError(f"mel_postfilter must be an int >= 0, received: {self.mel_postfilter!r}")
        if self.mel_postfilter and self.conditioning != "mel":
            raise ConfigError("mel_postfilter needs mel conditioning: the mel is its target")
        if self.pulse_input and not self.lpc_order:
            raise ConfigError("pulse_input needs lpc_order > 0: training puts the pulses on the LPC residual's peaks")

    @property
    def num_layers(self):
        return self.layers_per_stack * self.stacks

    @property
    def hop_length(self):
        """int, product of ``upsample_factors``: samples per conditioning frame."""
        return int(np.prod(self.upsample_factors))

    @property
    def macs_per_sample(self):
        """int, multiply-adds per generated sample in the cached loop (conditioning projection excluded)."""
        r, g, s = self.residual_channels, self.gate_channels, self.skip_channels
        per_layer = self.kernel_size * r * 2 * g + g * (r + s)
        return self.num_layers * per_layer - g * r + s * self.head_channels + self.head_channels * self.num_classes

    def check_frontend(self, frontend, *, source="config"):
        """Raise ``ConfigError`` when the front end cannot feed this model."""
        if self.num_classes != frontend.num_classes:
            raise ConfigError(f"{source}: model.num_classes={self.num_classes} but the front end's mu={frontend.mu} "
                              f"gives {frontend.num_classes} classes")
        if self.conditioning == "mel":
            if self.hop_length != frontend.hop_length:
                raise ConfigError(f"{source}: upsample_factors {list(self.upsample_factors)} multiply to "
                                  f"{self.hop_length}, but the front-end hop is {frontend.hop_length} samples")
            if frontend.kind != "mel":
                raise ConfigError(f"{source}: a mel-conditioned vocoder needs frontend.kind='mel', "
                                  f"received {frontend.kind!r}")



ReceptiveField = collections.namedtuple("ReceptiveField", ["samples", "ms"])


def dilations(*, layers_per_stack, stacks):
    """Dilation of every layer: ``[1, 2, 4, ..., 2**(layers_per_stack-1)] * stacks``."""
    return [2 ** i for i in range(layers_per_stack)] * stacks


def receptive_field(*, layers_per_stack, stacks, kernel_size=2, sample_rate=16000):
    """Past samples that can influence one output, counting the sample just before it.

    With the one-sample input shift, output ``t`` sees samples ``t - rf .. t - 1`` where
    ``rf = 1 + (kernel_size - 1) * sum(dilations)``.

    Returns:
        ReceptiveField(samples: int, ms: float).

    Example:
        >>> receptive_field(layers_per_stack=10, stacks=2)
        ReceptiveField(samples=2047, ms=127.9375)
    """
    samples = 1 + (kernel_size - 1) * sum(dilations(layers_per_stack=layers_per_stack, stacks=stacks))
    return ReceptiveField(samples, 1000.0 * samples / sample_rate)


def silence_class(frontend):
    """Mu-law class of a zero sample (what ``mu_law_encode(0.0)`` gives): the input before sample 0."""
    return int(np.floor(frontend.mu / 2 + 0.5))


def network_input(classes, *, config, frontend):
    """Network input for mu-law classes: the classes (``"mulaw"``) or their decoded values (``"raw"``).

    Raw-input models see quantised values in training too, so that training and generation, which
    only ever feeds back quantised samples, agree.
    """
    if config.input_type == "mulaw":
        return tf.cast(classes, tf.int32)
    return mu_law_decode(classes, frontend.mu)


def conditioning_mel(audio, *, frontend, context):
    """Log-mel with ``context`` extra frames each side, computed from zero-extended audio.

    Synthesis conditions on exactly this; training windows compute the same frames with the same
    ``log_mel`` on a wider audio segment (``speechkit.vocoder.data.WindowSampler``), tested equal.
    Frame ``f`` of the result (``0 <= f < frames + 2 * context``) is the front end's frame
    ``f - context``.

    Args:
        audio: float32 [batch, samples] or [samples] in [-1, 1].
        frontend: FrontendConfig with ``kind="mel"``.
        context: int >= 0.

    Returns:
        float32 [batch, 1 + samples // hop + 2 * context, n_mels] (rank follows ``audio``).
    """
    audio = tf.convert_to_tensor(audio, tf.float32)
    pad = context * frontend.hop_length
    paddings = [[pad, pad]] if audio.shape.rank == 1 else [[0, 0], [pad, pad]]
    return log_mel(tf.pad(audio, paddings), config=frontend)


@keras.saving.register_keras_serializable(package="speechkit")
class ResidualLayer(keras.layers.Layer):
    """One gated residual layer: ``a = tanh(W_f * x + V_f c) * sigmoid(W_g * x + V_g c)``.

    ``*`` is a dilated causal convolution (``kernel_size`` taps, ``dilation`` apart); ``c`` is the
    per-sample conditioning (upsampled mel) and/or the speaker embedding. A 1x1 projection of ``a``
    gives the skip output and, unless ``residual=False`` (the last layer), the residual update
    ``x' = (x + W_r a) * sqrt(0.5)``.

    Args:
        residual_channels, gate_channels, skip_channels: int > 0, R, G, S.
        kernel_size: int >= 2.
        dilation: int >= 1.
        cond_channels: int >= 0, width of the local conditioning (0 = none).
        speaker_channels: int >= 0, width of the global conditioning (0 = none).
        residual: bool, whether this layer feeds a next layer.

    Call arguments:
        x: float32 [batch, time, R], the layer input.
        cond: float32 [batch, time, cond_channels] or None.
        speaker: float32 [batch, speaker_channels] or None.

    Returns:
        (x_next [batch, time, R] (``x`` itself when ``residual=False``), skip [batch, time, S]).
    """

    def __init__(self, *, residual_channels, gate_channels, skip_channels, kernel_size, dilation,
                 cond_channels=0, speaker_channels=0, residual=True, **kwargs):
        super().__init__(**kwargs)
        if kernel_size < 2 or dilation < 1:
            raise ConfigError(f"ResidualLayer needs kernel_size >= 2 and dilation >= 1, received: "
                              f"kernel_size={kernel_size}, dilation={dilation}")
        self.residual_channels = residual_channels
        self.gate_channels = gate_channels
        self.skip_channels = skip_channels
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.cond_channels = cond_channels
        self.speaker_channels = speaker_channels
        self.residual = residual

    def build(self, input_shape=None):
        r, g, s = self.residual_channels, self.gate_channels, self.skip_channels
        self.conv_kernel = self.add_weight(name="conv_kernel", shape=(self.kernel_size, r, 2 * g),
                                           initializer="glorot_uniform")
        self.conv_bias = self.add_weight(name="conv_bias", shape=(2 * g,), initializer="zeros")
        self.cond_kernel = (self.add_weight(name="cond_kernel", shape=(self.cond_channels, 2 * g),
                                            initializer="glorot_uniform") if self.cond_channels else None)
        self.speaker_kernel = (self.add_weight(name="speaker_kernel", shape=(self.speaker_channels, 2 * g),
                                               initializer="glorot_uniform") if self.speaker_channels else None)
        out = s + (r if self.residual else 0)
        self.out_kernel = self.add_weight(name="out_kernel", shape=(g, out), initializer="glorot_uniform")
        self.out_bias = self.add_weight(name="out_bias", shape=(out,), initializer="zeros")
        self.built = True

    @property
    def buffer_size(self):
        """int, past inputs the cached step must remember: ``(kernel_size - 1) * dilation``."""
        return (self.kernel_size - 1) * self.dilation

    def conditioning_bias(self, cond=None, speaker=None):
        """``V c`` for this layer: float32 [batch, time, 2G] (time 1 with speaker only), or None."""
        bias = None
        if cond is not None:
            bias = keras.ops.matmul(cond, self.cond_kernel)
        if speaker is not None:
            spk = keras.ops.expand_dims(keras.ops.matmul(speaker, self.speaker_kernel), 1)
            bias = spk if bias is None else bias + spk
        return bias

    def _gate(self, z, x, bias):
        """Shared by the full pass and ``step``: gate, project, split into (x_next, skip)."""
        z = z + self.conv_bias
        if bias is not None:
            z = z + bias
        g = self.gate_channels
        a = keras.ops.tanh(z[..., :g]) * keras.ops.sigmoid(z[..., g:])
        out = keras.ops.matmul(a, self.out_kernel) + self.out_bias
        skip = out[..., :self.skip_channels]
        if not self.residual:
            return x, skip
        return (x + out[..., self.skip_channels:]) * _RESIDUAL_SCALE, skip

    def call(self, x, cond=None, speaker=None):
        time = keras.ops.shape(x)[1]
        z = keras.ops.matmul(x, self.conv_kernel[self.kernel_size - 1])
        for j in range(1, self.kernel_size):
            shift = j * self.dilation
            past = keras.ops.pad(x, [[0, 0], [shift, 0], [0, 0]])[:, :time]
            z = z + keras.ops.matmul(past, self.conv_kernel[self.kernel_size - 1 - j])
        bias = self.conditioning_bias(cond, speaker)
        return self._gate(z, x, bias)

    def step(self, x_t, taps, bias_t=None):
        """One time step from cached taps.

        Args:
            x_t: float32 [batch, R], this layer's input at time t.
            taps: float32 [kernel_size - 1, batch, R]; ``taps[j - 1]`` is the input at ``t - j * dilation``.
            bias_t: float32 [batch, 2G] or None, the conditioning bias at time t.

        Returns:
            (x_next [batch, R], skip [batch, S]).
        """
        z = keras.ops.matmul(x_t, self.conv_kernel[self.kernel_size - 1])
        for j in range(1, self.kernel_size):
            z = z + keras.ops.matmul(taps[j - 1], self.conv_kernel[self.kernel_size - 1 - j])
        return self._gate(z, x_t, bias_t)

    def compute_output_shape(self, input_shape):
        return input_shape, (*input_shape[:-1], self.skip_channels)

    def get_config(self):
        return {**super().get_config(), "residual_channels": self.residual_channels,
                "gate_channels": self.gate_channels, "skip_channels": self.skip_channels,
                "kernel_size": self.kernel_size, "dilation": self.dilation, "cond_channels": self.cond_channels,
                "speaker_channels": self.speaker_channels, "residual": self.residual}


@keras.saving.register_keras_serializable(package="speechkit")
class MelUpsampler(keras.layers.Layer):
    """Log-mel frames to one conditioning vector per sample.

    A valid (non-causal) pre-convolution over ``2 * context + 1`` frames, then one transposed
    convolution per factor with kernel == stride, so that every output block depends on exactly one
    pre-convolved frame: ``frames + 2 * context`` input frames give ``frames * hop`` vectors, and a
    window cut from an utterance upsamples to exactly the same values as the whole utterance.

    Args:
        channels: int > 0, output width.
        context: int >= 0, frames of context on each side.
        factors: tuple of int >= 2, strides (their product is the hop).
        mel_mean, mel_std: float, fixed scaling ``(mel - mean) / std``.
        scaled_channels: int or None, how many leading input channels that scaling applies to (the mel's,
            when features of another scale follow them); None: all.

    Call arguments:
        mel: float32 [batch, frames + 2 * context, channels], the log-mel and any features after it.

    Returns:
        float32 [batch, frames * prod(factors), channels].
    """

    def __init__(self, *, channels, context, factors, mel_mean=0.0, mel_std=1.0, scaled_channels=None, **kwargs):
        super().__init__(**kwargs)
        self.scaled_channels = scaled_channels
        self.channels = channels
        self.context = context
        self.factors = tuple(int(f) for f in factors)
        self.mel_mean = float(mel_mean)
        self.mel_std = float(mel_std)
        self.pre = keras.layers.Conv1D(channels, 2 * context + 1, padding="valid", name="pre_conv")
        self.ups = [keras.layers.Conv1DTranspose(channels, f, strides=f, padding="valid", name=f"upsample_{i}")
                    for i, f in enumerate(self.factors)]

    def build(self, input_shape):
        self.pre.build(input_shape)
        shape = (input_shape[0], None, self.channels)
        for up in self.ups:
            up.build(shape)
        self.built = True

    def call(self, mel):
        if self.scaled_channels is None:
            scaled = (mel - self.mel_mean) / self.mel_std
        else:
            n = self.scaled_channels
            scaled = keras.ops.concatenate([(mel[..., :n] - self.mel_mean) / self.mel_std, mel[..., n:]], axis=-1)
        h = keras.ops.leaky_relu(self.pre(scaled), 0.2)
        for i, up in enumerate(self.ups):
            h = up(h)
            if i + 1 < len(self.ups):
                h = keras.ops.leaky_relu(h, 0.2)
        return h

    def compute_output_shape(self, input_shape):
        frames = None if input_shape[1] is None else (input_shape[1] - 2 * self.context) * int(np.prod(self.factors))
        return (input_shape[0], frames, self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "context": self.context,
                "factors": list(self.factors), "mel_mean": self.mel_mean, "mel_std": self.mel_std,
                "scaled_channels": self.scaled_channels}


def _align_to_targets(y, y_pred, sample_weight):
    """The last ``y.shape[1]`` positions of ``y_pred`` (and of a per-position ``sample_weight``)."""
    if y is None or y_pred is None:
        return y_pred, sample_weight
    keep = keras.ops.shape(y)[1]
    y_pred = y_pred[:, keras.ops.shape(y_pred)[1] - keep:]
    if sample_weight is not None and len(keras.ops.shape(sample_weight)) > 1:
        sample_weight = sample_weight[:, keras.ops.shape(sample_weight)[1] - keep:]
    return y_pred, sample_weight


@keras.saving.register_keras_serializable(package="speechkit")
class WaveNet(keras.Model):
    """The conditional WaveNet vocoder.

    Args:
        config: WaveNetConfig (or its dict form).
        frontend: FrontendConfig (or its dict form); fixes the mel features and mu-law classes.

    Call arguments:
        inputs: dict with
            ``"audio"``: the teacher-forcing input, sample ``t - 1`` at position ``t``: int32
            [batch, time] mu-law classes (``input_type="mulaw"``) or float32 [batch, time] in [-1, 1];
            ``"mel"`` (mel conditioning only): float32 [batch, frames + 2 * context, n_mels] from
            ``conditioning_mel``, with ``frames * hop >= time``;
            ``"speaker"`` (``num_speakers > 0`` only): int32 [batch];
            ``"pulses"`` (``pulse_input`` only, optional): float32 [batch, time, PULSE_FEATURES], the pulse
            train of training (``speechkit.vocoder.pulses.aligned_pulses``); without it, the free-running
            one of generation.

    Returns:
        float32 [batch, time, num_classes] logits.

    Example:
        >>> model = WaveNet(WaveNetConfig(conditioning="none", layers_per_stack=3, stacks=2))
        >>> model({"audio": np.zeros((1, 100), np.int32)}).shape
        TensorShape([1, 100, 256])
    """

    def __init__(self, config, frontend=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = WaveNetConfig.from_dict(config)
        frontend = FrontendConfig(kind="mel", normalize=False) if frontend is None else frontend
        if isinstance(frontend, dict):
            frontend = FrontendConfig.from_dict(frontend)
        config.check_frontend(frontend, source="WaveNet")
        self.config = config
        self.frontend = frontend
        r = config.residual_channels
        self.dilations = dilations(layers_per_stack=config.layers_per_stack, stacks=config.stacks)
        if config.input_type == "mulaw":
            self.input_embedding = keras.layers.Embedding(config.num_classes, r, name="input_embedding")
        else:
            self.input_embedding = keras.layers.Dense(r, name="input_projection")
        self.upsampler = (MelUpsampler(channels=config.cond_channels, context=config.cond_context,
                                       factors=config.upsample_factors, mel_mean=config.mel_mean,
                                       mel_std=config.mel_std,
                                       scaled_channels=frontend.n_mels if config.pitch_features else None,
                                       name="upsampler")
                          if config.conditioning == "mel" else None)
        self.pulse_projection = (keras.layers.Dense(config.cond_channels, use_bias=False, kernel_initializer="zeros",
                                                    name="pulse_projection")
                                 if config.pulse_input else None)
        self.speaker_embedding = (keras.layers.Embedding(config.num_speakers, config.speaker_channels,
                                                         name="speaker_embedding")
                                  if config.num_speakers else None)
        self.res_layers = [
            ResidualLayer(residual_channels=r, gate_channels=config.gate_channels,
                          skip_channels=config.skip_channels, kernel_size=config.kernel_size, dilation=d,
                          cond_channels=config.cond_channels if self.upsampler is not None else 0,
                          speaker_channels=config.speaker_channels if config.num_speakers else 0,
                          residual=i + 1 < len(self.dilations), name=f"layer_{i}")
            for i, d in enumerate(self.dilations)]
        self.head_hidden = keras.layers.Dense(config.head_channels, name="head_hidden")
        self.head_out = keras.layers.Dense(config.num_classes, name="head_out")
        self.buffer_sizes = [layer.buffer_size for layer in self.res_layers]
        self.buffer_offsets = list(np.cumsum([0] + self.buffer_sizes[:-1]).astype(int))
        self.buffer_total = int(sum(self.buffer_sizes))

    # -- Shared pieces -- #

    def embed(self, x):
        """Network input (classes or values, any leading shape) to the residual stream [..., R]."""
        if self.config.input_type == "mulaw":
            return self.input_embedding(keras.ops.cast(x, "int32"))
        return self.input_embedding(keras.ops.expand_dims(keras.ops.cast(x, "float32"), -1))

    def head(self, skip):
        """Summed skips [..., S] to logits [..., num_classes]."""
        h = self.head_hidden(keras.ops.relu(skip))
        return self.head_out(keras.ops.relu(h))

    def upsample(self, mel, num_samples=None, pulses=None):
        """Conditioning mel [batch, frames + 2 * context, n_mels] to [batch, samples, cond_channels].

        With ``pitch_features`` the mel's pitch features (``speechkit.vocoder.pitch``) join it first.
        With ``pulse_input`` the projected pulse train is added: ``pulses`` [batch, samples,
        PULSE_FEATURES] when given (training), else the free-running one the mel implies (generation).
        """
        features = mel
        if self.config.pitch_features:
            features = keras.ops.concatenate(
                [mel, pitch_features(mel, frontend=self.frontend, count=self.config.pitch_features)], axis=-1)
        cond = self.upsampler(features)
        if num_samples is not None:
            cond = cond[:, :num_samples]
        if self.pulse_projection is None:
            return cond
        if pulses is None:
            pulses = free_pulses(mel, frontend=self.frontend, context=self.config.cond_context,
                                 num_samples=keras.ops.shape(cond)[1])
        return cond + self.pulse_projection(pulses)

    def speaker_vector(self, speaker):
        """int32 [batch] speaker ids to float32 [batch, speaker_channels] (None without speakers)."""
        if self.speaker_embedding is None:
            return None
        return self.speaker_embedding(keras.ops.cast(speaker, "int32"))

    def conditioning_bias(self, cond=None, speaker_vector=None):
        """Every layer's conditioning bias at once.

        Args:
            cond: float32 [batch, time, cond_channels] upsampled conditioning, or None.
            speaker_vector: float32 [batch, speaker_channels], or None.

        Returns:
            float32 [batch, time, layers, 2G] (time is 1 when only ``speaker_vector`` is given),
            or None for an unconditional model without speakers.
        """
        biases = [layer.conditioning_bias(cond, speaker_vector) for layer in self.res_layers]
        return None if biases[0] is None else keras.ops.stack(biases, axis=2)

    # -- Full (teacher-forced) pass -- #

    def _check_inputs(self, inputs):
        if not isinstance(inputs, dict) or "audio" not in inputs:
            raise ConfigError("WaveNet inputs must be a dict with an 'audio' entry")
        if self.upsampler is not None and inputs.get("mel") is None:
            raise ConfigError("this WaveNet is mel-conditioned: inputs need a 'mel' entry")
        if self.speaker_embedding is not None and inputs.get("speaker") is None:
            raise ConfigError("this WaveNet is speaker-conditioned: inputs need a 'speaker' entry")

    def forward(self, inputs, *, return_layer_inputs=False):
        """The full pass; optionally also every layer's input [batch, time, R] (used for priming)."""
        self._check_inputs(inputs)
        x = self.embed(inputs["audio"])
        time = keras.ops.shape(x)[1]
        cond = self.upsample(inputs["mel"], time, inputs.get("pulses")) if self.upsampler is not None else None
        speaker = self.speaker_vector(inputs.get("speaker"))
        skips = None
        layer_inputs = []
        for layer in self.res_layers:
            layer_inputs.append(x)
            x, skip = layer(x, cond, speaker)
            skips = skip if skips is None else skips + skip
        logits = self.head(skips)
        return (logits, layer_inputs) if return_layer_inputs else logits

    def call(self, inputs, training=None):
        return self.forward(inputs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss on the outputs aligned with ``y``: targets cover the END of the input.

        Training windows may carry real history before the positions they score
        (``speechkit.vocoder.data.WindowSampler``); those positions only give context.
        """
        y_pred, sample_weight = _align_to_targets(y, y_pred, sample_weight)
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """The compiled metrics on the outputs aligned with ``y`` (see ``compute_loss``)."""
        y_pred, sample_weight = _align_to_targets(y, y_pred, sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def build(self, input_shape=None):
        batch = 1
        dummy = {"audio": np.zeros((batch, 2), np.int32 if self.config.input_type == "mulaw" else np.float32)}
        if self.upsampler is not None:
            dummy["mel"] = np.zeros((batch, 1 + 2 * self.config.cond_context, self.frontend.n_mels), np.float32)
        if self.speaker_embedding is not None:
            dummy["speaker"] = np.zeros((batch,), np.int32)
        self.forward(dummy)
        self.built = True

    # -- Cached incremental step -- #

    def initial_state(self, batch_size):
        """Generation state before any sample: zero history, as the causal padding of the full pass.

        Returns:
            dict ``{"buffer": float32 [buffer_total, batch, R], "time": int32 scalar}``; layer ``l``
            owns slots ``buffer_offsets[l] : buffer_offsets[l] + buffer_sizes[l]``, and slot
            ``offset + (t mod size)`` holds its input at time ``t`` until ``t + size``.
        """
        return {"buffer": tf.zeros([self.buffer_total, batch_size, self.config.residual_channels], tf.float32),
                "time": tf.constant(0, tf.int32)}

    def _slots(self, time, shift):
        sizes = tf.constant(self.buffer_sizes, tf.int32)
        return tf.constant(self.buffer_offsets, tf.int32) + tf.math.floormod(time - shift, sizes)

    def step(self, x_t, state, cond_t=None):
        """One cached generation step, O(layers) work, sharing every weight with the full pass.

        Args:
            x_t: the network input at time t (sample t - 1): int32 [batch] classes or float32 [batch].
            state: dict from ``initial_state``, ``prime`` or a previous ``step``; not modified.
            cond_t: float32 [batch, layers, 2G], the row of ``conditioning_bias`` for time t, or None.

        Returns:
            (logits float32 [batch, num_classes], new state).
        """
        buffer, time = state["buffer"], state["time"]
        k = self.config.kernel_size
        dil = tf.constant(self.dilations, tf.int32)
        taps = [tf.gather(buffer, self._slots(time, j * dil), axis=0) for j in range(1, k)]
        h = self.embed(x_t)
        written = []
        skips = None
        for i, layer in enumerate(self.res_layers):
            written.append(h)
            bias = None if cond_t is None else cond_t[:, i]
            h, skip = layer.step(h, [tap[i] for tap in taps], bias)
            skips = skip if skips is None else skips + skip
        logits = self.head(skips)
        slots = self._slots(time, 0)[:, tf.newaxis]
        buffer = tf.tensor_scatter_nd_update(buffer, slots, tf.stack(written, axis=0))
        return logits, {"buffer": buffer, "time": time + 1}

    def state_from_layer_inputs(self, layer_inputs, time):
        """The state after ``time`` steps, built from the full pass's layer inputs (priming).

        Args:
            layer_inputs: list (one per layer) of float32 [batch, >= time, R] from
                ``forward(..., return_layer_inputs=True)``.
            time: int, number of positions already consumed.

        Returns:
            dict like ``initial_state``, equal to the state after ``time`` calls of ``step``.
        """
        parts = []
        for x, size in zip(layer_inputs, self.buffer_sizes):
            x = x[:, :time]
            padded = tf.pad(x, [[0, 0], [size, 0], [0, 0]])
            slots = np.arange(size)
            times = time - size + np.mod(slots - (time - size), size)
            parts.append(tf.transpose(tf.gather(padded, times + size, axis=1), [1, 0, 2]))
        return {"buffer": tf.concat(parts, axis=0), "time": tf.constant(time, tf.int32)}

    def prime(self, inputs):
        """State after consuming the teacher-forcing ``inputs`` (dict as for ``call``) in one full pass.

        Returns:
            (logits float32 [batch, time, classes] of the primed positions, state).
        """
        logits, layer_inputs = self.forward(inputs, return_layer_inputs=True)
        time = int(keras.ops.shape(inputs["audio"])[1])
        return logits, self.state_from_layer_inputs(layer_inputs, time)

    # -- Serialisation -- #

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(), "frontend": self.frontend.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(config.pop("config"), config.pop("frontend"), **config)

    def receptive_field(self):
        """ReceptiveField of this model at the front end's sample rate."""
        return receptive_field(layers_per_stack=self.config.layers_per_stack, stacks=self.config.stacks,
                               kernel_size=self.config.kernel_size, sample_rate=self.frontend.sample_rate)

    def input_from_classes(self, classes):
        """Network input for mu-law classes (see ``network_input``)."""
        return network_input(classes, config=self.config, frontend=self.frontend)
