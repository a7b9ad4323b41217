"""CTC training of Deep Speech 2 through the shared training loop (``speechkit.training.fit_run``).

The run directory (``speechkit.runs.RunDir``) holds:

- ``config.yaml`` (the resolved ``TrainConfig``, front end included), ``vocabulary.json``, ``command.txt``;
- ``model.keras``: the network with the best dev WER so far (it carries its own front end);
- ``train_log.csv`` and ``tensorboard/``: one row and one point per epoch (loss, dev WER and CER,
  step, learning rate), plus the per-step loss in TensorBoard;
- ``backup/``: the latest resumable checkpoint and ``state.json``;
- ``batches.jsonl``: one line per step (epoch, batch, step, loss, non-finite flag, utterance ids);
- ``skipped.json`` (utterances left out and why), ``train_summary.json`` and ``DONE`` once training
  ends normally.

A run can start from the weights of another run or a released model (``init_from``): fine-tuning
on new data, or a new schedule or augmentation for a model that has stopped improving. Only the
weights are taken; the optimizer, schedule and batch plan start from step 0.

The batch plan of an epoch is a pure function of ``(seed, epoch)`` (``plan_batches``: SortaGrad in
epoch 0, length buckets after it), so a resumed run sees exactly the batches an uninterrupted run
would have seen. A step whose loss or gradients are not finite changes nothing (``CTCTrainer``);
it is counted and logged with the batch's utterance ids.
"""

import atexit
import dataclasses
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from speechkit.asr.ctc import CTCTrainer, ctc_min_frames
from speechkit.asr.decoding import greedy_decode
from speechkit.asr.deepspeech2 import DeepSpeech2Config, build_deepspeech2, output_lengths
from speechkit.asr.inference import load_run
from speechkit.asr.streaming import frontend_with_statistics
from speechkit.config import Config
from speechkit.data.manifest import SkipReport, even_spread, read_manifest
from speechkit.data.pipeline import FeatureCache, asr_dataset, frame_counts, plan_batches
from speechkit.errors import ConfigError, SpeechkitError, TextError
from speechkit.frontend import FrontendConfig
from speechkit.metrics import cer, wer
from speechkit.runs import RunDir
from speechkit.text import Vocabulary
from speechkit.training import (EpochPlan, OptimizerConfig, TrainState, copy_weights, fit_run, is_chief,
                                make_optimizer, make_strategy, precision_policy)

__all__ = ["TrainConfig", "load_train_config", "select_utterances", "train"]

logger = logging.getLogger(__name__)


# -- Configuration -- #

