"""Deep Speech 2 (Amodei et al., 2016): 2D convolutions, sequence-wise batch-normalised GRUs, CTC.

The network (``DeepSpeech2``) is a Keras functional model with two inputs, ``features`` float32
[batch, frames, num_features] and ``feature_lengths`` int32 [batch], and two outputs, ``log_probs`` float32
[batch, frames', vocab_size] (log-softmax) and ``output_lengths`` int32 [batch]. Its config holds
the architecture and the front end it was trained on, so a saved model describes itself.

The layers live in ``speechkit.asr.layers``; lengths travel with the tensors through each of them,
so an utterance gets the same log-probabilities alone and inside a padded batch.
"""

import dataclasses
import logging
import math

import keras
import numpy as np

from speechkit.asr.layers import (BatchNormGRU, Lookahead, MaskedConv2D, SpecAugment, SpecAugmentConfig,
                                  conv_output_lengths)
from speechkit.config import Config
from speechkit.errors import ConfigError
from speechkit.frontend import FrontendConfig
from speechkit.text import Vocabulary

__all__ = [
    "SpecAugmentConfig",
    "DeepSpeech2Config",
    "DeepSpeech2",
    "build_deepspeech2",
    "output_lengths",
    "time_reduction_factor",
]

logger = logging.getLogger(__name__)


# -- Configuration -- #

@dataclasses.dataclass(frozen=True)
class DeepSpeech2Config(Config):
    """Architecture of a Deep Speech 2 network.

    Args:
        conv_filters: tuple of int > 0, output channels of each 2D convolution (at least one).
        conv_kernels: tuple of (time, frequency) int pairs, one per convolution.
        conv_strides: tuple of (time, frequency) int pairs, one per convolution. The product of the
            time strides is the model's time reduction factor.
        conv_right_context: tuple of int, one per convolution (or empty): future input frames each
            output frame of that convolution sees, in [0, kernel_time - 1] (0 is causal). Empty pads
            time symmetrically (about half the kernel in the future), as before this option existed.
        rnn_layers: int >= 1, number of GRU layers.
        rnn_units: int > 0, hidden units per GRU direction.
        bidirectional: bool, bidirectional GRUs (forward and backward outputs are summed, as in the
            paper). The streaming variant sets this to false and adds a lookahead convolution.
        lookahead: int >= 0, future frames (tau) seen by the lookahead convolution after the GRUs;
            0 disables it.
        fc_units: int >= 0, width of a clipped-ReLU fully connected layer before the output layer;
            0 disables it.
        relu_clip: float > 0, clipped ReLU ceiling, min(max(x, 0), relu_clip).
        bn_momentum: float in (0, 1), momentum of the batch-norm moving averages.
        bn_epsilon: float > 0, batch-norm variance epsilon.
        specaugment: SpecAugmentConfig, feature masking during training (off by default).
    """

    conv_filters: tuple[int, ...] = (32, 32)
    conv_kernels: tuple[tuple[int, int], ...] = ((11, 41), (11, 21))
    conv_strides: tuple[tuple[int, int], ...] = ((2, 2), (1, 2))
    conv_right_context: tuple[int, ...] = ()
    rnn_layers: int = 5
    rnn_units: int = 800
    bidirectional: bool = True
    lookahead: int = 0
    fc_units: int = 0
    relu_clip: float = 20.0
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    specaugment: SpecAugmentConfig = dataclasses.field(default_factory=SpecAugmentConfig)

    def __post_init__(self):
        object.__setattr__(self, "conv_filters", tuple(self.conv_filters))
        object.__setattr__(self, "conv_right_context", tuple(self.conv_right_context))
        for name in ("conv_kernels", "conv_strides"):
            object.__setattr__(self, name, tuple(tuple(pair) for pair in getattr(self, name)))
        n = len(self.conv_filters)
        if n < 1:
            raise ConfigError("conv_filters must list at least one convolution")
        if len(self.conv_kernels) != n or len(self.conv_strides) != n:
            raise ConfigError(
                f"conv_filters, conv_kernels and conv_strides must have the same length, received: "
                f"{len(self.conv_filters)}, {len(self.conv_kernels)}, {len(self.conv_strides)}")
        for name in ("conv_kernels", "conv_strides"):
            for pair in getattr(self, name):
                if len(pair) != 2 or any(int(v) != v or v < 1 for v in pair):
                    raise ConfigError(f"{name} entries must be (time, frequency) pairs of int >= 1, received: {pair!r}")
        if self.conv_right_context and (len(self.conv_right_context) != n or any(
                int(r) != r or not 0 <= r < k[0] for r, k in zip(self.conv_right_context, self.conv_kernels))):
            raise ConfigError(f"conv_right_context must list one int in [0, kernel_time - 1] per convolution, "
                              f"received: {self.conv_right_context!r} for kernels {self.conv_kernels!r}")
        if any(int(f) != f or f < 1 for f in self.conv_filters):
            raise ConfigError(f"conv_filters must be int >= 1, received: {self.conv_filters!r}")
        if self.rnn_layers < 1 or self.rnn_units < 1:
            raise ConfigError(f"rnn_layers and rnn_units must be >= 1, received: {self.rnn_layers}, {self.rnn_units}")
        if self.lookahead < 0 or self.fc_units < 0:
            raise ConfigError(f"lookahead and fc_units must be >= 0, received: {self.lookahead}, {self.fc_units}")
        if self.relu_clip <= 0 or self.bn_epsilon <= 0 or not 0 < self.bn_momentum < 1:
            raise ConfigError("need relu_clip > 0, bn_epsilon > 0 and 0 < bn_momentum < 1")

    @property
    def time_reduction_factor(self):
        """int, product of the convolution time strides: one output frame per this many input frames."""
        return time_reduction_factor(self.conv_strides)

    @property
    def conv_time_padding(self):
        """tuple of (left, right) int pairs: zero frames each convolution pads before and after in time."""
        out = []
        for i, (kt, _) in enumerate(self.conv_kernels):
            right = self.conv_right_context[i] if self.conv_right_context else kt - 1 - (kt - 1) // 2
            out.append((kt - 1 - right, right))
        return tuple(out)

    @property
    def lookahead_frames(self):
        """int, future feature frames the network reads: output frame ``j`` depends on input frames up
        to ``j * time_reduction_factor + lookahead_frames`` (the convolutions' right context, each in
        its input's frames, plus ``lookahead`` output frames); infinite (``math.inf``) when bidirectional.
        """
        if self.bidirectional:
            return math.inf
        frames, step = 0, 1
        for (_, right), (stride, _) in zip(self.conv_time_padding, self.conv_strides):
            frames += right * step
            step *= int(stride)
        return frames + self.lookahead * step



