"""``fit_run``: the one training loop of every model family, a single Keras ``fit`` over the whole run.

A family builds and compiles its model, says how to read batches from any position of its plan,
how to describe a batch, and (optionally) how to score the model on dev data; ``fit_run`` does the
rest the same way for all of them, in the run directory's one layout (``speechkit.runs.RunDir``):

- ``backup/``: resumable checkpoints (``Checkpoint``) and ``state.json`` (``TrainState``);
- ``batches.jsonl``: one line per step (``Progress``);
- ``train_log.csv`` (Keras ``CSVLogger``) and ``tensorboard/`` (Keras ``TensorBoard``): one row and
  one point per epoch, with the dev figures, the step and the learning rate;
- ``model.keras``: the best model on dev (``DevMetric``), else the latest one (``SaveModel``).

A Keras epoch is one planned epoch (``steps_per_epoch`` batches of a stream that runs to the end
of the run), so a fresh run, or one resumed at an epoch boundary, is ONE ``fit`` call. A run
resumed in the middle of an epoch first finishes that epoch (a ``fit`` of the remaining
batches, the same callbacks and epoch number), then continues with one ``fit`` for the rest:
Keras epochs have one length per ``fit`` call, and the exact position is worth the second call.
"""

import logging
import time

import keras
import tensorflow as tf

from speechkit.training.callbacks import Checkpoint, DevMetric, Progress, SaveModel, TimeBudget

__all__ = ["fit_run"]

logger = logging.getLogger(__name__)


def fit_run(model, *, run, state, dataset_at, steps_per_epoch, epochs, describe, save_model, checkpoint_every,
            log_every, metric=None, time_budget_s=None, started=None, strategy=None, home=None,
            keep_checkpoints=1, callbacks=(), verbose="auto"):
    """Train ``model`` from ``state``'s position to the end of epoch ``epochs - 1`` (or the time budget).

    Args:
        model: a compiled, built ``keras.Model`` whose optimizer is built (so checkpoints load).
        run: ``speechkit.runs.RunDir``, where this process writes.
        state: ``TrainState``, the position to start from (a fresh one starts at the beginning);
            updated in place.
        dataset_at: callable ``(epoch, batch) -> tf.data.Dataset`` of the batches from that
            position to the end of the run, in ``fit`` form.
        steps_per_epoch: int > 0, batches per planned epoch.
        epochs: int, the run's total epochs.
        describe: callable ``(epoch, batch) -> (ids, audio_seconds)`` of a planned batch.
        save_model: callable ``() -> str``, saves the model file (``model.keras``) and returns its path.
        checkpoint_every: int > 0, optimizer steps between checkpoints.
        log_every: int > 0, steps between TensorBoard points of the per-step loss.
        metric: optional ``(name, evaluate)``: ``evaluate() -> (value, extra logs)`` at each epoch
            end, lower is better; the best model is the one saved.
        time_budget_s: optional float, seconds from ``started`` after which training stops cleanly.
        started: optional ``time.monotonic()`` value the budget counts from (default: now).
        strategy: the ``tf.distribute`` strategy the model was built under (default: the current one).
        home: optional ``RunDir`` whose ``backup/`` holds ``state.weights`` (default: ``run``; the
            other workers of a multi-worker run write to scratch and read the chief's checkpoint).
        keep_checkpoints: int > 0, weight files kept in ``backup/``.
        callbacks: extra Keras callbacks, run after the built-in ones.
        verbose: Keras ``fit`` verbosity.

    Returns:
        dict: ``stopped`` (``"epochs"`` or ``"time_budget"``), ``step``, ``epochs_done``, ``best``
        (the best dev value or None), ``audio_seconds_trained``, ``train_seconds``,
        ``train_cpu_seconds``, ``throughput_audio_s_per_s``, ``audio_s_per_cpu_s``,
        ``wall_seconds_this_call``, ``nonfinite_steps``, ``parameters`` and ``final`` (the last
        epoch's logs).
    """
    started = time.monotonic() if started is None else started
    strategy = strategy or tf.distribute.get_strategy()
    run.remove_partial_files()
    Progress.truncate(run.path, state)
    checkpoint = Checkpoint(run.backup_dir, state=state, every=checkpoint_every, keep=keep_checkpoints)
    checkpoint.set_model(model)
    home = home or run
    if state.weights:
        with strategy.scope():
            checkpoint.restore(model, home.backup_dir)
        logger.info("resuming %s at step %d (epoch %d, batch %d)", home.path, state.step, state.epoch, state.batch)
    progress = Progress(run.path, state=state, steps_per_epoch=steps_per_epoch, describe=describe)
    dev = None
    if metric is not None:
        name, evaluate = metric
        dev = DevMetric(name, evaluate, save_best=save_model, state=state)
    budget = TimeBudget(None if time_budget_s is None else started + time_budget_s, progress=progress,
                        strategy=strategy, reserve=lambda: dev.seconds * 1.2 if dev is not None else 0.0)
    history = keras.callbacks.History()
    all_callbacks = [dev or SaveModel(save_model), progress, checkpoint,
                     keras.callbacks.CSVLogger(run.file(run.TRAIN_LOG), append=True),
                     keras.callbacks.TensorBoard(run.tensorboard_dir, update_freq=log_every, write_graph=False),
                     budget, history, *callbacks]
    common = dict(callbacks=all_callbacks, verbose=verbose, shuffle=False)
    if state.epoch < epochs and state.batch > 0:
        model.fit(dataset_at(state.epoch, state.batch), initial_epoch=state.epoch, epochs=state.epoch + 1,
                  steps_per_epoch=steps_per_epoch - state.batch, **common)
    if state.epoch < epochs and not budget.stopped and state.batch == 0:
        model.fit(dataset_at(state.epoch, 0), initial_epoch=state.epoch, epochs=epochs,
                  steps_per_epoch=steps_per_epoch, **common)
    if dev is None:
        save_model()
    checkpoint.save()
    final = {key: float(values[-1]) for key, values in history.history.items() if values}
    return {
        "stopped": "time_budget" if budget.stopped else "epochs",
        "step": state.step,
        "epochs_done": state.epoch + state.batch / steps_per_epoch,
        "best": state.best,
        "audio_seconds_trained": state.audio_seconds,
        "train_seconds": state.train_seconds,
        "train_cpu_seconds": state.train_cpu_seconds,
        "throughput_audio_s_per_s": state.audio_seconds / state.train_seconds if state.train_seconds else None,
        "audio_s_per_cpu_s": state.audio_seconds / state.train_cpu_seconds if state.train_cpu_seconds else None,
        "wall_seconds_this_call": time.monotonic() - started,
        "nonfinite_steps": state.nonfinite_steps,
        "parameters": int(model.count_params()),
        "final": final,
    }
