"""NaN/Inf safety: a non-finite loss or gradient never changes the model, and is counted and named."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from _tiny_asr import tiny_config, write_corpus
from speechkit.asr import ctc as ctc_module
from speechkit.asr.ctc import CTCTrainer
from speechkit.asr.deepspeech2 import build_deepspeech2
from speechkit.asr.train import select_utterances, train
from speechkit.data.manifest import read_manifest
from speechkit.errors import SpeechkitError
from speechkit.text import Vocabulary
from speechkit.training import callbacks as callbacks_module
from speechkit.training import make_optimizer

VOCAB = Vocabulary()


@pytest.fixture(scope="module")
def trainer():
    config = tiny_config()
    keras.utils.set_random_seed(0)
    network = build_deepspeech2(config.model, frontend=config.frontend, vocab_size=VOCAB.size)
    model = CTCTrainer(network)
    model.compile(optimizer=make_optimizer(config.optimizer), jit_compile=False)
    model([np.zeros((1, 8, 16), np.float32), np.array([8], np.int32)])
    model.optimizer.build(model.trainable_variables)
    return model


def _batch(rng, *, frames=(40, 30), label="CAB"):
    features = rng.standard_normal((len(frames), max(frames), 16)).astype(np.float32)
    labels = np.array([VOCAB.encode(label)] * len(frames), np.int32)
    return ((tf.constant(features), tf.constant(frames, tf.int32)),
            (tf.constant(labels), tf.constant([len(label)] * len(frames), tf.int32)))


def _state(model):
    """Every variable a training step could touch: weights, batch-norm statistics, optimizer slots, step counter."""
    variables = model.variables + model.optimizer.variables
    return {v.path: np.array(v.numpy()) for v in variables}


def _assert_unchanged(before, after):
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)


@pytest.mark.parametrize("case", ["nan_features", "inf_features", "impossible_alignment"])
def test_non_finite_step_changes_nothing(trainer, case):
    rng = np.random.default_rng(1)
    if case == "impossible_alignment":
        data = _batch(rng, frames=(6, 6), label="ABCDEFGHIJ")  # 10 labels, 3 output frames: CTC loss is +inf
    else:
        data = _batch(rng)
        features = data[0][0].numpy()
        features[1, 5, 3] = np.nan if case == "nan_features" else np.inf
        data = ((tf.constant(features), data[0][1]), data[1])
    before = _state(trainer)
    logs = trainer.train_step(data)
    assert float(logs["nonfinite"]) == 1.0
    _assert_unchanged(before, _state(trainer))
    assert np.isfinite(float(logs["loss"])) or float(logs["loss"]) == 0.0


def test_finite_step_still_trains(trainer):
    before = _state(trainer)
    step = int(trainer.optimizer.iterations.numpy())
    logs = trainer.train_step(_batch(np.random.default_rng(2)))
    assert float(logs["nonfinite"]) == 0.0 and np.isfinite(float(logs["loss"]))
    after = _state(trainer)
    assert int(trainer.optimizer.iterations.numpy()) == step + 1
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert any("kernel" in k for k in changed) and any("moving" in k for k in changed), changed


def test_impossible_alignments_are_filtered_before_training(tmp_path):
    manifest = write_corpus(str(tmp_path), ["CAB", "THIS LABEL IS FAR TOO LONG FOR A THIRD OF A SECOND", "BAD"])
    config = tiny_config()
    kept, report = select_utterances(read_manifest(manifest), vocabulary=VOCAB, frontend=config.frontend,
                                     conv_strides=config.model.conv_strides)
    assert [u.text for u in kept] == ["CAB", "BAD"]
    assert report.counts == {"ctc_impossible": 1}
    assert report.items["ctc_impossible"][0]["item"] == "u01"


def _poison(marker):
    """A ``ctc_loss`` that returns NaN for every utterance of a batch holding the letter ``marker``."""
    original = ctc_module.ctc_loss
    code = VOCAB.encode(marker)[0]

    def loss(labels, label_lengths, log_probs, logit_lengths):
        losses = original(labels, label_lengths, log_probs, logit_lengths)
        poisoned = tf.reduce_any(tf.equal(labels, code))
        return tf.where(poisoned, tf.fill(tf.shape(losses), float("nan")), losses)

    return loss


def test_training_skips_and_counts_a_nan_batch(tmp_path, monkeypatch):
    texts = ["AB", "CAB", "BAD", "DAB", "ACE", "BED", "FED", "ZED"]
    manifest = write_corpus(str(tmp_path / "data"), texts)
    monkeypatch.setattr(ctc_module, "ctc_loss", _poison("Z"))
    run = str(tmp_path / "run")
    summary = train(tiny_config(epochs=2, checkpoint_every=1), train_manifest=manifest, out_dir=run, verbose=0)
    # 8 utterances in batches of 4: 2 steps per epoch, one of them holds "ZED" in each epoch.
    assert summary["nonfinite_steps"] == 2 and summary["step"] == 2 and summary["stopped"] == "epochs"
    log = [json.loads(line) for line in open(os.path.join(run, "batches.jsonl"))]
    assert len(log) == 4
    for entry in log:
        assert entry["nonfinite"] == ("u07" in entry["ids"]), entry
    assert json.load(open(os.path.join(run, "backup", "state.json")))["nonfinite_steps"] == 2
    network = keras.saving.load_model(os.path.join(run, "model.keras"), compile=False)
    assert all(np.all(np.isfinite(w)) for w in network.get_weights())


def test_training_stops_when_every_step_is_non_finite(tmp_path, monkeypatch):
    manifest = write_corpus(str(tmp_path / "data"), ["AB", "CAB", "BAD", "DAB", "ACE", "BED", "FED", "FADE"])
    monkeypatch.setattr(ctc_module, "ctc_loss", _poison("A"))
    monkeypatch.setattr(callbacks_module, "MAX_CONSECUTIVE_NONFINITE", 2)
    with pytest.raises(SpeechkitError, match=r"2 steps in a row .* epoch 0, batch 1 \(utterances u0"):
        train(tiny_config(epochs=1), train_manifest=manifest, out_dir=str(tmp_path / "run"), verbose=0)


def test_nan_step_under_float16_loss_scaling_changes_nothing():
    """With ``mixed_float16`` Keras wraps the optimizer in a ``LossScaleOptimizer``: the guard must still hold."""
    config = tiny_config()
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("mixed_float16")
    try:
        network = build_deepspeech2(config.model, frontend=config.frontend, vocab_size=VOCAB.size)
        model = CTCTrainer(network)
        model.compile(optimizer=make_optimizer(config.optimizer), jit_compile=False)
        model([np.zeros((1, 8, 16), np.float32), np.array([8], np.int32)])
        model.optimizer.build(model.trainable_variables)
    finally:
        keras.config.set_dtype_policy(previous)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    data = _batch(np.random.default_rng(3))
    features = data[0][0].numpy()
    features[0, 2, 2] = np.nan
    before = _state(model)
    logs = model.train_step(((tf.constant(features), data[0][1]), data[1]))
    assert float(logs["nonfinite"]) == 1.0
    _assert_unchanged(before, _state(model))