@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """A Deep Speech 2 preset: front end, network, optimiser and training loop.

    Args:
        frontend: FrontendConfig, the features the model is trained on; the saved network carries it.
        model: DeepSpeech2Config.
        optimizer: ``speechkit.training.OptimizerConfig``.
        batch_size: int > 0, utterances per step.
        epochs: int > 0, passes over the training set.
        sortagrad: bool, sort the first epoch by duration (Amodei et al., 2016, §3.1). It steadies
            weights that start random, so a run started from trained weights (``init_from``) skips it:
            sorted, a campaign shorter than an epoch would see only the shorter utterances.
        seed: int, seeds weight initialisation and the batch plans.
        checkpoint_every: int > 0, steps between resumable checkpoints.
        log_every: int > 0, steps between TensorBoard points of the per-step loss.
        max_duration: float > 0 or None, seconds; longer training utterances are skipped (and counted).
        dev_max_utterances: int > 0, dev utterances decoded for the end-of-epoch WER (an even spread).
        dev_batch_size: int > 0.
        jit_compile: bool, compile the training step with XLA (pair it with ``bucket_frames``, so that
            few distinct batch shapes need compiling).
        bucket_frames: int > 0 or None, pad each batch's frames up to a multiple of it (labels to a
            multiple of half of it); true lengths travel with the batch, so losses do not change.
        cache_features: bool, compute the training features once and keep them in memory (about
            115 MB per hour of audio at 80 bins); off, every epoch decodes and analyses the audio again.
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
    jit_compile: bool = False
    bucket_frames: int = None
    cache_features: bool = True

    def __post_init__(self):
        for name in ("batch_size", "epochs", "checkpoint_every", "log_every", "dev_max_utterances", "dev_batch_size"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be an int >= 1, received: {getattr(self, name)!r}")
        if self.max_duration is not None and self.max_duration <= 0:
            raise ConfigError(f"max_duration must be > 0 or null, received: {self.max_duration}")
        if self.bucket_frames is not None and (int(self.bucket_frames) != self.bucket_frames or self.bucket_frames < 1):
            raise ConfigError(f"bucket_frames must be an int >= 1 or null, received: {self.bucket_frames!r}")


def load_train_config(path):
    """Load a preset YAML file into a ``TrainConfig`` (unknown keys raise ``ConfigError`` naming the file)."""
    return TrainConfig.load(path)


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


def _stream(utterances, plan, config, vocabulary, cache):
    """``dataset_at(epoch, batch)``: the planned batches from that position to the end of the run.

    With a feature cache the whole rest of the run is one dataset read lazily by position; without
    one, batches must have equal sizes within a dataset, so there is one per epoch, concatenated.
    """
    options = dict(vocabulary=vocabulary, frontend=config.frontend, bucket_frames=config.bucket_frames)

    def dataset_at(epoch, batch):
        if cache is not None:
            return _to_fit(asr_dataset(utterances, plan.sequence(epoch, batch), feature_cache=cache, **options))
        ds = None
        for e in range(epoch, plan.epochs):
            part = asr_dataset(utterances, plan.batches(e)[batch if e == epoch else 0:], **options)
            ds = part if ds is None else ds.concatenate(part)
        return _to_fit(ds)

    return dataset_at


# -- Dev WER -- #

def _dev_evaluator(config, network, dev_manifest, vocabulary):
    """``evaluate() -> (wer, {"val_cer": cer})``: greedy decoding of an even spread of dev utterances."""
    report = SkipReport()
    dev, _ = select_utterances(read_manifest(dev_manifest, skip_report=report), vocabulary=vocabulary,
                               frontend=config.frontend, conv_strides=config.model.conv_strides, require_ctc=False,
                               skip_report=report)
    if not dev:
        raise SpeechkitError(f"{dev_manifest}: no usable dev utterances ({report.summary()})")
    dev = even_spread(dev, config.dev_max_utterances)
    batches = plan_batches([u.duration for u in dev], batch_size=config.dev_batch_size, epoch=0, sortagrad=True)
    refs = [dev[i].text for b in batches for i in b]
    dataset = asr_dataset(dev, batches, vocabulary=vocabulary, frontend=config.frontend).cache()
    infer = tf.function(lambda x, n: network([x, n], training=False), reduce_retracing=True)
    logger.info("%s: dev WER on %d utterances; %s", dev_manifest, len(dev), report.summary())

    def evaluate():
        hyps = []
        for features, lengths, _, _ in dataset:
            log_probs, out = infer(features, lengths)
            log_probs, out = log_probs.numpy(), out.numpy()
            hyps.extend(greedy_decode(lp[:k], vocabulary) for lp, k in zip(log_probs, out))
        logger.info("dev e.g. REF %r HYP %r", refs[0], hyps[0])
        return wer(refs, hyps), {"val_cer": cer(refs, hyps)}

    return evaluate


# -- Training -- #

def _warm_start(network, source, config, vocabulary):
    """Copy the weights of the run or released model ``source`` into the freshly built ``network``.

    Weights are matched by path; SpecAugment's step counter is the run's own, so the donor may have
    been trained with other masks.

    Raises:
        RunError: ``source`` is not a loadable ASR run or model.
        ConfigError: its front end, vocabulary or layer shapes differ from this run's.
    """
    donor = load_run(source)
    donor.frontend.check_matches(config.frontend, source=donor.run_dir)
    if donor.vocabulary.characters != vocabulary.characters:
        raise ConfigError(f"{donor.run_dir}: its vocabulary differs from this run's; cannot start from its weights")
    own = [v for v in network.weights if not v.path.startswith("specaugment/")]
    copy_weights(own, [v for v in donor.network.weights if not v.path.startswith("specaugment/")],
                 source=donor.run_dir, section="network")
    logger.info("started from the weights of %s", donor.run_dir)


def train(config, *, train_manifest, out_dir, dev_manifest=None, epochs=None, time_budget=None,
          mixed_precision=False, strategy="default", init_from=None, command=None, verbose="auto"):
    """Train (or resume training) a Deep Speech 2 model into ``out_dir``.

    Args:
        config: TrainConfig.
        train_manifest: str, JSONL manifest of training utterances.
        out_dir: str, the run directory; a run already there is resumed exactly.
        dev_manifest: optional str, JSONL manifest for the end-of-epoch WER and best-model selection;
            without it the latest network is saved as ``model.keras``.
        epochs: optional int, overrides ``config.epochs`` (so a finished run can be extended).
        time_budget: optional float, minutes of wall time for this call; training stops cleanly
            (checkpoint, dev WER, ``model.keras``) before the budget runs out. Under multi-worker
            training the workers agree on the step to stop after.
        mixed_precision: bool, bfloat16 compute on CPU, float16 with loss scaling on GPU.
        strategy: ``"default"``, ``"mirrored"`` (``tf.distribute.MirroredStrategy`` over the local GPUs,
            else the logical CPU devices) or ``"multi-worker"`` (``MultiWorkerMirroredStrategy`` over
            the cluster in ``TF_CONFIG``; run the same command on every worker with the same ``out_dir``
            on shared storage: the chief writes it, the others write to a temporary directory).
        command: optional str recorded in ``command.txt``; defaults to ``sys.argv``.
        init_from: optional str, a run or released model directory whose weights a new run starts
            from (same front end, vocabulary and layer shapes); ignored when resuming a checkpoint.
        verbose: Keras ``fit`` verbosity (``"auto"`` shows the progress bar).

    Returns:
        dict summary (also written to ``train_summary.json`` and ``DONE``).

    Raises:
        ConfigError: an unknown strategy, or ``multi-worker`` without ``TF_CONFIG``; ``init_from``
            does not fit this run's model.
        RunError: ``out_dir`` holds a run with another config (the message lists the fields).
        SpeechkitError: no usable data, other training data than the checkpoint's, or training diverged.
    """
    started = time.monotonic()
    if epochs is not None:
        config = dataclasses.replace(config, epochs=int(epochs))
    dist = make_strategy(strategy)
    home = RunDir(out_dir, create=True)
    run = home if is_chief(dist) else RunDir(tempfile.mkdtemp(prefix="speechkit-worker-"))
    if run is not home:
        atexit.register(shutil.rmtree, run.path, ignore_errors=True)
    vocabulary = Vocabulary()
    report = SkipReport()
    listed = read_manifest(train_manifest, skip_report=report)
    config = dataclasses.replace(config, frontend=frontend_with_statistics(config.frontend, listed))
    run.save_config(config, mutable=("epochs",))
    run.save_vocabulary(vocabulary)
    run.append_command(command)
    run.clear_done()

    utterances, _ = select_utterances(listed, vocabulary=vocabulary, frontend=config.frontend,
                                      conv_strides=config.model.conv_strides, max_duration=config.max_duration,
                                      skip_report=report)
    report.write(run.file(run.SKIPPED))
    logger.info("%s: %d training utterances (%.2f h); %s", train_manifest, len(utterances),
                sum(u.duration for u in utterances) / 3600, report.summary())
    if not utterances:
        raise SpeechkitError(f"{train_manifest}: no usable training utterances ({report.summary()})")
    durations = [u.duration for u in utterances]
    fingerprint = _fingerprint(utterances)
    state = TrainState.load(home.backup_dir)
    if state is not None and state.fingerprint != fingerprint:
        raise SpeechkitError(f"{home.path}: the training data differ from the run's checkpoint; "
                             "train into a new run directory")
    state = state or TrainState(fingerprint=fingerprint)

    previous_policy = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(precision_policy(mixed_precision))
    try:
        with dist.scope():
            keras.utils.set_random_seed(config.seed)
            network = build_deepspeech2(config.model, frontend=config.frontend, vocab_size=vocabulary.size)
            trainer = CTCTrainer(network, name="ctc_trainer")
            trainer.compile(optimizer=make_optimizer(config.optimizer), jit_compile=config.jit_compile)
            probe = np.zeros((1, 8, config.frontend.num_features), np.float32)
            trainer([probe, np.array([8], np.int32)])
            trainer.optimizer.build(trainer.trainable_variables)
            if init_from is not None and state.weights is None:
                _warm_start(network, init_from, config, vocabulary)
                state.warm_start = os.path.abspath(init_from) if os.path.isdir(init_from) else str(init_from)
        logger.info("network: %d parameters, time reduction %d", network.count_params(),
                    config.model.time_reduction_factor)
        sortagrad = config.sortagrad and state.warm_start is None
        plan = EpochPlan(lambda e: plan_batches(durations, batch_size=config.batch_size, epoch=e, seed=config.seed,
                                                sortagrad=sortagrad), epochs=config.epochs)

        def describe(epoch, batch):
            indices = plan.batches(epoch)[batch]
            return [utterances[i].id for i in indices], sum(durations[i] for i in indices)

        metric = None
        if dev_manifest is not None:
            metric = ("val_wer", _dev_evaluator(config, network, dev_manifest, vocabulary))
        cache = FeatureCache(utterances, config.frontend) if config.cache_features else None
        dataset_at = _stream(utterances, plan, config, vocabulary, cache)
        summary = fit_run(trainer, run=run, state=state, dataset_at=dataset_at,
                          steps_per_epoch=plan.steps_per_epoch, epochs=config.epochs, describe=describe,
                          save_model=lambda: run.save_model(network), checkpoint_every=config.checkpoint_every,
                          log_every=config.log_every, metric=metric,
                          time_budget_s=None if time_budget is None else 60.0 * time_budget, started=started,
                          strategy=dist, home=home, verbose=verbose)
    except tf.errors.OpError as err:
        bad = re.search(r"AudioError: ([^\n]*)", str(err))
        if bad is None:
            raise
        raise SpeechkitError(f"{train_manifest}: training stopped: {bad.group(1)}; re-import the corpus (the importer "
                             f"decodes and skips such files) and train into a new run directory") from None
    finally:
        keras.config.set_dtype_policy(previous_policy)
    summary["best_dev_wer"] = summary.pop("best")
    summary.update(training_utterances=len(utterances), strategy=strategy, replicas=dist.num_replicas_in_sync,
                   init_from=init_from)
    run.mark_done(summary)
    if run is not home:
        shutil.rmtree(run.path, ignore_errors=True)
    return summary
