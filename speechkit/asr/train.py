"""CTC training of Deep Speech 2 with Keras ``fit``, dev-WER model selection and exact resume.

A run directory holds everything needed to continue or to use the model:

- ``config.yaml`` (the resolved ``TrainConfig``), ``frontend.yaml``, ``vocabulary.json``, ``command.txt``;
- ``train_log.csv`` (one row per epoch or partial epoch), ``tensorboard/`` (loss, dev WER, learning rate);
- ``model.keras``, the network with the best dev WER so far;
- ``backup/``: the latest training state, written every ``checkpoint_every`` steps;
- ``train_skipped.json`` (utterances left out and why) and ``DONE`` once training ends normally;
- ``batches.jsonl``: one line per step (epoch, batch, step, the step's loss, non-finite flag,
  utterance ids), cut back to the checkpoint on resume, so it lists exactly what the weights have seen.

Resuming is exact. Keras' ``BackupAndRestore`` restores the epoch but restarts it from its first
batch, so here the state records the epoch AND the number of batches done in it; the batch plan
of an epoch is a pure function of ``(seed, epoch)`` (``plan_batches``), so a resumed run feeds
``plan[done:]`` and sees exactly the batches an uninterrupted run would have seen. The weights
file carries the optimizer state (moments and iteration counter), and a state file is only
written, atomically, after its weights file is complete, so a ``kill -9`` at any moment leaves the
last complete checkpoint.

A step whose loss or gradients are NaN or infinite changes nothing: neither the weights, nor the
optimizer state and step counter, nor the batch-norm statistics. It is counted
(``nonfinite_steps``), logged with the batch's utterance ids, and after
``_MAX_CONSECUTIVE_NONFINITE`` such steps in a row training stops with an error naming the batch.

Distributed training: ``strategy="mirrored"`` replicates over the local GPUs (or the logical CPU
devices when there is none); ``"multi-worker"`` runs ``MultiWorkerMirroredStrategy`` across the
hosts of ``TF_CONFIG``. Every replica takes a slice of each planned batch and the loss is the sum
over the global batch divided by its size, so a global batch gives the same gradient on any number
of replicas (up to batch-norm statistics, which are per replica). The chief writes the run
directory; other workers read the checkpoint from it and write to a temporary directory.
"""

import atexit
import dataclasses
import glob
import hashlib
import json
import logging
import math
import os
import re
import shlex
import shutil
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from speechkit.asr.decoding import greedy_decode
from speechkit.asr.ctc import CTCTrainer, ctc_min_frames, multi_worker
from speechkit.asr.deepspeech2 import DeepSpeech2Config, build_deepspeech2, output_lengths
from speechkit.config import atomic_write_text, from_dict, load_yaml, save_yaml, to_dict
from speechkit.data.manifest import SkipReport, read_manifest
from speechkit.data.pipeline import asr_dataset, frame_counts, plan_batches
from speechkit.errors import ConfigError, SpeechkitError, TextError
from speechkit.frontend import FrontendConfig
from speechkit.metrics import cer, wer
from speechkit.text import Vocabulary

__all__ = ["OptimizerConfig", "TrainConfig", "load_train_config", "WarmupDecay", "select_utterances",
           "train"]

logger = logging.getLogger(__name__)

_SCHEDULES = ("constant", "exponential", "cosine", "inverse_sqrt")
_BACKUP = "backup"
_STATE = "state.json"
_BATCH_LOG = "batches.jsonl"
_STRATEGIES = ("default", "mirrored", "multi-worker")
_MAX_CONSECUTIVE_NONFINITE = 20


# -- Configuration -- #

