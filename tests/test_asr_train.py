"""CTC training: presets, data selection, learning-rate schedule, exact resume, time budget, a tiny overfit."""

import dataclasses
import glob
import json
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from speechkit import audio as audio_io
from speechkit.asr.ctc import CTCTrainer
from speechkit.asr.deepspeech2 import DeepSpeech2Config, SpecAugmentConfig
from speechkit.asr.train import TrainConfig, load_train_config, select_utterances, train
from speechkit.data.manifest import Utterance, write_manifest
from speechkit.errors import ConfigError, RunError
from speechkit.frontend import FrontendConfig
from speechkit.text import Vocabulary
from speechkit.training import OptimizerConfig, Progress, WarmupDecay

MODELS = os.path.join(os.path.dirname(__file__), "..", "models")
SENTENCES = ["GOOD MORNING", "THE CAT SAT", "OPEN THE DOOR", "YES PLEASE", "RED AND BLUE", "HOW ARE YOU"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six short espeak-ng utterances and their manifest."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make apt)")
    root = tmp_path_factory.mktemp("corpus")
    utterances = []
    for i, text in enumerate(SENTENCES):
        path = str(root / f"utt{i}.wav")
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "175", "-w", path, text.lower()], check=True)
        utterances.append(Utterance(id=f"utt{i}", audio=path, duration=audio_io.info(path)[0], text=text,
                                    speaker=f"s{i % 2}"))
    manifest = str(root / "train.jsonl")
    write_manifest(manifest, utterances)
    return manifest, utterances


def _tiny(**overrides):
    base = TrainConfig(
        frontend=FrontendConfig(kind="mel", n_mels=32),
        model=DeepSpeech2Config(conv_filters=(8,), conv_kernels=((5, 9),), conv_strides=((2, 2),), rnn_layers=1,
                                rnn_units=32, bn_momentum=0.9,
                                specaugment=SpecAugmentConfig(freq_masks=1, freq_width=4, time_masks=1, time_width=5)),
        optimizer=OptimizerConfig(learning_rate=3e-3, warmup_steps=3, schedule="constant"),
        batch_size=2, epochs=2, checkpoint_every=2, log_every=1, dev_batch_size=6)
    return dataclasses.replace(base, **overrides)


def _weights(path):
    values = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: values.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return values


# -- Presets and configuration -- #

def test_presets_load_and_follow_the_paper_shapes():
    mini = load_train_config(os.path.join(MODELS, "ds2-mini.yaml"))
    paper = load_train_config(os.path.join(MODELS, "ds2-librispeech.yaml"))
    streaming = load_train_config(os.path.join(MODELS, "ds2-streaming.yaml"))
    assert len(paper.model.conv_filters) == 2 and paper.model.rnn_layers == 5 and paper.model.rnn_units >= 768
    assert paper.model.bidirectional and mini.model.bidirectional
    assert not streaming.model.bidirectional and streaming.model.lookahead > 0
    for config in (mini, paper, streaming):
        assert config.optimizer.warmup_steps > 0 and config.optimizer.schedule != "constant"
        assert config.optimizer.clipnorm and config.sortagrad


def test_config_rejects_unknown_and_bad_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("batch_size: 8\nbatchsize: 8\n")
    with pytest.raises(ConfigError, match="batchsize.*bad.yaml|bad.yaml.*batchsize"):
        load_train_config(str(path))
    path.write_text("optimizer: {schedule: linear}\n")
    with pytest.raises(ConfigError, match="schedule"):
        load_train_config(str(path))
    path.write_text("model: {rnn_layers: 0}\n")
    with pytest.raises(ConfigError, match="rnn_layers"):
        load_train_config(str(path))


def test_warmup_decay_schedule():
    exp = WarmupDecay(1e-3, 10, "exponential", decay_steps=100, decay_rate=0.5, minimum=1e-5)
    assert float(exp(0)) == pytest.approx(1e-4)
    assert float(exp(9)) == pytest.approx(1e-3)
    assert float(exp(110)) == pytest.approx(5e-4, rel=1e-4)
    assert float(exp(10_000)) == pytest.approx(1e-5)
    cos = WarmupDecay(1e-3, 0, "cosine", decay_steps=100, minimum=1e-4)
    assert float(cos(50)) == pytest.approx(5.5e-4, rel=1e-4) and float(cos(500)) == pytest.approx(1e-4)
    assert WarmupDecay(**exp.get_config()).get_config() == exp.get_config()


