"""Train a WaveNet vocoder through the shared training loop (``speechkit.training.fit_run``).

The run directory has the layout every family shares (``speechkit.runs.RunDir``): ``config.yaml``
(front end included), ``command.txt``, ``speakers.json`` (speaker names in embedding order),
``skipped.json``, ``model.keras`` (the latest model, rewritten atomically after every epoch),
``backup/`` (resumable checkpoints), ``batches.jsonl``, ``train_log.csv``, ``tensorboard/`` (with
generated audio clips under ``tensorboard/samples``), ``train_summary.json`` and ``DONE``.

Batches are a pure function of ``(seed, step)``, so a run resumed from a checkpoint in the middle
of an epoch reaches the same weights as one that was never interrupted
(``tests/test_wavenet_train.py``).
"""

import logging
import os
import time

import keras
import tensorflow as tf

from speechkit.errors import ConfigError, RunError, SpeechkitError
from speechkit.runs import RunDir
from speechkit.training import TrainState, copy_weights, fit_run, make_optimizer
from speechkit.vocoder.data import WindowSampler, corpus_from_dir, corpus_from_manifest, history_frames, window_dataset
from speechkit.vocoder.generation import Vocoder, load_vocoder
from speechkit.vocoder.wavenet import WaveNet

__all__ = ["build_model", "train_vocoder"]

logger = logging.getLogger(__name__)