@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Optimiser and learning-rate schedule: linear warm-up to ``learning_rate``, then decay.

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
        if self.schedule not in _SCHEDULES:
            raise ConfigError(f"schedule must be one of {_SCHEDULES}, received: {self.schedule!r}")
        if self.learning_rate <= 0 or self.warmup_steps < 0 or self.decay_steps <= 0:
            raise ConfigError("need learning_rate > 0, warmup_steps >= 0 and decay_steps > 0")
        if not 0 < self.decay_rate <= 1 or not 0 <= self.min_learning_rate <= self.learning_rate:
            raise ConfigError("need 0 < decay_rate <= 1 and 0 <= min_learning_rate <= learning_rate")
        if self.clipnorm is not None and self.clipnorm <= 0:
            raise ConfigError(f"clipnorm must be > 0 or null, received: {self.clipnorm}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, received: {self.weight_decay}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A Deep Speech 2 preset: front end, network, optimiser and training loop.

    Args:
        frontend: FrontendConfig, the features the model is trained on (checked again at load time).
        model: DeepSpeech2Config.
        optimizer: OptimizerConfig.
        batch_size: int > 0, utterances per step.
        epochs: int > 0, passes over the training set.
        sortagrad: bool, sort the first epoch by duration (Amodei et al., 2016, §3.1).
        seed: int, seeds weight initialisation and the batch plans.
        checkpoint_every: int > 0, steps between resumable checkpoints.
        log_every: int > 0, steps between TensorBoard loss points.
        max_duration: float > 0 or None, seconds; longer training utterances are skipped (and counted).
        dev_max_utterances: int > 0, dev utterances decoded for the end-of-epoch WER (an even spread).
        dev_batch_size: int > 0.
    """

    frontend: FrontendConfig = dataclasses.field(default_factory=FrontendConfig)
    model: DeepSpeech2Config = dataclasses.field(default_factory=DeepSpeech2Config)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    batch_size: int = 16
    epochs: int = 10
    sortagrad: bool = True
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    max_duration: float = None
    dev_max_utterances: int = 300
    dev_batch_size: int = 32

    def __post_init__(self):
        for name in ("batch_size", "epochs", "checkpoint_every", "log_every", "dev_max_utterances", "dev_batch_size"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be an int >= 1, received: {getattr(self, name)!r}")
        if self.max_duration is not None and self.max_duration <= 0:
            raise ConfigError(f"max_duration must be > 0 or null, received: {self.max_duration}")

    def to_dict(self):
        return to_dict(self)


def load_train_config(path):
    """Load a preset YAML file into a ``TrainConfig`` (unknown keys raise ``ConfigError`` naming the file)."""
    return from_dict(TrainConfig, load_yaml(path), source=os.fspath(path))


# -- Learning rate -- #

@keras.saving.register_keras_serializable(package="speechkit")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak`` over ``warmup_steps``, then a decay, floored at ``minimum``.

    Args:
        peak: float > 0.
        warmup_steps: int >= 0.
        schedule: one of ``"constant"``, ``"exponential"``, ``"cosine"``, ``"inverse_sqrt"``.
        decay_steps: int > 0.
        decay_rate: float, exponential factor per ``decay_steps``.
        minimum: float >= 0.
    """

    def __init__(self, peak, warmup_steps, schedule="exponential", decay_steps=1000, decay_rate=0.5, minimum=0.0):
        if schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}, received: {schedule!r}")
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


def _make_optimizer(config):
    schedule = WarmupDecay(config.learning_rate, config.warmup_steps, config.schedule, config.decay_steps,
                           config.decay_rate, config.min_learning_rate)
    common = dict(learning_rate=schedule, beta_1=config.beta_1, beta_2=config.beta_2, epsilon=config.epsilon,
                  global_clipnorm=config.clipnorm)
    if config.name == "adamw":
        return keras.optimizers.AdamW(weight_decay=config.weight_decay, **common)
    return keras.optimizers.Adam(**common)


# -- Data selection -- #

def select_utterances(utterances, *, vocabulary, frontend, conv_strides, max_duration=None, require_ctc=True,
                      skip_report=None):
    """Keep utterances a CTC model can train on; count the others by reason.

    An utterance whose label needs more CTC frames (its length plus one blank per repeated
    character) than the network outputs would give an infinite loss, so it is dropped and counted
    as ``ctc_impossible``. Text that is empty or has characters outside the vocabulary is
    ``bad_text``; utterances longer than ``max_duration`` seconds are ``too_long``.

    Returns:
        (list of Utterance, SkipReport)
    """
    report = skip_report if skip_report is not None else SkipReport()
    frames = frame_counts(utterances, frontend)
    kept = []
    for utt, n in zip(utterances, frames):
        try:
            if not utt.text.strip():
                raise TextError("empty transcript")
            label = vocabulary.encode(utt.text)
        except TextError as err:
            report.add("bad_text", utt.id, err)
            continue
        if max_duration is not None and utt.duration > max_duration:
            report.add("too_long", utt.id, f"{utt.duration:.2f} s > {max_duration} s")
            continue
        out = int(output_lengths(n, conv_strides))
        if require_ctc and ctc_min_frames(label) > out:
            report.add("ctc_impossible", utt.id, f"label needs {ctc_min_frames(label)} frames, model outputs {out}")
            continue
        kept.append(utt)
    return kept, report