# -- Length arithmetic -- #

def time_reduction_factor(conv_strides):
    """int, product of the time strides of ``conv_strides`` ((time, frequency) pairs)."""
    return int(np.prod([int(s[0]) for s in conv_strides]))


def output_lengths(lengths, conv_strides):
    """Valid output frames of the network for ``lengths`` input frames.

    Equals ceil(lengths / time_reduction_factor) because nested ceilings of divisions compose.

    Args:
        lengths: int, numpy int array or int tensor [batch], valid input frames.
        conv_strides: the (time, frequency) strides of the convolutions.
    """
    for stride in conv_strides:
        lengths = conv_output_lengths(lengths, int(stride[0]))
    return lengths


# -- Model -- #

@keras.saving.register_keras_serializable(package="speechkit")
class DeepSpeech2(keras.Model):
    """The Deep Speech 2 network, a functional Keras model that carries its own description.

    ``get_config`` holds the architecture (``DeepSpeech2Config``), the front end the network was
    trained on (``FrontendConfig``) and the number of output classes, so a ``.keras`` file alone
    says which features it expects; ``from_config`` rebuilds the same graph, layer names included.

    Args:
        config: DeepSpeech2Config (or its dict form).
        frontend: FrontendConfig (or its dict form); ``frontend.num_features`` is the input width.
        vocab_size: int > 1, output classes including the blank at index 0; defaults to
            ``Vocabulary().size`` (29).
        name: str, model name.

    Call arguments:
        inputs: ``[features float32 [batch, frames, frontend.num_features], feature_lengths int32 [batch]]``.
        training: bool, SpecAugment and batch-norm statistics are active only in training.

    Returns:
        ``[log_probs float32 [batch, frames', vocab_size], output_lengths int32 [batch]]`` with
        ``frames' = ceil(frames / time_reduction_factor)``.

    Attributes:
        config, frontend, vocab_size, time_reduction_factor (int).

    Example:
        >>> small = DeepSpeech2Config(conv_filters=(4,), conv_kernels=((3, 5),), conv_strides=((2, 2),),
        ...                           rnn_layers=1, rnn_units=8)
        >>> model = DeepSpeech2(small, frontend=FrontendConfig(kind="mel", n_mels=16))
        >>> [tuple(t.shape) for t in model([np.zeros((1, 9, 16), "float32"), np.array([9], "int32")])]
        [(1, 5, 29), (1,)]
    """

    def __init__(self, config, *, frontend, vocab_size=None, name="deepspeech2", **kwargs):
        if isinstance(config, dict):
            config = DeepSpeech2Config.from_dict(config)
        if isinstance(frontend, dict):
            frontend = FrontendConfig.from_dict(frontend)
        vocab_size = Vocabulary().size if vocab_size is None else int(vocab_size)
        if vocab_size < 2:
            raise ConfigError(f"vocab_size must be >= 2, received: {vocab_size}")
        inputs, outputs = _graph(config, frontend.num_features, vocab_size)
        super().__init__(inputs, outputs, name=name, **kwargs)
        self.config = config
        self.frontend = frontend
        self.vocab_size = vocab_size

    @property
    def time_reduction_factor(self):
        """int, input frames per output frame (``DeepSpeech2Config.time_reduction_factor``)."""
        return self.config.time_reduction_factor

    def output_lengths(self, lengths):
        """Valid output frames for ``lengths`` valid input frames (int, numpy array or tensor)."""
        return output_lengths(lengths, self.config.conv_strides)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "config": self.config.to_dict(),
                "frontend": self.frontend.to_dict(), "vocab_size": self.vocab_size}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        return cls(config.pop("config"), frontend=config.pop("frontend"), **config)


