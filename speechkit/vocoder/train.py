"""Train a WaveNet vocoder with ``model.fit``: progress bar, TensorBoard (with audio), exact resume.

Run folder layout (``RUN/``):

- ``config.yaml``, ``frontend.yaml``, ``command.txt``: what was run; a resumed run must match.
- ``speakers.json``: speaker names in embedding order; ``skipped.json``: files left out and why.
- ``model.keras``: the latest model (rewritten atomically after every epoch).
- ``backup/``: ``BackupAndRestore`` state (weights, optimizer, epoch) while training is unfinished.
- ``logs/``: TensorBoard scalars and generated audio clips; ``history.csv``: one row per epoch.
- ``DONE``: JSON summary, written when training ends normally (all epochs, or the time budget).

Batches are a pure function of ``(seed, step)`` and the data stream is restarted at
``initial_epoch * steps_per_epoch`` on resume, so an interrupted run that resumes reaches the same
weights as one that was never interrupted (``tests/test_wavenet_train.py``).
"""

import dataclasses
import json
import logging
import os
import shutil
import time

import keras
import tensorflow as tf
import yaml

from speechkit.config import atomic_write_text, from_dict, load_yaml, save_yaml, to_dict
from speechkit.errors import ConfigError, SpeechkitError
from speechkit.frontend import FrontendConfig
from speechkit.vocoder.data import WindowSampler, corpus_from_dir, corpus_from_manifest, window_dataset
from speechkit.vocoder.generation import Vocoder
from speechkit.vocoder.wavenet import WaveNet, WaveNetConfig

__all__ = ["VocoderTrainConfig", "VocoderConfig", "load_vocoder_config", "build_model", "train_vocoder"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class VocoderTrainConfig:
    """Training hyper-parameters.

    Args:
        batch_size: int > 0, windows per step.
        window_frames: int > 0, window length in mel frames (``window_frames * hop`` samples).
        learning_rate: float > 0, Adam.
        clip_norm: float > 0, global gradient-norm clipping.
        epochs: int > 0.
        steps_per_epoch: int > 0; an epoch is the unit of checkpointing and resuming.
        seed: int, weight initialisation and window sampling.
        sample_every: int >= 0, log a generated clip to TensorBoard every this many epochs (0 = never).
        sample_seconds: float > 0, length of that clip.
        jit_compile: bool, compile the training step with XLA (about 1.5x faster on CPU).
    """

    batch_size: int = 8
    window_frames: int = 40
    learning_rate: float = 1e-3
    clip_norm: float = 1.0
    epochs: int = 100
    steps_per_epoch: int = 100
    seed: int = 0
    sample_every: int = 5
    sample_seconds: float = 0.5
    jit_compile: bool = True

    def __post_init__(self):
        for name in ("batch_size", "window_frames", "epochs", "steps_per_epoch"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be a positive int, received: {getattr(self, name)!r}")
        if self.learning_rate <= 0 or self.clip_norm <= 0 or self.sample_seconds <= 0:
            raise ConfigError("train.learning_rate, train.clip_norm and train.sample_seconds must be > 0")
        if self.sample_every < 0:
            raise ConfigError(f"train.sample_every must be >= 0, received: {self.sample_every}")


@dataclasses.dataclass(frozen=True)
class VocoderConfig:
    """A vocoder preset: the front end, the model and its training (``models/wavenet-*.yaml``)."""

    frontend: FrontendConfig = dataclasses.field(
        default_factory=lambda: FrontendConfig(kind="mel", normalize=False))
    model: WaveNetConfig = dataclasses.field(default_factory=WaveNetConfig)
    train: VocoderTrainConfig = dataclasses.field(default_factory=VocoderTrainConfig)

    def __post_init__(self):
        self.model.check_frontend(self.frontend)

    @classmethod
    def from_dict(cls, data, *, source=None):
        return from_dict(cls, data, source=source)

    def to_dict(self):
        return to_dict(self)


def load_vocoder_config(path):
    """Read and validate a vocoder preset YAML; errors name the file."""
    return VocoderConfig.from_dict(load_yaml(path), source=path)


def build_model(config, *, seed=None):
    """A built, compiled WaveNet for ``config`` (VocoderConfig)."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = WaveNet(config.model, config.frontend, name="wavenet")
    model.build()
    model.compile(
        optimizer=keras.optimizers.Adam(config.train.learning_rate, global_clipnorm=config.train.clip_norm),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.train.jit_compile,
    )
    return model


class _SaveModel(keras.callbacks.Callback):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        _save_model_atomic(self.model, self.path)


def _save_model_atomic(model, path):
    tmp = f"{path[:-len('.keras')]}.tmp.{os.getpid()}.keras"
    model.save(tmp)
    os.replace(tmp, path)


class _TimeBudget(keras.callbacks.Callback):
    """Stop at the first batch end after ``seconds`` of wall-clock time in this invocation."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.start = None
        self.stopped = False

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if self.seconds is not None and time.monotonic() - self.start > self.seconds:
            if not self.stopped:
                logger.info("time budget of %.1f min reached; stopping", self.seconds / 60)
            self.stopped = True
            self.model.stop_training = True


class _AudioSamples(keras.callbacks.Callback):
    """Every ``every`` epochs, log a short generated clip (copy synthesis, or free-running) to TensorBoard."""

    def __init__(self, log_dir, *, every, reference, sample_rate, frontend, speaker=None):
        super().__init__()
        self.every = every
        self.reference = reference
        self.sample_rate = sample_rate
        self.frontend = frontend
        self.speaker = speaker
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "samples"))
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
        with self.writer.as_default():
            if not self.logged_reference:
                tf.summary.audio("reference", self.reference[None, :, None], self.sample_rate, step=0)
                self.logged_reference = True
            tf.summary.audio("generated", clip[None, :, None], self.sample_rate, step=epoch + 1)
        self.writer.flush()
        logger.debug("logged a %.2f s clip in %.1f s", len(clip) / self.sample_rate, time.monotonic() - started)


