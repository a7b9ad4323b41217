"""The replanning batch stream: every epoch's batch plan, replanned per epoch, fed to ONE ``fit``.

A family gives a pure function ``plan(epoch) -> list of batches`` (for Deep Speech 2,
``speechkit.data.pipeline.plan_batches``: SortaGrad order in epoch 0, length buckets after it).
``EpochPlan`` turns it into one stream of index batches from any position ``(epoch, batch)`` to
the end of the run, so a resumed run sees exactly the batches an uninterrupted run would have seen
from that position on. Every epoch has the same number of batches, so a Keras epoch of
``steps_per_epoch`` steps over the stream is exactly one planned epoch.
"""

import collections.abc

import numpy as np
import tensorflow as tf

from speechkit.errors import SpeechkitError

__all__ = ["EpochPlan"]


class EpochPlan:
    """Batch plans for the epochs ``0 .. epochs - 1`` of a run, computed on demand.

    Args:
        plan: callable ``epoch -> list of list of int``, a pure function of the epoch; every epoch
            must have the same number of batches.
        epochs: int > 0, the epochs of the run.

    Attributes:
        steps_per_epoch: int, batches per epoch.

    Example:
        >>> plan = EpochPlan(lambda e: [[e, 0], [1]], epochs=2)
        >>> [(e, b, list(i)) for e, b, i in plan.positions(0, 1)]
        [(0, 1, [1]), (1, 0, [1, 0]), (1, 1, [1])]
    """

    def __init__(self, plan, *, epochs):
        if int(epochs) < 1:
            raise SpeechkitError(f"a run needs at least one epoch, received: {epochs}")
        self._plan = plan
        self.epochs = int(epochs)
        self._cached = {}
        self.steps_per_epoch = len(self.batches(0))
        if not self.steps_per_epoch:
            raise SpeechkitError("the batch plan of epoch 0 is empty")

    def batches(self, epoch):
        """list of list of int, the batches of ``epoch`` (the last two epochs asked for are kept)."""
        if epoch not in self._cached:
            batches = [[int(i) for i in b] for b in self._plan(epoch)]
            if epoch and len(batches) != self.steps_per_epoch:
                raise SpeechkitError(f"epoch {epoch} plans {len(batches)} batches, epoch 0 planned "
                                     f"{self.steps_per_epoch}: every epoch needs the same number")
            self._cached = {e: v for e, v in self._cached.items() if e == epoch - 1}
            self._cached[epoch] = batches
        return self._cached[epoch]

    def positions(self, epoch=0, batch=0):
        """Yield ``(epoch, batch, indices)`` from position ``(epoch, batch)`` to the end of the run."""
        for e in range(epoch, self.epochs):
            for b, indices in enumerate(self.batches(e)):
                if e > epoch or b >= batch:
                    yield e, b, indices

    def index_dataset(self, epoch=0, batch=0):
        """``tf.data.Dataset`` of int32 [b] index vectors, one per batch, from ``(epoch, batch)`` on.

        The stream is computed lazily, one epoch at a time, so memory does not grow with the
        number of epochs; each new iterator starts again at ``(epoch, batch)``.
        """
        plan = EpochPlan(self._plan, epochs=self.epochs)

        def generate():
            for _, _, indices in plan.positions(epoch, batch):
                yield np.asarray(indices, np.int32)

        return tf.data.Dataset.from_generator(generate, output_signature=tf.TensorSpec([None], tf.int32))

    def sequence(self, epoch=0, batch=0):
        """The batches from ``(epoch, batch)`` to the end of the run as a lazy read-only sequence.

        ``len()`` and indexing (position 0 is batch ``batch`` of ``epoch``) compute plans on demand,
        for a pipeline that reads the batches by position (``speechkit.data.pipeline.asr_dataset``).
        """
        return _Remaining(EpochPlan(self._plan, epochs=self.epochs), epoch, batch)

    def __len__(self):
        return self.epochs * self.steps_per_epoch


class _Remaining(collections.abc.Sequence):
    """``EpochPlan.sequence``: positions counted from ``(epoch, batch)``."""

    def __init__(self, plan, epoch, batch):
        self.plan = plan
        self.start = epoch * plan.steps_per_epoch + batch
        self.total = max(0, len(plan) - self.start)

    def __len__(self):
        return self.total

    def __getitem__(self, position):
        if isinstance(position, slice):
            return [self[i] for i in range(*position.indices(self.total))]
        if position < 0:
            position += self.total
        if not 0 <= position < self.total:
            raise IndexError(f"batch position {position} outside the {self.total} remaining batches")
        epoch, batch = divmod(self.start + position, self.plan.steps_per_epoch)
        return self.plan.batches(epoch)[batch]
