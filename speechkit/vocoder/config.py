"""Vocoder presets (``models/wavenet-*.yaml``): the front end, the WaveNet, and its training."""

import dataclasses

from speechkit.config import Config
from speechkit.errors import ConfigError
from speechkit.frontend import FrontendConfig
from speechkit.training.optimizers import OptimizerConfig
from speechkit.vocoder.wavenet import WaveNetConfig

__all__ = ["VocoderTrainConfig", "VocoderConfig", "load_vocoder_config"]


def _constant_adam():
    return OptimizerConfig(learning_rate=1e-3, warmup_steps=0, schedule="constant", clipnorm=1.0)


@dataclasses.dataclass(frozen=True)
class VocoderTrainConfig(Config):
    """Training hyper-parameters of a vocoder preset (its ``train`` section).

    Args:
        batch_size: int > 0, windows per step.
        window_frames: int > 0, window length in mel frames (``window_frames * hop`` samples).
        optimizer: ``speechkit.training.OptimizerConfig`` (default: Adam at a constant 1e-3,
            ``clipnorm`` 1.0).
        epochs: int > 0.
        steps_per_epoch: int > 0; an epoch is the unit of the training log and of dev-free model saving.
        seed: int, weight initialisation and window sampling.
        checkpoint_every: int > 0, steps between resumable checkpoints.
        log_every: int > 0, steps between TensorBoard points of the per-step loss.
        sample_every: int >= 0, log a generated clip to TensorBoard every this many epochs (0 = never).
        sample_seconds: float > 0, length of that clip.
        jit_compile: bool, compile the training step with XLA (about 1.5x faster on CPU).
        full_history: bool, feed each window the real audio of the receptive field before it, so every
            scored position sees real history, as in generation; false is the old behaviour (the first
            receptive field of each window is predicted from zeros).
        start_share: float in [0, 1], the share of windows that begin at their utterance's start, after
            silence, as generation from silence does (``WindowSampler``): 0 for vocoders, about 0.25 for
            music models that must strike a requested chord.
        onset_weight: float >= 1, the loss weight of the first ``onset_samples`` scored positions of each
            window that starts at its utterance's start. Once a clip's notes sound, its own history names
            them, so only the stretch where they emerge from the attack teaches a chord model to follow its
            label; an even loss gives that stretch a small share, and the model learns to ignore the label.
        onset_samples: int >= 0, how many positions after the onset ``onset_weight`` covers.
    """

    batch_size: int = 8
    window_frames: int = 40
    optimizer: OptimizerConfig = dataclasses.field(default_factory=_constant_adam)
    epochs: int = 100
    steps_per_epoch: int = 100
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    sample_every: int = 5
    sample_seconds: float = 0.5
    jit_compile: bool = True
    full_history: bool = True
    start_share: float = 0.0
    onset_weight: float = 1.0
    onset_samples: int = 0

    def __post_init__(self):
        for name in ("batch_size", "window_frames", "epochs", "steps_per_epoch", "checkpoint_every", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be a positive int, received: {getattr(self, name)!r}")
        if self.sample_seconds <= 0:
            raise ConfigError(f"train.sample_seconds must be > 0, received: {self.sample_seconds}")
        if not 0.0 <= self.start_share <= 1.0:
            raise ConfigError(f"train.start_share must lie in [0, 1], received: {self.start_share}")
        if self.onset_weight < 1.0:
            raise ConfigError(f"train.onset_weight must be >= 1, received: {self.onset_weight}")
        if not isinstance(self.onset_samples, int) or self.onset_samples < 0:
            raise ConfigError(f"train.onset_samples must be an int >= 0, received: {self.onset_samples!r}")
        if self.sample_every < 0:
            raise ConfigError(f"train.sample_every must be >= 0, received: {self.sample_every}")


@dataclasses.dataclass(frozen=True)
class VocoderConfig(Config):
    """A vocoder preset: the front end, the model and its training (``models/wavenet-*.yaml``).

    Args:
        frontend: FrontendConfig, a log-mel front end without per-utterance normalisation.
        model: WaveNetConfig; checked against ``frontend``.
        train: VocoderTrainConfig.

    Raises:
        ConfigError: the model does not fit the front end.
    """

    frontend: FrontendConfig = dataclasses.field(
        default_factory=lambda: FrontendConfig(kind="mel", normalize=False))
    model: WaveNetConfig = dataclasses.field(default_factory=WaveNetConfig)
    train: VocoderTrainConfig = dataclasses.field(default_factory=VocoderTrainConfig)

    def __post_init__(self):
        self.model.check_frontend(self.frontend)


def load_vocoder_config(path):
    """Read and validate a vocoder preset YAML; errors name the file."""
    return VocoderConfig.load(path)