def _check_or_write(path, text, what):
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            if f.read() != text:
                raise SpeechkitError(f"{path}: this run folder holds a different {what}; use a new --out folder "
                                     "or the same settings to resume")
    else:
        atomic_write_text(path, text)


def _initial_epoch(backup_dir):
    path = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.isfile(path):
        return 0
    with open(path, encoding="utf-8") as f:
        return int(json.load(f)["epoch"])


def train_vocoder(config, *, out_dir, manifest=None, audio_dir=None, time_budget_min=None, command=None,
                  verbose="auto", callbacks=()):
    """Train (or resume training) a WaveNet into ``out_dir``.

    Args:
        config: VocoderConfig.
        out_dir: str, the run folder (created; an unfinished run there is resumed).
        manifest: str, a JSONL manifest of training audio (speakers from its ``speaker`` field).
        audio_dir: str, alternatively a folder of wav/flac/ogg files (speaker = first sub-folder).
        time_budget_min: float or None, stop after this many minutes of this invocation.
        command: str or None, the command line to record.
        verbose: Keras ``fit`` verbosity (progress bar by default).
        callbacks: extra Keras callbacks, run after the built-in ones.

    Returns:
        dict, the summary also written to ``RUN/DONE``.

    Raises:
        SpeechkitError: ``RUN/DONE`` exists already, the run folder holds another config, the data
            is unusable, or it has more speakers than ``model.num_speakers``.
    """
    if (manifest is None) == (audio_dir is None):
        raise ConfigError("give exactly one of a training manifest or an audio folder")
    os.makedirs(out_dir, exist_ok=True)
    done_path = os.path.join(out_dir, "DONE")
    if os.path.exists(done_path):
        raise SpeechkitError(f"{done_path} exists: this run is finished; choose a new --out folder")
    _check_or_write(os.path.join(out_dir, "config.yaml"), yaml.safe_dump(config.to_dict(), sort_keys=False),
                    "config")
    save_yaml(os.path.join(out_dir, "frontend.yaml"), config.frontend)
    if command:
        atomic_write_text(os.path.join(out_dir, "command.txt"), command + "\n")
    tc = config.train
    hop = config.frontend.hop_length
    window = tc.window_frames * hop
    sr = config.frontend.sample_rate
    if manifest is not None:
        corpus = corpus_from_manifest(manifest, sample_rate=sr, min_samples=window)
    else:
        corpus = corpus_from_dir(audio_dir, sample_rate=sr, min_samples=window)
    corpus.skipped.write(os.path.join(out_dir, "skipped.json"))
    if config.model.num_speakers:
        if len(corpus.speaker_names) > config.model.num_speakers:
            raise SpeechkitError(f"{manifest or audio_dir}: {len(corpus.speaker_names)} speakers, but "
                                 f"model.num_speakers={config.model.num_speakers}")
        _check_or_write(os.path.join(out_dir, "speakers.json"), json.dumps(corpus.speaker_names, indent=1) + "\n",
                        "speaker list")

    model = build_model(config, seed=tc.seed)
    rf = model.receptive_field()
    logger.info("WaveNet: %d parameters, %d layers, receptive field %d samples (%.1f ms), %d MACs/sample",
                model.count_params(), config.model.num_layers, rf.samples, rf.ms, config.model.macs_per_sample)
    backup_dir = os.path.join(out_dir, "backup")
    initial_epoch = _initial_epoch(backup_dir)
    if initial_epoch:
        logger.info("resuming from epoch %d (%s)", initial_epoch, backup_dir)
    sampler = WindowSampler(corpus, frontend=config.frontend, window_frames=tc.window_frames,
                            context=config.model.cond_context, batch_size=tc.batch_size, seed=tc.seed)
    dataset = window_dataset(sampler, model_config=config.model, start_step=initial_epoch * tc.steps_per_epoch)
    budget = _TimeBudget(None if time_budget_min is None else 60.0 * time_budget_min)
    reference_len = min(int(tc.sample_seconds * sr), len(corpus.audios[0]))
    all_callbacks = [
        keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False),
        _SaveModel(os.path.join(out_dir, "model.keras")),
        keras.callbacks.CSVLogger(os.path.join(out_dir, "history.csv"), append=True),
        keras.callbacks.TensorBoard(os.path.join(out_dir, "logs"), write_graph=False),
        _AudioSamples(os.path.join(out_dir, "logs"), every=tc.sample_every, sample_rate=sr,
                      reference=corpus.audio(0)[:reference_len], frontend=config.frontend, speaker=0),
        budget,
        *callbacks,
    ]
    started = time.monotonic()
    history = model.fit(dataset, epochs=tc.epochs, steps_per_epoch=tc.steps_per_epoch, callbacks=all_callbacks,
                        verbose=verbose)
    elapsed = time.monotonic() - started
    _save_model_atomic(model, os.path.join(out_dir, "model.keras"))
    shutil.rmtree(backup_dir, ignore_errors=True)
    last = {k: float(v[-1]) for k, v in history.history.items() if v}
    summary = {
        "optimizer_steps": int(model.optimizer.iterations.numpy()),
        "epochs": (int(model.optimizer.iterations.numpy()) / tc.steps_per_epoch),
        "stopped_by_time_budget": budget.stopped,
        "elapsed_seconds_this_invocation": round(elapsed, 1),
        "final": last,
        "train_samples": corpus.total_samples,
        "train_utterances": len(corpus.audios),
        "parameters": int(model.count_params()),
        "receptive_field_samples": rf.samples,
        "receptive_field_ms": rf.ms,
    }
    atomic_write_text(done_path, json.dumps(summary, indent=2) + "\n")
    logger.info("training finished: %s", summary)
    return summary
