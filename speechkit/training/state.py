"""A run's training position and counters, saved next to each checkpoint for an exact resume."""

import dataclasses
import json
import os

from speechkit.config import atomic_write_text
from speechkit.errors import RunError

__all__ = ["TrainState"]

_FILE = "state.json"


@dataclasses.dataclass
class TrainState:
    """Where a run stands: the next batch to train, the optimizer step and the running totals.

    Keras' ``BackupAndRestore`` restores the epoch but restarts it from its first batch; this
    state records the epoch AND the batches done in it, so a resumed run feeds the rest of the
    epoch's plan and sees exactly what an uninterrupted run would.

    Attributes:
        epoch: int, the epoch of the next batch.
        batch: int, batches of ``epoch`` already trained.
        step: int, the optimizer's iteration counter (steps skipped as non-finite do not count).
        audio_seconds: float, seconds of audio in the batches trained so far.
        train_seconds, train_cpu_seconds: float, wall and CPU seconds spent in training steps.
        nonfinite_steps: int, steps skipped because their loss or gradient was not finite.
        best: float or None, the best value of the run's dev metric so far.
        fingerprint: str or None, a hash of the training data; a resume on other data is refused.
        weights: str or None, the checkpoint file (in the backup directory) this state belongs to.
        warm_start: str or None, the run or model whose weights the run started from (``--init-from``);
            kept so that a resume plans the same epochs as the first call.
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0
    audio_seconds: float = 0.0
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0
    nonfinite_steps: int = 0
    best: float = None
    fingerprint: str = None
    weights: str = None
    warm_start: str = None

    @classmethod
    def load(cls, backup_dir):
        """The state saved in ``backup_dir``, or None when there is none.

        Raises:
            RunError: the state file is unreadable or not a state.
        """
        path = os.path.join(backup_dir, _FILE)
        if not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            return cls(**data)
        except (OSError, json.JSONDecodeError, TypeError) as err:
            raise RunError(f"{path}: unreadable training state ({err}); remove {backup_dir} to restart") from None

    def save(self, backup_dir):
        """Atomically write the state to ``backup_dir/state.json``."""
        atomic_write_text(os.path.join(backup_dir, _FILE), json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    def position(self):
        """(epoch, batch), the next batch to train."""
        return self.epoch, self.batch
