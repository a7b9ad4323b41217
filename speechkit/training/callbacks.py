"""Keras callbacks of the shared training loop: progress, exact-resume checkpoints, time budget, dev metric.

``fit_run`` puts them in this order, which matters at an epoch's end: ``DevMetric`` adds the dev
figures to the epoch's logs and saves the best model, ``Progress`` adds the step and learning
rate, ``Checkpoint`` saves, and Keras' own ``CSVLogger`` and ``TensorBoard`` then record the
complete logs; ``TimeBudget`` comes last and stops training when too little time is left.
"""

import glob
import json
import logging
import math
import os
import time

import keras

from speechkit.config import atomic_write_text
from speechkit.errors import SpeechkitError
from speechkit.runs import RunDir
from speechkit.training.distribute import any_worker

__all__ = ["MAX_CONSECUTIVE_NONFINITE", "Progress", "Checkpoint", "TimeBudget", "DevMetric", "SaveModel"]

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_NONFINITE = 20


class Progress(keras.callbacks.Callback):
    """Tracks the run's position and totals in a ``TrainState``, and logs every step to ``batches.jsonl``.

    ``fit`` only sees the batches it is given, so the position inside a planned epoch is kept
    here. Each step appends one line (epoch, batch, step, loss, non-finite flag, item ids) to
    ``batches.jsonl``, which lists exactly what the weights have seen once it is cut back to the
    checkpoint on resume (``truncate``). The loss is the step's own when the model logs
    ``batch_loss``, else Keras' running mean over the epoch so far.

    A model whose ``train_step`` reports ``nonfinite = 1`` (a skipped step) and ``batch_loss``
    (the step's own loss) gets them counted and logged; after ``MAX_CONSECUTIVE_NONFINITE`` such
    steps in a row training stops with an error naming the batch.

    Args:
        run_dir: str, where ``batches.jsonl`` is written.
        state: TrainState, updated in place.
        steps_per_epoch: int, batches per planned epoch.
        describe: callable ``(epoch, batch) -> (ids, audio_seconds)``: the item ids (list of str)
            and seconds of audio of a planned batch.
    """

    def __init__(self, run_dir, *, state, steps_per_epoch, describe):
        super().__init__()
        self.run_dir = run_dir
        self.state = state
        self.steps_per_epoch = steps_per_epoch
        self.describe = describe
        self.consecutive_nonfinite = 0
        self.path = os.path.join(run_dir, RunDir.BATCHES)
        self._log = None
        self._epoch, self._offset = state.epoch, state.batch

    @staticmethod
    def truncate(run_dir, state):
        """Keep the ``batches.jsonl`` lines of the steps ``state`` includes (a kill may leave more, or half a line)."""
        path = os.path.join(run_dir, RunDir.BATCHES)
        if not os.path.exists(path):
            return
        kept = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if (entry["epoch"], entry["batch"]) < state.position():
                    kept.append(line if line.endswith("\n") else line + "\n")
        atomic_write_text(path, "".join(kept))

    @property
    def step(self):
        return int(self.model.optimizer.iterations.numpy())

    def learning_rate(self):
        """float, the optimizer's current learning rate."""
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_train_begin(self, logs=None):
        self._log = open(self.path, "a", encoding="utf-8")

    def on_train_end(self, logs=None):
        if self._log is not None:
            self._log.close()
            self._log = None

    def on_epoch_begin(self, epoch, logs=None):
        self._offset = self.state.batch if epoch == self.state.epoch else 0
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._started = time.monotonic()
        self._cpu = time.process_time()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs if logs is not None else {}
        nonfinite = bool(int(logs.pop("nonfinite", 0)))
        batch_loss = float(logs.pop("batch_loss", logs.get("loss", math.nan)))
        self.state.train_seconds += time.monotonic() - self._started
        self.state.train_cpu_seconds += time.process_time() - self._cpu
        index = self._offset + batch
        ids, seconds = self.describe(self._epoch, index)
        step = self.step
        self._log.write(json.dumps({"epoch": self._epoch, "batch": index, "step": step,
                                    "loss": batch_loss if math.isfinite(batch_loss) else None,
                                    "nonfinite": nonfinite, "ids": list(ids)}) + "\n")
        self._log.flush()
        self.state.audio_seconds += float(seconds)
        self.state.epoch, self.state.batch, self.state.step = self._epoch, index + 1, step
        if nonfinite:
            self._skipped(index, ids)
        else:
            self.consecutive_nonfinite = 0

    def _skipped(self, index, ids):
        self.state.nonfinite_steps += 1
        self.consecutive_nonfinite += 1
        where = f"epoch {self._epoch}, batch {index} (utterances {', '.join(ids)})"
        logger.warning("non-finite loss or gradient, or impossible CTC alignment, at %s: step skipped, "
                       "weights unchanged", where)
        if self.consecutive_nonfinite >= MAX_CONSECUTIVE_NONFINITE:
            raise SpeechkitError(f"{self.run_dir}: {self.consecutive_nonfinite} steps in a row had a non-finite loss, "
                                 f"gradient or impossible alignment, the last at {where}; training diverged: lower "
                                 "the learning rate or check those utterances (the last checkpoint is intact)")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.pop("nonfinite", None)
            logs.pop("batch_loss", None)
            logs["step"] = self.step
            logs["learning_rate"] = self.learning_rate()
        if self.state.batch >= self.steps_per_epoch:
            self.state.epoch, self.state.batch = epoch + 1, 0


