"""The optimiser section of every training preset, and the Keras optimiser it builds."""

import dataclasses

import keras

from speechkit.config import Config
from speechkit.errors import ConfigError
from speechkit.training.schedules import SCHEDULES, WarmupDecay

__all__ = ["OptimizerConfig", "make_optimizer"]


@dataclasses.dataclass(frozen=True)
class OptimizerConfig(Config):
    """Optimiser and learning-rate schedule: linear warm-up to ``learning_rate``, then a decay.

    Args:
        name: ``"adam"`` or ``"adamw"``.
        learning_rate: float > 0, peak learning rate, reached after ``warmup_steps``.
        warmup_steps: int >= 0, steps of linear warm-up.
        schedule: ``"constant"``, ``"exponential"`` (times ``decay_rate`` every ``decay_steps``),
            ``"cosine"`` (to ``min_learning_rate`` over ``decay_steps``) or ``"inverse_sqrt"``.
        decay_steps: int > 0, steps after warm-up that define the decay's time scale.
        decay_rate: float in (0, 1], exponential decay factor per ``decay_steps``.
        min_learning_rate: float >= 0, floor of the schedule.
        clipnorm: float > 0 or None, global gradient-norm clipping (Deep Speech 2 clips too).
        weight_decay: float >= 0, decoupled weight decay (``adamw`` only).
        beta_1, beta_2, epsilon: Adam parameters.
    """

    name: str = "adam"
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    schedule: str = "exponential"
    decay_steps: int = 1000
    decay_rate: float = 0.5
    min_learning_rate: float = 1e-5
    clipnorm: float = 400.0
    weight_decay: float = 0.0
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8

    def __post_init__(self):
        if self.name not in ("adam", "adamw"):
            raise ConfigError(f"optimizer name must be 'adam' or 'adamw', received: {self.name!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, received: {self.schedule!r}")
        if self.learning_rate <= 0 or self.warmup_steps < 0 or self.decay_steps <= 0:
            raise ConfigError("need learning_rate > 0, warmup_steps >= 0 and decay_steps > 0, received: "
                              f"{self.learning_rate}, {self.warmup_steps}, {self.decay_steps}")
        if not 0 < self.decay_rate <= 1 or not 0 <= self.min_learning_rate <= self.learning_rate:
            raise ConfigError("need 0 < decay_rate <= 1 and 0 <= min_learning_rate <= learning_rate, received: "
                              f"{self.decay_rate}, {self.min_learning_rate}")
        if self.clipnorm is not None and self.clipnorm <= 0:
            raise ConfigError(f"clipnorm must be > 0 or null, received: {self.clipnorm}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, received: {self.weight_decay}")


def make_optimizer(config):
    """A Keras Adam or AdamW optimiser on a ``WarmupDecay`` schedule.

    Args:
        config: OptimizerConfig.

    Returns:
        keras.optimizers.Optimizer (not built; Keras wraps it for loss scaling under ``mixed_float16``).
    """
    schedule = WarmupDecay(config.learning_rate, config.warmup_steps, config.schedule, config.decay_steps,
                           config.decay_rate, config.min_learning_rate)
    common = dict(learning_rate=schedule, beta_1=config.beta_1, beta_2=config.beta_2, epsilon=config.epsilon,
                  global_clipnorm=config.clipnorm)
    if config.name == "adamw":
        return keras.optimizers.AdamW(weight_decay=config.weight_decay, **common)
    return keras.optimizers.Adam(**common)