def _scalar(tag, value):
    """Write a TensorBoard scalar without importing the ``tensorboard`` package (``tf.summary.scalar`` needs it)."""
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(tag, tf.constant(float(value), tf.float32), metadata=metadata)


def _fingerprint(utterances):
    digest = hashlib.sha256()
    for u in utterances:
        digest.update(f"{u.id}\t{u.duration:.4f}\t{u.text}\n".encode("utf-8"))
    return digest.hexdigest()[:16]


def _to_fit(ds):
    options = tf.data.Options()
    # Each planned batch is split between the replicas (and workers), never dealt out whole.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.map(lambda f, fl, l, ll: ((f, fl), (l, ll))).with_options(options)


# -- Callbacks -- #

def _save_network(network, path):
    tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{os.path.basename(path)}")
    network.save(tmp)
    os.replace(tmp, path)


class _DevWER(keras.callbacks.Callback):
    """Greedy dev WER/CER at every epoch end (also a partial one); saves the best network."""

    def __init__(self, network, dataset, refs, vocabulary, *, best_path, best_wer):
        super().__init__()
        self.network, self.dataset, self.refs, self.vocabulary = network, dataset, refs, vocabulary
        self.best_path, self.best_wer = best_path, best_wer
        self.seconds = 0.0
        self._infer = tf.function(lambda x, n: network([x, n], training=False), reduce_retracing=True)

    def evaluate(self):
        start = time.monotonic()
        hyps = []
        for features, lengths, _, _ in self.dataset:
            log_probs, out = self._infer(features, lengths)
            log_probs, out = log_probs.numpy(), out.numpy()
            hyps.extend(greedy_decode(lp[:k], self.vocabulary) for lp, k in zip(log_probs, out))
        self.seconds = time.monotonic() - start
        return wer(self.refs, hyps), cer(self.refs, hyps), hyps

    def on_epoch_end(self, epoch, logs=None):
        dev_wer, dev_cer, hyps = self.evaluate()
        logs["val_wer"], logs["val_cer"] = dev_wer, dev_cer
        logger.info("dev WER %.4f CER %.4f (%.1f s); e.g. REF %r HYP %r", dev_wer, dev_cer, self.seconds,
                    self.refs[0], hyps[0])
        if dev_wer < self.best_wer:
            self.best_wer = dev_wer
            _save_network(self.network, self.best_path)
            logger.info("new best dev WER %.4f: saved %s", dev_wer, self.best_path)