class Checkpoint(keras.callbacks.Callback):
    """Resumable checkpoints: weights with optimizer state, then the ``TrainState`` that names them.

    Every ``every`` optimizer steps, at each epoch end and when training ends, the model's
    weights (optimizer moments and step counter included) go to a temporary file that is renamed
    to ``ckpt-<step>.weights.h5``; only then is ``state.json`` rewritten, atomically, to name it,
    and the older weight files beyond the ``keep`` newest are deleted. A ``kill -9`` at any moment
    therefore leaves the last complete checkpoint.

    Args:
        backup_dir: str, the checkpoint directory (created).
        state: TrainState, the position to save with the weights.
        every: int > 0, optimizer steps between checkpoints.
        keep: int > 0, weight files kept.
    """

    def __init__(self, backup_dir, *, state, every, keep=1):
        super().__init__()
        self.backup_dir = backup_dir
        self.state = state
        self.every = every
        self.keep = keep
        self._saved_at = state.position()

    def restore(self, model, backup_dir=None):
        """Load the weights named by the state into ``model`` (built, with a built optimizer).

        Raises:
            SpeechkitError: the restored optimizer step differs from the state's.
        """
        path = os.path.join(backup_dir or self.backup_dir, self.state.weights)
        model.load_weights(path)
        restored = int(model.optimizer.iterations.numpy())
        if restored != self.state.step:
            raise SpeechkitError(f"{path}: optimizer step {restored} != state step {self.state.step}")

    def on_train_batch_end(self, batch, logs=None):
        if self.state.step % self.every == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.save()

    def on_train_end(self, logs=None):
        self.save()

    def save(self):
        """Write the weights, then the state naming them, then drop older weight files."""
        if self._saved_at == self.state.position() and self.state.weights:
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"ckpt-{self.state.step:08d}.weights.h5"
        tmp = os.path.join(self.backup_dir, f"tmp-{os.getpid()}.weights.h5")
        self.model.save_weights(tmp)
        os.replace(tmp, os.path.join(self.backup_dir, name))
        self.state.weights = name
        self.state.save(self.backup_dir)
        self._saved_at = self.state.position()
        files = sorted(glob.glob(os.path.join(self.backup_dir, "ckpt-*.weights.h5")), key=os.path.getmtime)
        for old in [f for f in files if os.path.basename(f) != name][:max(0, len(files) - self.keep)]:
            os.remove(old)
        logger.debug("checkpoint at step %d (epoch %d, batch %d)", self.state.step, self.state.epoch,
                     self.state.batch)


class TimeBudget(keras.callbacks.Callback):
    """Stops training cleanly before ``deadline`` (a ``time.monotonic`` time).

    Training stops at the first step after which the time left no longer covers the epoch-end
    work (``reserve()`` seconds, for example a dev evaluation) plus a margin, and at an epoch end
    when the next epoch cannot start. Under multi-worker training the workers agree on stopping
    through an all-reduce (``any_worker``) at every check, so they all stop after the same step.

    Args:
        deadline: float or None, ``time.monotonic()`` value; None never stops.
        progress: Progress, for the position in the epoch.
        strategy: the run's ``tf.distribute`` strategy.
        reserve: callable returning float seconds kept for the epoch-end work.
        margin: float seconds.
    """

    def __init__(self, deadline, *, progress, strategy, reserve=lambda: 0.0, margin=5.0):
        super().__init__()
        self.deadline = deadline
        self.progress = progress
        self.strategy = strategy
        self.reserve = reserve
        self.margin = margin
        self.stopped = False

    def out_of_time(self):
        """bool, whether this worker has too little time left."""
        if self.deadline is None:
            return False
        return time.monotonic() + self.reserve() + self.margin >= self.deadline

    def _stop(self):
        if any_worker(self.strategy, self.out_of_time()):
            if not self.stopped:
                logger.info("time budget reached at step %d: stopping", self.progress.state.step)
            self.stopped = True
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        if self.deadline is not None and self.progress.state.batch < self.progress.steps_per_epoch:
            self._stop()

    def on_epoch_end(self, epoch, logs=None):
        if self.deadline is not None and not self.stopped:
            self._stop()


class DevMetric(keras.callbacks.Callback):
    """A dev-set figure at every epoch end (a partial one too); the best model is saved.

    Args:
        name: str, the log key of the figure (for example ``"val_wer"``).
        evaluate: callable ``() -> (value, extra)``: the figure (float, lower is better unless
            ``higher_is_better``) and a dict of more log entries.
        save_best: callable ``() -> str`` that saves the model and returns where.
        state: TrainState; its ``best`` holds the best value of earlier invocations and is kept
            up to date, so the next checkpoint records it.
        higher_is_better: bool.
    """

    def __init__(self, name, evaluate, *, save_best, state, higher_is_better=False):
        super().__init__()
        self.name = name
        self.evaluate = evaluate
        self.save_best = save_best
        self.sign = -1.0 if higher_is_better else 1.0
        self.state = state
        self.seconds = 0.0

    @property
    def best(self):
        """float or None, the best value so far."""
        return self.state.best

    def on_epoch_end(self, epoch, logs=None):
        started = time.monotonic()
        value, extra = self.evaluate()
        self.seconds = time.monotonic() - started
        if logs is not None:
            logs[self.name] = value
            logs.update(extra)
        logger.info("%s %.4f (%.1f s)", self.name, value, self.seconds)
        if self.best is None or self.sign * value < self.sign * self.best:
            self.state.best = float(value)
            logger.info("new best %s %.4f: saved %s", self.name, value, self.save_best())


class SaveModel(keras.callbacks.Callback):
    """Saves the model at every epoch end (a partial one too), through ``save()``: runs without a dev metric."""

    def __init__(self, save):
        super().__init__()
        self.save = save

    def on_epoch_end(self, epoch, logs=None):
        self.save()
