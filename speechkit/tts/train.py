"""Train a TTS acoustic model through the shared training loop (``speechkit.training.fit_run``).

The run directory has the layout every family shares (``speechkit.runs.RunDir``): ``config.yaml``
(front end included), ``command.txt``, ``skipped.json``, ``model.keras`` (the latest model,
rewritten atomically after every epoch), ``backup/`` (resumable checkpoints), ``batches.jsonl``,
``train_log.csv``, ``tensorboard/``, ``train_summary.json`` and ``DONE``. Batches are a pure
function of ``(seed, epoch)`` (``speechkit.tts.data.plan_epoch``), so a resumed run continues
exactly where it stopped.
"""

import logging
import time

import keras
import numpy as np

from speechkit.runs import RunDir
from speechkit.training import EpochPlan, TrainState, fit_run, make_optimizer
from speechkit.tts.data import load_tts_corpus, plan_epoch, tts_dataset
from speechkit.tts.model import AcousticModel

__all__ = ["build_model", "train_tts"]

logger = logging.getLogger(__name__)


def build_model(config, *, seed=None):
    """A built, compiled AcousticModel for ``config`` (TTSConfig), its optimizer built so checkpoints load."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = AcousticModel(config.model, n_mels=config.frontend.n_mels, duration_weight=config.train.duration_weight,
                          name="acoustic_model")
    model.build()
    model.compile(optimizer=make_optimizer(config.train.optimizer), jit_compile=config.train.jit_compile)
    model.optimizer.build(model.trainable_variables)
    return model


def train_tts(config, *, out_dir, manifest, durations, time_budget_min=None, command=None, verbose="auto",
              callbacks=()):
    """Train (or resume training) a TTS acoustic model into ``out_dir``.

    Args:
        config: TTSConfig.
        out_dir: str, the run folder (created; a run there is resumed exactly, and a finished one is
            extended when ``config.train.epochs`` grew).
        manifest: str, the training manifest (JSONL).
        durations: str, its durations file (``speechkit data durations``).
        time_budget_min: float or None, stop cleanly after this many minutes of this invocation.
        command: str or None, the command line to record (default: ``sys.argv``).
        verbose: Keras ``fit`` verbosity.
        callbacks: extra Keras callbacks, run after the built-in ones.

    Returns:
        dict, the summary also written to ``train_summary.json`` and ``DONE``.

    Raises:
        RunError: the run folder holds another config.
        SpeechkitError: no usable training utterance, or fewer than one batch.
    """
    started = time.monotonic()
    run = RunDir(out_dir, create=True)
    run.save_config(config, mutable=("train.epochs",))
    run.append_command(command)
    run.clear_done()
    tc = config.train
    corpus = load_tts_corpus(manifest, durations, frontend=config.frontend, characters=config.model.characters,
                             max_seconds=tc.max_seconds, max_characters=config.model.max_characters,
                             progress=verbose == "auto")
    corpus.skipped.write(run.file(run.SKIPPED))
    frames = [len(m) for m in corpus.mels]
    plan = EpochPlan(lambda epoch: plan_epoch(frames, batch_size=tc.batch_size, seed=tc.seed, epoch=epoch),
                     epochs=tc.epochs)
    model = build_model(config, seed=tc.seed)
    logger.info("acoustic model: %d parameters; %d utterances, %d batches per epoch", model.count_params(),
                len(corpus), plan.steps_per_epoch)
    state = TrainState.load(run.backup_dir) or TrainState()

    def describe(epoch, batch):
        indices = plan.batches(epoch)[batch]
        return [corpus.ids[i] for i in indices], float(np.sum(corpus.seconds[indices]))

    summary = fit_run(
        model, run=run, state=state, dataset_at=lambda epoch, batch: tts_dataset(corpus, plan, epoch, batch),
        steps_per_epoch=plan.steps_per_epoch, epochs=tc.epochs, describe=describe,
        save_model=lambda: run.save_model(model), checkpoint_every=tc.checkpoint_every, log_every=tc.log_every,
        time_budget_s=None if time_budget_min is None else 60.0 * time_budget_min, started=started,
        callbacks=list(callbacks), verbose=verbose)
    summary.pop("best")
    summary.update(train_utterances=len(corpus), train_hours=round(float(corpus.seconds.sum()) / 3600, 4),
                   skipped=corpus.skipped.counts)
    run.mark_done(summary)
    logger.info("training finished: %s", summary)
    return summary