class _TrainState(keras.callbacks.Callback):
    """Checkpoints, time budget, throughput accounting and TensorBoard scalars.

    The position in the epoch is tracked here because ``fit`` only sees the remaining batches.
    """

    def __init__(self, run_dir, *, state, checkpoint_every, log_every, time_budget_s, fingerprint, dev=None,
                 utterance_ids=None):
        super().__init__()
        self.run_dir = run_dir
        self.utterance_ids = utterance_ids
        self.consecutive_nonfinite = 0
        self.batch_log = open(os.path.join(run_dir, _BATCH_LOG), "a", encoding="utf-8")
        self.backup_dir = os.path.join(run_dir, _BACKUP)
        self.state = dict(state)
        self.checkpoint_every = checkpoint_every
        self.log_every = log_every
        self.time_budget_s = time_budget_s
        self.fingerprint = fingerprint
        self.dev = dev
        self.started = time.monotonic()
        self.budget_hit = False
        self.writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard"))
        self.plan, self.offset, self.epoch = [], 0, 0
        self.durations = None

    def begin_epoch(self, epoch, plan, offset, durations):
        self.epoch, self.plan, self.offset, self.durations = epoch, plan, offset, durations

    @property
    def step(self):
        return int(self.model.optimizer.iterations.numpy())

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_start = time.monotonic()
        self._batch_cpu = time.process_time()

    def on_train_batch_end(self, batch, logs=None):
        nonfinite = bool(int(logs.pop("nonfinite", 0)))
        batch_loss = float(logs.pop("batch_loss", math.nan))
        self.state["train_seconds"] += time.monotonic() - self._batch_start
        self.state["train_cpu_seconds"] = self.state.get("train_cpu_seconds", 0.0) + time.process_time() - self._batch_cpu
        done = self.offset + batch + 1
        ids = [self.utterance_ids[i] for i in self.plan[done - 1]] if self.utterance_ids else []
        self.batch_log.write(json.dumps({"epoch": self.epoch, "batch": done - 1, "step": self.step,
                                         "loss": batch_loss if math.isfinite(batch_loss) else None,
                                         "nonfinite": nonfinite, "ids": ids}) + "\n")
        self.batch_log.flush()
        if nonfinite:
            self._skipped(done - 1, ids)
        else:
            self.consecutive_nonfinite = 0
        self.state["audio_seconds"] += float(sum(self.durations[i] for i in self.plan[done - 1]))
        self.state["epoch"], self.state["batch"] = self.epoch, done
        step = self.step
        if step % self.log_every == 0:
            with self.writer.as_default(step=step):
                _scalar("train/loss", float(logs["loss"]))
                _scalar("train/learning_rate", self._learning_rate())
        if step % self.checkpoint_every == 0:
            self.save()
        if done < len(self.plan) and self.out_of_time():
            logger.info("time budget of %.1f min reached at step %d: stopping", self.time_budget_s / 60, step)
            self.budget_hit = True
            self.model.stop_training = True

    def _skipped(self, index, ids):
        self.state["nonfinite_steps"] = self.state.get("nonfinite_steps", 0) + 1
        self.consecutive_nonfinite += 1
        where = f"epoch {self.epoch}, batch {index} (utterances {', '.join(ids)})"
        logger.warning("non-finite loss or gradient, or impossible CTC alignment, at %s: step skipped, "
                       "weights unchanged", where)
        if self.consecutive_nonfinite >= _MAX_CONSECUTIVE_NONFINITE:
            raise SpeechkitError(f"{self.run_dir}: {self.consecutive_nonfinite} steps in a row had a non-finite loss, "
                                 f"gradient or impossible alignment, the last at {where}; training diverged: lower "
                                 "the learning rate or check those utterances (the last checkpoint is intact)")

    def out_of_time(self):
        """True when the time left no longer covers a dev evaluation (plus a margin)."""
        if self.time_budget_s is None:
            return False
        reserve = (self.dev.seconds * 1.2 + 5.0) if self.dev is not None else 5.0
        return time.monotonic() - self.started + reserve >= self.time_budget_s

    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True  # one fit() call per epoch: the next epoch needs its own batch plan
        logs.pop("nonfinite", None)
        logs.pop("batch_loss", None)
        logs["step"] = self.step
        logs["learning_rate"] = self._learning_rate()
        if self.dev is not None:
            self.state["best_dev_wer"] = self.dev.best_wer
        with self.writer.as_default(step=self.step):
            _scalar("epoch/loss", float(logs["loss"]))
            _scalar("epoch/learning_rate", logs["learning_rate"])
            for key in ("val_wer", "val_cer"):
                if key in logs:
                    _scalar(f"dev/{key[4:]}", float(logs[key]))
        self.writer.flush()
        self.save()

    def _learning_rate(self):
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def save(self):
        """Write weights (with optimizer state), then the state file naming them, then drop older weights."""
        os.makedirs(self.backup_dir, exist_ok=True)
        step = self.step
        state = dict(self.state, step=step, fingerprint=self.fingerprint)
        if state["batch"] >= len(self.plan):
            state["epoch"], state["batch"] = self.epoch + 1, 0
        name = f"ckpt-{step:08d}.weights.h5"
        tmp = os.path.join(self.backup_dir, f"tmp-{os.getpid()}.weights.h5")
        self.model.save_weights(tmp)
        os.replace(tmp, os.path.join(self.backup_dir, name))
        state["weights"] = name
        atomic_write_text(os.path.join(self.backup_dir, _STATE), json.dumps(state, indent=2) + "\n")
        for old in glob.glob(os.path.join(self.backup_dir, "ckpt-*.weights.h5")):
            if os.path.basename(old) != name:
                os.remove(old)
        logger.debug("checkpoint at step %d (epoch %d, batch %d)", step, state["epoch"], state["batch"])


