"""TTS presets (``models/tts-*.yaml``): the front end, the acoustic model, and its training."""

import dataclasses

from speechkit.config import Config
from speechkit.errors import ConfigError
from speechkit.frontend import FrontendConfig
from speechkit.text import ALPHABET
from speechkit.training.optimizers import OptimizerConfig

__all__ = ["AcousticModelConfig", "TTSTrainConfig", "TTSConfig"]


def _adam():
    return OptimizerConfig(learning_rate=2e-3, warmup_steps=200, schedule="exponential", decay_steps=4000,
                           decay_rate=0.5, min_learning_rate=1e-4, clipnorm=1.0)


@dataclasses.dataclass(frozen=True)
class AcousticModelConfig(Config):
    """The text-to-mel network (``speechkit.tts.model.AcousticModel``).

    Args:
        characters: str, the input symbols in index order from 1 (0 pads); the ASR vocabulary
            (``speechkit.text.ALPHABET``), so the forced aligner's characters are the model's.
        embedding_dim: int > 0, character embedding and encoder width.
        encoder_layers: int > 0, residual conv blocks (conv, ReLU, layer norm, dropout) over characters.
        decoder_dim: int > 0, decoder width.
        decoder_layers: int > 0, residual conv blocks over mel frames.
        kernel_size: int > 0, odd, convolution width of encoder and decoder blocks.
        decoder_dilations: tuple of int > 0, the dilation of each decoder block, cycled.
        predictor_dim: int > 0, width of the duration predictor's two conv layers.
        dropout: float in [0, 1).
        max_characters: int > 0, the longest input (spaces included); longer text is split before
            synthesis (``speechkit.tts.text.split_text``).
        max_frames_per_character: int > 0, cap on a predicted duration (10 ms frames).
        mel_mean, mel_std: float, the scale the network predicts in: ``(log_mel - mel_mean) / mel_std``.
    """

    characters: str = ALPHABET
    embedding_dim: int = 128
    encoder_layers: int = 3
    decoder_dim: int = 128
    decoder_layers: int = 4
    kernel_size: int = 5
    decoder_dilations: tuple[int, ...] = (1, 2, 4, 1)
    predictor_dim: int = 128
    dropout: float = 0.1
    max_characters: int = 200
    max_frames_per_character: int = 60
    mel_mean: float = -3.0
    mel_std: float = 5.0

    def __post_init__(self):
        object.__setattr__(self, "decoder_dilations", tuple(int(d) for d in self.decoder_dilations))
        for name in ("embedding_dim", "encoder_layers", "decoder_dim", "decoder_layers", "predictor_dim",
                     "max_characters", "max_frames_per_character"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ConfigError(f"model.{name} must be a positive int, received: {getattr(self, name)!r}")
        if self.kernel_size <= 0 or self.kernel_size % 2 == 0:
            raise ConfigError(f"model.kernel_size must be a positive odd int, received: {self.kernel_size!r}")
        if not self.decoder_dilations or min(self.decoder_dilations) <= 0:
            raise ConfigError(f"model.decoder_dilations must be positive ints, received: {self.decoder_dilations}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must lie in [0, 1), received: {self.dropout}")
        if self.mel_std <= 0:
            raise ConfigError(f"model.mel_std must be > 0, received: {self.mel_std}")
        if not self.characters or len(set(self.characters)) != len(self.characters) or " " not in self.characters:
            raise ConfigError(f"model.characters must be unique and include the space, received: {self.characters!r}")

    @property
    def vocabulary_size(self):
        """int, embedding rows: the characters plus the padding index 0."""
        return len(self.characters) + 1


@dataclasses.dataclass(frozen=True)
class TTSTrainConfig(Config):
    """Training hyper-parameters of a TTS preset (its ``train`` section).

    Args:
        batch_size: int > 0, utterances per step.
        optimizer: ``speechkit.training.OptimizerConfig``.
        epochs: int > 0, passes over the training utterances (the last partial batch is dropped).
        seed: int, weight initialisation and batch order.
        duration_weight: float >= 0, weight of the log-duration MSE next to the mel L1.
        max_seconds: float > 0, longer training utterances are skipped (and counted).
        checkpoint_every: int > 0, steps between resumable checkpoints.
        log_every: int > 0, steps between TensorBoard points of the per-step loss.
        jit_compile: bool, compile the training step with XLA.
    """

    batch_size: int = 16
    optimizer: OptimizerConfig = dataclasses.field(default_factory=_adam)
    epochs: int = 200
    seed: int = 0
    duration_weight: float = 1.0
    max_seconds: float = 12.0
    checkpoint_every: int = 100
    log_every: int = 10
    jit_compile: bool = False

    def __post_init__(self):
        for name in ("batch_size", "epochs", "checkpoint_every", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be a positive int, received: {getattr(self, name)!r}")
        if self.duration_weight < 0 or self.max_seconds <= 0:
            raise ConfigError(f"need train.duration_weight >= 0 and train.max_seconds > 0, received: "
                              f"{self.duration_weight}, {self.max_seconds}")


@dataclasses.dataclass(frozen=True)
class TTSConfig(Config):
    """A TTS preset (``models/tts-*.yaml``).

    Args:
        frontend: FrontendConfig, the log-mel the model predicts: ``kind: mel`` without normalisation,
            the vocoder's conditioning features (``models/wavenet-mini.yaml``).
        model: AcousticModelConfig.
        train: TTSTrainConfig.

    Raises:
        ConfigError: the front end is not an unnormalised log-mel.
    """

    frontend: FrontendConfig = dataclasses.field(default_factory=lambda: FrontendConfig(kind="mel", normalize=False))
    model: AcousticModelConfig = dataclasses.field(default_factory=AcousticModelConfig)
    train: TTSTrainConfig = dataclasses.field(default_factory=TTSTrainConfig)

    def __post_init__(self):
        if self.frontend.kind != "mel" or self.frontend.normalize:
            raise ConfigError("a TTS model predicts the unnormalised log-mel a vocoder consumes: the front end "
                              f"needs kind: mel and normalize: false, received: kind: {self.frontend.kind}, "
                              f"normalize: {self.frontend.normalize}")