def test_select_utterances_drops_ctc_impossible_and_bad_text():
    frontend = FrontendConfig(kind="mel")
    utts = [Utterance("ok", "a.wav", 1.0, "HELLO WORLD", "s"),
            Utterance("fast", "b.wav", 0.2, "THIS SENTENCE IS FAR TOO LONG FOR A FIFTH OF A SECOND", "s"),
            Utterance("bad", "c.wav", 1.0, "hello world", "s"),
            Utterance("long", "d.wav", 30.0, "HELLO", "s")]
    kept, report = select_utterances(utts, vocabulary=Vocabulary(), frontend=frontend, conv_strides=((2, 2),),
                                     max_duration=20.0)
    assert [u.id for u in kept] == ["ok"]
    assert report.counts == {"bad_text": 1, "ctc_impossible": 1, "too_long": 1}
    # 0.2 s gives 21 frames and 11 output frames: exactly "HELLO" plus its repeat blank fits in 6.
    short = Utterance("edge", "e.wav", 0.1, "HELLO", "s")
    kept, _ = select_utterances([short], vocabulary=Vocabulary(), frontend=frontend, conv_strides=((2, 2),))
    assert len(kept) == 1
    kept, report = select_utterances([short], vocabulary=Vocabulary(), frontend=frontend, conv_strides=((4, 2),))
    assert not kept and report.counts == {"ctc_impossible": 1}


# -- Training runs -- #

class _Crash(Exception):
    pass


@pytest.mark.slow
def test_resume_after_crash_continues_exactly(corpus, tmp_path, monkeypatch):
    manifest, _ = corpus
    config = _tiny()
    full = train(config, train_manifest=manifest, dev_manifest=manifest, out_dir=str(tmp_path / "full"), verbose=0)
    assert full["stopped"] == "epochs" and full["step"] == 6

    original = Progress.on_train_batch_end

    def crash_at_step_5(self, batch, logs=None):
        original(self, batch, logs)
        if self.state.step == 5:
            raise _Crash("simulated kill")

    run = str(tmp_path / "run")
    monkeypatch.setattr(Progress, "on_train_batch_end", crash_at_step_5)
    with pytest.raises(_Crash):
        train(config, train_manifest=manifest, dev_manifest=manifest, out_dir=run, verbose=0)
    monkeypatch.undo()
    state = json.load(open(os.path.join(run, "backup", "state.json")))
    assert (state["step"], state["epoch"], state["batch"]) == (4, 1, 1)
    assert not os.path.exists(os.path.join(run, "DONE"))

    resumed = train(config, train_manifest=manifest, dev_manifest=manifest, out_dir=run, verbose=0)
    assert resumed["step"] == 6 and resumed["epochs_done"] == 2.0
    assert resumed["audio_seconds_trained"] == pytest.approx(full["audio_seconds_trained"])
    a = _weights(glob.glob(os.path.join(tmp_path, "full", "backup", "ckpt-*.weights.h5"))[0])
    b = _weights(glob.glob(os.path.join(run, "backup", "ckpt-*.weights.h5"))[0])
    assert a.keys() == b.keys() and any("optimizer" in k for k in a) and any("spec_augment" in k for k in a)
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-7, err_msg=key)
    assert resumed["best_dev_wer"] == pytest.approx(full["best_dev_wer"])

    for name in ("config.yaml", "vocabulary.json", "train_log.csv", "model.keras", "command.txt", "DONE",
                 "train_summary.json", "skipped.json", "batches.jsonl", "tensorboard"):
        assert os.path.exists(os.path.join(run, name)), name
    assert len(open(os.path.join(run, "command.txt")).read().splitlines()) == 2
    rows = open(os.path.join(run, "train_log.csv")).read().splitlines()
    assert rows[0].split(",") == ["epoch", "learning_rate", "loss", "step", "val_cer", "val_wer"]
    assert [r.split(",")[3] for r in rows[1:]] == ["3", "6"]

    assert not os.path.exists(os.path.join(run, "frontend.yaml"))
    with pytest.raises(RunError, match="different config: batch_size: 2 != 3"):
        train(_tiny(batch_size=3), train_manifest=manifest, out_dir=run, verbose=0)


def test_time_budget_stops_cleanly_and_saves(corpus, tmp_path):
    manifest, _ = corpus
    run = str(tmp_path / "run")
    summary = train(_tiny(epochs=50, batch_size=1), train_manifest=manifest, out_dir=run, time_budget=0.001, verbose=0)
    assert summary["stopped"] == "time_budget" and 1 <= summary["step"] < 300
    assert json.load(open(os.path.join(run, "DONE")))["stopped"] == "time_budget"
    state = json.load(open(os.path.join(run, "backup", "state.json")))
    assert state["step"] == summary["step"] and os.path.exists(os.path.join(run, "model.keras"))



