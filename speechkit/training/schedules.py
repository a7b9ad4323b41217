"""Learning-rate schedules shared by every model family: linear warm-up, then a decay."""

import math

import keras
import tensorflow as tf

from speechkit.errors import ConfigError

__all__ = ["SCHEDULES", "WarmupDecay"]

SCHEDULES = ("constant", "exponential", "cosine", "inverse_sqrt")


@keras.saving.register_keras_serializable(package="speechkit")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak`` over ``warmup_steps``, then a decay, floored at ``minimum``.

    Warm-up keeps the first Adam steps small while its moment estimates are still noisy; Deep
    Speech 2 (Amodei et al., 2016) and WaveNet training both use a decaying rate after it.

    Args:
        peak: float > 0, the rate reached at the end of warm-up.
        warmup_steps: int >= 0, steps of linear warm-up (step ``s`` gets ``peak * (s + 1) / warmup_steps``).
        schedule: ``"constant"``, ``"exponential"`` (times ``decay_rate`` every ``decay_steps``),
            ``"cosine"`` (to ``minimum`` over ``decay_steps``) or ``"inverse_sqrt"``.
        decay_steps: int > 0, the decay's time scale, counted after warm-up.
        decay_rate: float in (0, 1], exponential factor per ``decay_steps``.
        minimum: float >= 0, the floor.

    Raises:
        ConfigError: ``schedule`` is not one of ``SCHEDULES``.

    Example:
        >>> schedule = WarmupDecay(1e-3, 10, "exponential", decay_steps=100, decay_rate=0.5)
        >>> round(float(schedule(110)), 6)
        0.0005
    """

    def __init__(self, peak, warmup_steps, schedule="exponential", decay_steps=1000, decay_rate=0.5, minimum=0.0):
        if schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, received: {schedule!r}")
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.schedule = schedule
        self.decay_steps = int(decay_steps)
        self.decay_rate = float(decay_rate)
        self.minimum = float(minimum)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = tf.cast(self.warmup_steps, tf.float32)
        ramp = tf.minimum(1.0, (step + 1.0) / tf.maximum(warmup, 1.0))
        after = tf.maximum(step - warmup, 0.0) / float(self.decay_steps)
        if self.schedule == "exponential":
            factor = tf.pow(self.decay_rate, after)
        elif self.schedule == "cosine":
            floor = self.minimum / self.peak
            factor = floor + (1.0 - floor) * 0.5 * (1.0 + tf.cos(math.pi * tf.minimum(after, 1.0)))
        elif self.schedule == "inverse_sqrt":
            factor = tf.math.rsqrt(1.0 + after)
        else:
            factor = tf.constant(1.0)
        return tf.maximum(self.peak * ramp * factor, self.minimum)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "schedule": self.schedule,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate, "minimum": self.minimum}