def build_model(config, *, seed=None):
    """A built, compiled WaveNet for ``config`` (VocoderConfig), its optimizer built so checkpoints load."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = WaveNet(config.model, config.frontend, name="wavenet")
    model.build()
    model.compile(
        optimizer=make_optimizer(config.train.optimizer),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.train.jit_compile,
    )
    model.optimizer.build(model.trainable_variables)
    return model


class _AudioSamples(keras.callbacks.Callback):
    """Every ``every`` epochs, log a short generated clip (copy synthesis, or free-running) to TensorBoard."""

    def __init__(self, log_dir, *, every, reference, sample_rate, speaker=None):
        super().__init__()
        self.every = every
        self.reference = reference
        self.sample_rate = sample_rate
        self.speaker = speaker
        self.log_dir = log_dir
        self.writer = None
        self.logged_reference = False

    def on_epoch_end(self, epoch, logs=None):
        if not self.every or (epoch + 1) % self.every:
            return
        started = time.monotonic()
        vocoder = Vocoder(self.model)
        speaker = None if self.model.speaker_embedding is None else self.speaker
        if self.model.upsampler is not None:
            clip = vocoder.vocode([self.reference], seed=epoch, speaker=speaker)[0]
        else:
            clip = vocoder.generate(len(self.reference), seed=epoch, speaker=speaker)[0]
        if self.writer is None:
            self.writer = tf.summary.create_file_writer(self.log_dir)
        with self.writer.as_default():
            if not self.logged_reference:
                tf.summary.audio("reference", self.reference[None, :, None], self.sample_rate, step=0)
                self.logged_reference = True
            tf.summary.audio("generated", clip[None, :, None], self.sample_rate, step=epoch + 1)
        self.writer.flush()
        logger.debug("logged a %.2f s clip in %.1f s", len(clip) / self.sample_rate, time.monotonic() - started)


def _warm_start(model, source):
    """Copy the weights of the vocoder run or released model ``source`` into the freshly built ``model``.

    Weights are matched by path. A weight the donor lacks must start at zero (the projection of a new
    input, such as ``pulse_input``'s), so that the model begins as the donor's function.

    Raises:
        RunError: ``source`` is not a loadable vocoder run or model.
        ConfigError: its front end or a weight's shape differs, or a weight it lacks does not start at zero.
    """
    donor = load_vocoder(source).model
    donor.frontend.check_matches(model.frontend, source=source)
    added = copy_weights(model.weights, donor.weights, source=source, section="WaveNet", new_at_zero=True)
    logger.info("started from the weights of %s%s", source, f"; new at zero: {', '.join(added)}" if added else "")


def train_vocoder(config, *, out_dir, manifest=None, audio_dir=None, time_budget_min=None, command=None,
                  verbose="auto", callbacks=(), init_from=None):
    """Train (or resume training) a WaveNet into ``out_dir``.

    Args:
        config: VocoderConfig.
        out_dir: str, the run folder (created; a run there is resumed exactly, and a finished one
            is extended when ``config.train.epochs`` grew). A resumed run may change
            ``config.train.optimizer``: the schedule is a function of the global step, so a campaign
            anneals its learning rate from the step it resumes at, with the optimiser's moments kept.
        manifest: str, a JSONL manifest of training audio (speakers from its ``speaker`` field).
        audio_dir: str, alternatively a folder of wav/flac/ogg files (speaker = first sub-folder).
        time_budget_min: float or None, stop cleanly after this many minutes of this invocation.
        command: str or None, the command line to record (default: ``sys.argv``).
        verbose: Keras ``fit`` verbosity (progress bar by default).
        callbacks: extra Keras callbacks, run after the built-in ones.
        init_from: optional str, a vocoder run or released model whose weights a new run starts from
            (``_warm_start``); the optimizer starts afresh. A resumed run ignores it.

    Returns:
        dict, the summary also written to ``train_summary.json`` and ``DONE``.

    Raises:
        RunError: the run folder holds another config or speaker list.
        SpeechkitError: the data is unusable, or it has more speakers than ``model.num_speakers``.
    """
    started = time.monotonic()
    if (manifest is None) == (audio_dir is None):
        raise ConfigError("give exactly one of a training manifest or an audio folder")
    run = RunDir(out_dir, create=True)
    run.save_config(config, mutable=("train.epochs", "train.optimizer", "train.start_share", "train.onset_weight",
                                   "train.onset_samples", "model.mel_postfilter"))
    run.append_command(command)
    run.clear_done()
    tc = config.train
    window = tc.window_frames * config.frontend.hop_length
    sr = config.frontend.sample_rate
    if manifest is not None:
        corpus = corpus_from_manifest(manifest, sample_rate=sr, min_samples=window)
    else:
        corpus = corpus_from_dir(audio_dir, sample_rate=sr, min_samples=window)
    corpus.skipped.write(run.file(run.SKIPPED))
    if config.model.num_speakers:
        if len(corpus.speaker_names) > config.model.num_speakers:
            raise SpeechkitError(f"{manifest or audio_dir}: {len(corpus.speaker_names)} speakers, but "
                                 f"model.num_speakers={config.model.num_speakers}")
        if run.exists(run.SPEAKERS) and run.speakers() != list(corpus.speaker_names):
            raise RunError(f"{run.file(run.SPEAKERS)}: this run was trained on other speakers; use a new run folder")
        run.save_speakers(corpus.speaker_names)

    model = build_model(config, seed=tc.seed)
    rf = model.receptive_field()
    logger.info("WaveNet: %d parameters, %d layers, receptive field %d samples (%.1f ms), %d MACs/sample",
                model.count_params(), config.model.num_layers, rf.samples, rf.ms, config.model.macs_per_sample)
    state = TrainState.load(run.backup_dir) or TrainState()
    if init_from is not None and state.weights is None:
        _warm_start(model, init_from)
        state.warm_start = os.path.abspath(init_from) if os.path.isdir(init_from) else str(init_from)
    history = history_frames(rf.samples, config.frontend.hop_length) if tc.full_history else 0
    sampler = WindowSampler(corpus, frontend=config.frontend, window_frames=tc.window_frames,
                            context=config.model.cond_context, batch_size=tc.batch_size, seed=tc.seed, history=history,
                            lpc_order=config.model.lpc_order,
                            lpc_normalize=config.model.lpc_normalize, start_share=tc.start_share,
                            pulses=config.model.pulse_input)
    steps = tc.steps_per_epoch
    batch_seconds = tc.batch_size * window / sr
    reference_len = min(int(tc.sample_seconds * sr), len(corpus.audios[0]))
    samples = _AudioSamples(os.path.join(run.tensorboard_dir, "samples"), every=tc.sample_every, sample_rate=sr,
                            reference=corpus.audio(0)[:reference_len], speaker=0)
    summary = fit_run(
        model, run=run, state=state,
        dataset_at=lambda epoch, batch: window_dataset(sampler, model_config=config.model,
                                                       start_step=epoch * steps + batch,
                                                       onset_weight=tc.onset_weight, onset_samples=tc.onset_samples),
        steps_per_epoch=steps, epochs=tc.epochs, describe=lambda epoch, batch: ((), batch_seconds),
        save_model=lambda: run.save_model(model), checkpoint_every=tc.checkpoint_every, log_every=tc.log_every,
        time_budget_s=None if time_budget_min is None else 60.0 * time_budget_min, started=started,
        callbacks=[samples, *callbacks], verbose=verbose)
    summary.pop("best")
    summary.update(
        samples_per_second=summary["audio_seconds_trained"] * sr / summary["train_seconds"]
        if summary["train_seconds"] else None,
        train_samples=corpus.total_samples,
        train_utterances=len(corpus.audios),
        receptive_field_samples=rf.samples,
        receptive_field_ms=rf.ms,
    )
    run.mark_done(summary)
    logger.info("training finished: %s", summary)
    return summary
