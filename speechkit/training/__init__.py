"""The training layer shared by every model family: schedules, optimisers, distribution, the
replanning batch stream, callbacks, and ``fit_run``, the one training loop."""

from speechkit.training.batches import EpochPlan
from speechkit.training.callbacks import (MAX_CONSECUTIVE_NONFINITE, Checkpoint, DevMetric, Progress, SaveModel,
                                          TimeBudget)
from speechkit.training.distribute import (STRATEGIES, any_worker, is_chief, make_strategy, multi_worker,
                                           precision_policy)
from speechkit.training.fit import fit_run
from speechkit.training.optimizers import OptimizerConfig, make_optimizer
from speechkit.training.schedules import SCHEDULES, WarmupDecay
from speechkit.training.state import TrainState
from speechkit.training.warm_start import copy_weights

__all__ = ["EpochPlan", "MAX_CONSECUTIVE_NONFINITE", "Checkpoint", "DevMetric", "Progress", "SaveModel", "TimeBudget",
           "STRATEGIES", "any_worker", "is_chief", "make_strategy", "multi_worker", "precision_policy", "fit_run",
           "OptimizerConfig", "make_optimizer", "SCHEDULES", "WarmupDecay", "TrainState", "copy_weights"]