# -- Training -- #

def _truncate_batch_log(run_dir, state):
    """Keep the ``batches.jsonl`` lines of the steps the checkpoint includes (a kill may leave more, or half a line)."""
    path = os.path.join(run_dir, _BATCH_LOG)
    if not os.path.exists(path):
        return
    kept = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if (entry["epoch"], entry["batch"]) < (state["epoch"], state["batch"]):
                kept.append(line if line.endswith("\n") else line + "\n")
    atomic_write_text(path, "".join(kept))


def _remove_partial_files(run_dir):
    """Delete temporary files a kill during a checkpoint or model write leaves behind."""
    for path in glob.glob(os.path.join(run_dir, _BACKUP, "tmp-*.weights.h5")) + glob.glob(
            os.path.join(run_dir, ".tmp-*-model.keras")):
        os.remove(path)


def _make_strategy(name):
    """The ``tf.distribute`` strategy for ``name``; created before any other TensorFlow op runs."""
    if name == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("strategy 'multi-worker' needs the TF_CONFIG environment variable (cluster and task)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    return tf.distribute.get_strategy()


def _is_chief(dist):
    resolver = getattr(dist, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return (resolver.task_type == "worker" and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())


def _read_state(run_dir):
    path = os.path.join(run_dir, _BACKUP, _STATE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise SpeechkitError(f"{path}: unreadable training state ({err}); remove {os.path.dirname(path)} to restart") from None


def _check_run_config(run_dir, config):
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.exists(path):
        return
    saved = from_dict(TrainConfig, load_yaml(path), source=path)
    if dataclasses.replace(saved, epochs=config.epochs) != config:
        raise ConfigError(f"{path}: {run_dir} holds a run with a different config; use another --out or the same preset")


def _policy(mixed_precision):
    if not mixed_precision:
        return "float32"
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def train(config, *, train_manifest, out_dir, dev_manifest=None, epochs=None, time_budget=None,
          mixed_precision=False, strategy="default", command=None, verbose="auto"):
    """Train (or resume training) a Deep Speech 2 model into ``out_dir``.

    Args:
        config: TrainConfig.
        train_manifest: str, JSONL manifest of training utterances.
        out_dir: str, the run directory; a run already there is resumed exactly.
        dev_manifest: optional str, JSONL manifest for the end-of-epoch WER and best-model selection;
            without it the last network is saved as ``model.keras``.
        epochs: optional int, overrides ``config.epochs`` (so a finished run can be extended).
        time_budget: optional float, minutes of wall time for this call; training stops cleanly
            (checkpoint, dev WER, ``model.keras``) before the budget runs out.
        mixed_precision: bool, bfloat16 compute on CPU, float16 with loss scaling on GPU.
        strategy: ``"default"``, ``"mirrored"`` (``tf.distribute.MirroredStrategy`` over the local GPUs,
            else the logical CPU devices) or ``"multi-worker"`` (``MultiWorkerMirroredStrategy`` over
            the cluster in ``TF_CONFIG``; run the same command on every worker with the same ``out_dir``
            on shared storage: the chief writes it, the others write to a temporary directory).
        command: optional str recorded in ``command.txt``; defaults to ``sys.argv``.
        verbose: Keras ``fit`` verbosity (``"auto"`` shows the progress bar).

    Returns:
        dict summary (also written to ``train_summary.json``).
    """
    if epochs is not None:
        config = dataclasses.replace(config, epochs=int(epochs))
    if strategy not in _STRATEGIES:
        raise ConfigError(f"strategy must be one of {_STRATEGIES}, received: {strategy!r}")
    if strategy == "multi-worker" and time_budget is not None:
        raise ConfigError("a time budget cannot be used with strategy 'multi-worker': workers would stop at "
                          "different steps and wait for each other forever")
    dist = _make_strategy(strategy)
    chief = _is_chief(dist)
    run_dir = out_dir
    if not chief:
        out_dir = tempfile.mkdtemp(prefix="speechkit-worker-")
        atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
    start = time.monotonic()
    os.makedirs(out_dir, exist_ok=True)
    _check_run_config(run_dir, config)
    vocabulary = Vocabulary()
    save_yaml(os.path.join(out_dir, "config.yaml"), config)
    save_yaml(os.path.join(out_dir, "frontend.yaml"), config.frontend)
    atomic_write_text(os.path.join(out_dir, "vocabulary.json"), json.dumps(vocabulary.to_dict(), indent=2) + "\n")
    _append_command(out_dir, command)
    done_path = os.path.join(out_dir, "DONE")
    if os.path.exists(done_path):
        os.remove(done_path)

    report = SkipReport()
    utterances, _ = select_utterances(read_manifest(train_manifest, skip_report=report), vocabulary=vocabulary,
                                      frontend=config.frontend, conv_strides=config.model.conv_strides,
                                      max_duration=config.max_duration, skip_report=report)
    report.write(os.path.join(out_dir, "train_skipped.json"))
    logger.info("%s: %d training utterances (%.2f h); %s", train_manifest, len(utterances),
                sum(u.duration for u in utterances) / 3600, report.summary())
    if not utterances:
        raise SpeechkitError(f"{train_manifest}: no usable training utterances ({report.summary()})")
    durations = [u.duration for u in utterances]
    fingerprint = _fingerprint(utterances)

    state = _read_state(run_dir)
    if state is not None and state.get("fingerprint") != fingerprint:
        raise SpeechkitError(f"{run_dir}: the training data differ from the run's checkpoint; use another --out")
    state = state or {"epoch": 0, "batch": 0, "step": 0, "best_dev_wer": None, "audio_seconds": 0.0,
                      "train_seconds": 0.0, "train_cpu_seconds": 0.0, "nonfinite_steps": 0}
    if chief:
        _truncate_batch_log(out_dir, state)
        _remove_partial_files(out_dir)

    previous_policy = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(_policy(mixed_precision))
    try:
        with dist.scope():
            keras.utils.set_random_seed(config.seed)
            network = build_deepspeech2(config.model, num_features=config.frontend.num_features,
                                        vocab_size=vocabulary.size)
            trainer = CTCTrainer(network, name="ctc_trainer")
            # Every batch has its own padded length; XLA would recompile the step for each one.
            trainer.compile(optimizer=_make_optimizer(config.optimizer), jit_compile=False)
            probe = np.zeros((1, 8, config.frontend.num_features), np.float32)
            trainer([probe, np.array([8], np.int32)])
            trainer.optimizer.build(trainer.trainable_variables)
            if state.get("weights"):
                weights = os.path.join(run_dir, _BACKUP, state["weights"])
                trainer.load_weights(weights)
                restored = int(trainer.optimizer.iterations.numpy())
                if restored != state["step"]:
                    raise SpeechkitError(f"{weights}: optimizer step {restored} != state step {state['step']}")
                logger.info("resuming %s at step %d (epoch %d, batch %d)", run_dir, state["step"], state["epoch"],
                            state["batch"])
        logger.info("network: %d parameters, time reduction %d", network.count_params(),
                    config.model.time_reduction_factor)
        summary = _fit(config, trainer, network, utterances, durations, vocabulary, state, out_dir, dev_manifest,
                       fingerprint, time_budget, verbose, start)
    except tf.errors.OpError as err:
        bad = re.search(r"AudioError: ([^\n]*)", str(err))
        if bad is None:
            raise
        raise SpeechkitError(f"{train_manifest}: training stopped: {bad.group(1)}; re-import the corpus (the importer "
                             f"decodes and skips such files) and train into a new --out") from None
    finally:
        keras.config.set_dtype_policy(previous_policy)
    summary["strategy"], summary["replicas"] = strategy, dist.num_replicas_in_sync
    atomic_write_text(os.path.join(out_dir, "train_summary.json"), json.dumps(summary, indent=2) + "\n")
    atomic_write_text(done_path, json.dumps({"reason": summary["stopped"], "step": summary["step"]}) + "\n")
    if not chief:
        shutil.rmtree(out_dir, ignore_errors=True)
    return summary


def _fit(config, trainer, network, utterances, durations, vocabulary, state, out_dir, dev_manifest, fingerprint,
         time_budget, verbose, start):
    best_path = os.path.join(out_dir, "model.keras")
    dev = None
    if dev_manifest is not None:
        dev = _dev_callback(config, network, dev_manifest, vocabulary, best_path, state)
    tracker = _TrainState(out_dir, state=state, checkpoint_every=config.checkpoint_every, log_every=config.log_every,
                          time_budget_s=None if time_budget is None else time_budget * 60.0 - (time.monotonic() - start),
                          fingerprint=fingerprint, dev=dev, utterance_ids=[u.id for u in utterances])
    tracker.set_model(trainer)
    callbacks = ([dev] if dev else []) + [tracker, keras.callbacks.CSVLogger(os.path.join(out_dir, "train_log.csv"),
                                                                                append=True)]
    stopped = "epochs"
    for epoch in range(state["epoch"], config.epochs):
        plan = plan_batches(durations, batch_size=config.batch_size, epoch=epoch, seed=config.seed,
                            sortagrad=config.sortagrad)
        if epoch > state["epoch"] and tracker.out_of_time():
            stopped = "time_budget"
            break
        offset = state["batch"] if epoch == state["epoch"] else 0
        tracker.begin_epoch(epoch, plan, offset, durations)
        dataset = _to_fit(asr_dataset(utterances, plan[offset:], vocabulary=vocabulary, frontend=config.frontend))
        trainer.fit(dataset, initial_epoch=epoch, epochs=config.epochs, callbacks=callbacks, verbose=verbose,
                    shuffle=False)
        if tracker.budget_hit:
            stopped = "time_budget"
            break
    tracker.batch_log.close()
    if dev is None:
        _save_network(network, best_path)
    final = dict(tracker.state)
    return {
        "stopped": stopped,
        "step": tracker.step,
        "epochs_done": final["epoch"] + final["batch"] / math.ceil(len(utterances) / config.batch_size),
        "best_dev_wer": dev.best_wer if dev else None,
        "audio_seconds_trained": final["audio_seconds"],
        "train_seconds": final["train_seconds"],
        "train_cpu_seconds": final.get("train_cpu_seconds", 0.0),
        "throughput_audio_s_per_s": final["audio_seconds"] / final["train_seconds"] if final["train_seconds"] else None,
        "audio_s_per_cpu_s": final["audio_seconds"] / final["train_cpu_seconds"] if final.get("train_cpu_seconds") else None,
        "wall_seconds_this_call": time.monotonic() - start,
        "nonfinite_steps": final.get("nonfinite_steps", 0),
        "training_utterances": len(utterances),
        "parameters": network.count_params(),
    }


def _dev_callback(config, network, dev_manifest, vocabulary, best_path, state):
    report = SkipReport()
    dev, _ = select_utterances(read_manifest(dev_manifest, skip_report=report), vocabulary=vocabulary,
                               frontend=config.frontend, conv_strides=config.model.conv_strides, require_ctc=False,
                               skip_report=report)
    if not dev:
        raise SpeechkitError(f"{dev_manifest}: no usable dev utterances ({report.summary()})")
    if len(dev) > config.dev_max_utterances:
        keep = np.linspace(0, len(dev) - 1, config.dev_max_utterances).round().astype(int)
        dev = [dev[i] for i in sorted(set(keep.tolist()))]
    batches = plan_batches([u.duration for u in dev], batch_size=config.dev_batch_size, epoch=0, sortagrad=True)
    refs = [dev[i].text for b in batches for i in b]
    dataset = asr_dataset(dev, batches, vocabulary=vocabulary, frontend=config.frontend).cache()
    logger.info("%s: dev WER on %d utterances; %s", dev_manifest, len(dev), report.summary())
    best = state.get("best_dev_wer")
    return _DevWER(network, dataset, refs, vocabulary, best_path=best_path,
                   best_wer=math.inf if best is None else best)


def _append_command(out_dir, command):
    path = os.path.join(out_dir, "command.txt")
    previous = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    line = command if command is not None else " ".join(shlex.quote(a) for a in sys.argv)
    atomic_write_text(path, previous + line + "\n")