def test_init_from_starts_a_new_run_from_trained_weights(corpus, tmp_path):
    """``init_from`` copies a trained run's weights before the first step, and refuses a network of another shape."""
    import keras

    manifest, _ = corpus
    donor = str(tmp_path / "donor")
    train(_tiny(epochs=1), train_manifest=manifest, out_dir=donor, verbose=0)
    donor_model = keras.saving.load_model(os.path.join(donor, "model.keras"), compile=False)
    donor_weights = {v.path: v.numpy() for v in donor_model.weights}
    tuned = str(tmp_path / "tuned")
    frozen = _tiny(epochs=1, seed=3, optimizer=OptimizerConfig(learning_rate=1e-12, warmup_steps=0, schedule="constant",
                                                                     min_learning_rate=0.0),
                   model=dataclasses.replace(_tiny().model, specaugment=SpecAugmentConfig()))
    summary = train(frozen, train_manifest=manifest, out_dir=tuned, init_from=donor, verbose=0)
    assert summary["init_from"] == donor and summary["step"] == 3
    tuned_model = keras.saving.load_model(os.path.join(tuned, "model.keras"), compile=False)
    kernels = [v.path for v in tuned_model.weights if v.path.endswith("kernel")]
    assert len(kernels) == 4 and "specaugment/counter" in donor_weights
    assert all(np.allclose(donor_weights[v.path], v.numpy(), atol=1e-6) for v in tuned_model.weights
               if v.path in kernels)

    def first_epoch(run):
        rows = [json.loads(line) for line in open(os.path.join(run, "batches.jsonl"))]
        return [row["ids"] for row in rows if row["epoch"] == 0]

    sorted_plan, warm_plan = first_epoch(donor), first_epoch(tuned)  # seed 3 shuffles these 3 batches
    assert sorted(sum(warm_plan, [])) == sorted(sum(sorted_plan, [])) and warm_plan != sorted_plan
    assert json.load(open(os.path.join(tuned, "backup", "state.json")))["warm_start"] == os.path.abspath(donor)

    wider = _tiny(model=dataclasses.replace(_tiny().model, rnn_units=48))
    with pytest.raises(ConfigError, match="its network differs"):
        train(wider, train_manifest=manifest, out_dir=str(tmp_path / "wider"), init_from=donor, verbose=0)

@pytest.mark.slow
def test_tiny_model_overfits_five_utterances(corpus):
    """Network, CTC train step and greedy decoding can learn: 120 full-batch steps fit five utterances exactly."""
    import keras
    import tensorflow as tf

    from speechkit import frontend as fe
    from speechkit.asr.decoding import greedy_decode
    from speechkit.asr.deepspeech2 import build_deepspeech2
    from speechkit.metrics import wer

    _, utterances = corpus
    texts = [u.text for u in utterances[:5]]
    audios = [audio_io.load(u.audio) for u in utterances[:5]]
    padded = np.zeros((5, max(len(a) for a in audios)), np.float32)
    for i, a in enumerate(audios):
        padded[i, :len(a)] = a
    frontend = FrontendConfig(kind="mel", n_mels=32)
    features, lengths = fe.features(padded, [len(a) for a in audios], config=frontend)
    vocabulary = Vocabulary()
    labels = tf.ragged.constant([vocabulary.encode(t) for t in texts]).to_tensor()
    batch = ((features, lengths), (labels, tf.constant([len(t) for t in texts])))

    keras.utils.set_random_seed(0)
    network = build_deepspeech2(DeepSpeech2Config(conv_filters=(8,), conv_kernels=((5, 9),), conv_strides=((2, 2),),
                                                  rnn_layers=2, rnn_units=48, bn_momentum=0.8),
                                frontend=frontend)
    trainer = CTCTrainer(network)
    trainer.compile(optimizer=keras.optimizers.Adam(5e-3), jit_compile=False)
    trainer.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=120, epochs=1, verbose=0,
                shuffle=False)
    log_probs, out_lengths = network([features, lengths], training=False)
    hyps = [greedy_decode(log_probs[i, :out_lengths[i]].numpy(), vocabulary) for i in range(5)]
    assert wer(texts, hyps) == 0.0, hyps