def _graph(config, num_features, vocab_size):
    """The functional graph: ``([features, lengths], [log_probs, output_lengths])`` symbolic tensors."""
    features = keras.Input(shape=(None, num_features), name="features")
    lengths = keras.Input(shape=(), dtype="int32", name="feature_lengths")
    x = features
    if config.specaugment.enabled:
        x = SpecAugment(**dataclasses.asdict(config.specaugment), name="specaugment")(x, lengths)
    x = keras.layers.Reshape((-1, num_features, 1), name="add_channel")(x)
    n, bins = lengths, num_features
    for i, (filters, kernel, stride) in enumerate(zip(config.conv_filters, config.conv_kernels, config.conv_strides)):
        right = config.conv_right_context[i] if config.conv_right_context else None
        x, n = MaskedConv2D(filters, kernel, stride, relu_clip=config.relu_clip, bn_momentum=config.bn_momentum,
                            bn_epsilon=config.bn_epsilon, right_context=right, name=f"conv_{i + 1}")(x, n)
        bins = math.ceil(bins / stride[1])
    x = keras.layers.Reshape((-1, bins * config.conv_filters[-1]), name="flatten_channels")(x)
    for i in range(config.rnn_layers):
        x = BatchNormGRU(config.rnn_units, bidirectional=config.bidirectional, bn_momentum=config.bn_momentum,
                         bn_epsilon=config.bn_epsilon, name=f"gru_{i + 1}")(x, n)
    if config.lookahead:
        x = Lookahead(config.lookahead, relu_clip=config.relu_clip, name="lookahead")(x, n)
    if config.fc_units:
        x = keras.layers.Dense(config.fc_units, name="fc")(x)
        x = keras.layers.ReLU(max_value=config.relu_clip, name="fc_relu")(x)
    logits = keras.layers.Dense(vocab_size, name="logits")(x)
    log_probs = keras.layers.Activation("log_softmax", dtype="float32", name="log_probs")(logits)
    out_lengths = keras.layers.Identity(name="output_lengths")(n)
    return [features, lengths], [log_probs, out_lengths]


def build_deepspeech2(config, *, frontend, vocab_size=None, name="deepspeech2"):
    """Build the Deep Speech 2 network for features of ``frontend``.

    Args:
        config: DeepSpeech2Config.
        frontend: FrontendConfig the network consumes; stored in the model (``DeepSpeech2``).
        vocab_size: int > 1, output classes including the blank at index 0; defaults to
            ``Vocabulary().size`` (29).
        name: str, model name.

    Returns:
        DeepSpeech2, a functional keras.Model mapping ``[features float32 [B, T, frontend.num_features],
        feature_lengths int32 [B]]`` to ``[log_probs float32 [B, T', vocab_size], output_lengths int32
        [B]]`` with ``T' = ceil(T / config.time_reduction_factor)``.
    """
    return DeepSpeech2(config, frontend=frontend, vocab_size=vocab_size, name=name)
