"""Vocoder training: aligned windows, determinism, tiny overfit, exact resume, time budget, presets."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest

from speechkit import audio as audio_io
from speechkit.data.manifest import Utterance, write_manifest
from speechkit.errors import ConfigError, SpeechkitError
from speechkit.frontend import FrontendConfig, log_mel, mu_law_decode, mu_law_encode
from speechkit.vocoder.data import (WindowSampler, corpus_from_dir, corpus_from_manifest, history_frames, load_corpus,
                                    window_dataset)
from speechkit.vocoder.generation import load_vocoder
from speechkit.vocoder.lpc import EXCITATION_SCALE, excitation, source_filter
from speechkit.vocoder.pulses import PULSE_FEATURES
from speechkit.training import OptimizerConfig
from speechkit.vocoder.config import VocoderConfig, VocoderTrainConfig, load_vocoder_config
from speechkit.vocoder.train import build_model, train_vocoder
from speechkit.vocoder.wavenet import WaveNetConfig, conditioning_mel, silence_class

FRONTEND = FrontendConfig(kind="mel", normalize=False)
MODELS = os.path.join(os.path.dirname(__file__), "..", "models")


def _tiny_config(learning_rate=1e-3, **train):
    model = WaveNetConfig(layers_per_stack=3, stacks=2, residual_channels=8, gate_channels=8, skip_channels=8,
                          head_channels=16, cond_channels=8, num_speakers=2)
    optimizer = OptimizerConfig(learning_rate=learning_rate, warmup_steps=0, schedule="constant", clipnorm=1.0)
    defaults = dict(batch_size=2, window_frames=4, epochs=2, steps_per_epoch=2, sample_every=0, jit_compile=False,
                    optimizer=optimizer, checkpoint_every=1)
    return VocoderConfig(frontend=FRONTEND, model=model, train=VocoderTrainConfig(**{**defaults, **train}))


def _harmonic(seconds, f0, seed):
    t = np.arange(int(seconds * 16000)) / 16000
    rng = np.random.default_rng(seed)
    wave = sum(0.3 / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) for k in range(1, 4))
    return (wave * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t))).astype(np.float32)


@pytest.fixture
def manifest(tmp_path):
    utts = []
    for i, (seconds, f0) in enumerate(((0.6, 150), (0.45, 210), (0.03, 300), (0.5, 120))):
        path = str(tmp_path / f"u{i}.wav")
        audio_io.save(path, _harmonic(seconds, f0, i))
        utts.append(Utterance(f"u{i}", path, seconds, "A", f"s{i % 2}"))
    path = str(tmp_path / "train.jsonl")
    write_manifest(path, utts)
    return path


def _harmonic_corpus(tmp_path, durations):
    items = []
    for i, seconds in enumerate(durations):
        path = str(tmp_path / f"a{i}.wav")
        audio_io.save(path, _harmonic(seconds, 180 + 40 * i, i))
        items.append((f"a{i}", path, "x"))
    return load_corpus(items, sample_rate=16000, min_samples=640, source="test")


def test_window_mel_and_samples_align_with_the_whole_utterance(tmp_path):
    corpus = _harmonic_corpus(tmp_path, (0.06, 0.07))
    sampler = WindowSampler(corpus, frontend=FRONTEND, window_frames=4, context=2, batch_size=6, seed=1)
    hop = FRONTEND.hop_length
    starts_seen = set()
    for step in range(4):
        batch = sampler.batch(step)
        mel = sampler.conditioning(batch["segment"]).numpy()
        for row in range(6):
            u, k = batch["utterance"][row], batch["start"][row]
            starts_seen.add(int(k))
            audio = corpus.audio(u)
            full_mel = conditioning_mel(audio, frontend=FRONTEND, context=2).numpy()
            np.testing.assert_allclose(mel[row], full_mel[k:k + 4 + 4], atol=2e-4)
            classes = mu_law_encode(audio, FRONTEND.mu).numpy()
            np.testing.assert_array_equal(batch["target"][row], classes[k * hop:(k + 4) * hop])
            prev = classes[k * hop - 1:(k + 4) * hop - 1] if k else np.concatenate(
                [[silence_class(FRONTEND)], classes[:4 * hop - 1]])
            np.testing.assert_array_equal(batch["prev"][row], prev)
    assert starts_seen == {0, 1, 2, 3}


@pytest.mark.parametrize("normalize", [False, True], ids=["residual", "normalized"])
def test_lpc_windows_hold_the_whole_utterances_residual(tmp_path, normalize):
    """With ``lpc_order`` the samples are the residual of the predictor from the utterance's own mel, exactly
    (divided by the predictor's gain, with ``lpc_normalize``)."""
    corpus = _harmonic_corpus(tmp_path, (0.08, 0.11))
    sampler = WindowSampler(corpus, frontend=FRONTEND, window_frames=4, context=1, batch_size=6, seed=1, history=2,
                            lpc_order=16, lpc_normalize=normalize)
    hop, inputs = FRONTEND.hop_length, 6 * FRONTEND.hop_length
    for step in range(3):
        batch = sampler.batch(step)
        for row in range(6):
            u, k = batch["utterance"][row], batch["start"][row]
            audio = corpus.audio(u)
            predictors, gain = source_filter(log_mel(audio, config=FRONTEND), frontend=FRONTEND, order=16,
                                             normalize=normalize)
            residual = np.concatenate([np.zeros(inputs + 1, np.float32),
                                       excitation(audio, predictors, hop=hop, gain=gain)])
            classes = mu_law_encode(residual, FRONTEND.mu).numpy()
            end = inputs + 1 + (k + 4) * hop
            np.testing.assert_array_equal(batch["target"][row], classes[end - 4 * hop:end])
            np.testing.assert_array_equal(batch["prev"][row][-4 * hop:], classes[end - 4 * hop - 1:end - 1])
            if normalize:  # the level the filter restores is out: about EXCITATION_SCALE, at any loudness
                assert 0.2 * EXCITATION_SCALE < np.std(residual[inputs + 1:]) < 5 * EXCITATION_SCALE
            else:
                assert np.std(residual) < 0.5 * np.std(audio)
    with pytest.raises(ValueError, match="context >= 1"):
        WindowSampler(corpus, frontend=FRONTEND, window_frames=4, context=0, batch_size=2, seed=1, lpc_order=16)

def test_lpc_windows_carry_pulses_on_their_residual_peaks(tmp_path):
    """With ``pulses`` a batch carries the training pulse train, aligned with ``prev`` (position t describes
    sample t, whose class is ``prev[t + 1]``): impulses on the peaks of the residual, one period apart."""
    corpus = _harmonic_corpus(tmp_path, (0.3, 0.35))
    hop = FRONTEND.hop_length
    sampler = WindowSampler(corpus, frontend=FRONTEND, window_frames=8, context=2, batch_size=4, seed=2, history=2,
                            lpc_order=16, lpc_normalize=True, pulses=True)
    batch = sampler.batch(0)
    pulses = batch["pulses"]
    assert pulses.shape == (4, 10 * hop, PULSE_FEATURES) and pulses.dtype == np.float32
    np.testing.assert_array_equal(sampler.batch(0)["pulses"], pulses)
    residual = np.abs(mu_law_decode(batch["prev"][:, 1:], FRONTEND.mu).numpy())
    for row in range(4):
        impulses = np.flatnonzero(pulses[row, :-1, 0] > 0)
        assert len(impulses) > 10
        assert residual[row, impulses].mean() > 2 * residual[row].mean()
        period = 16000 / (180 + 40 * batch["utterance"][row])
        assert abs(np.median(np.diff(impulses)) - period) <= 2
        reach = int(period / 5)
        peaks = [residual[row, i] >= residual[row, i - reach:i + reach + 1].max() for i in impulses[1:-1]]
        assert np.mean(peaks) > 0.9
    with pytest.raises(ValueError, match="lpc_order"):
        WindowSampler(corpus, frontend=FRONTEND, window_frames=4, context=1, batch_size=2, seed=1, pulses=True)


def test_start_share_begins_windows_at_the_utterance_start_after_silence(tmp_path):
    """A music model learns to strike its chord from silence only from windows that hold the onset."""
    corpus = _harmonic_corpus(tmp_path, (1.0, 1.2))
    hop = FRONTEND.hop_length

    def starts(share):
        sampler = WindowSampler(corpus, frontend=FRONTEND, window_frames=4, context=1, batch_size=8, seed=3,
                                history=2, start_share=share)
        return sampler, np.concatenate([sampler.batch(step)["start"] for step in range(20)])

    _, even = starts(0.0)
    assert np.mean(even == 0) < 0.05
    sampler, anchored = starts(0.5)
    assert 0.35 < np.mean(anchored == 0) < 0.65
    assert len(set(anchored[anchored > 0])) > 5
    batch = sampler.batch(0)
    for row in np.flatnonzero(batch["start"] == 0):
        classes = mu_law_encode(corpus.audio(batch["utterance"][row]), FRONTEND.mu).numpy()
        np.testing.assert_array_equal(batch["target"][row], classes[:4 * hop])
        assert np.all(batch["prev"][row][:2 * hop + 1] == silence_class(FRONTEND))
    with pytest.raises(ValueError, match="start_share"):
        WindowSampler(corpus, frontend=FRONTEND, window_frames=4, context=1, batch_size=2, seed=1, start_share=1.5)


def test_onset_weight_scales_the_loss_of_the_first_positions_after_an_onset(tmp_path):
    """Only a clip's first periods depend on its chord label, so they can be weighted up in the loss."""
    corpus = _harmonic_corpus(tmp_path, (1.0, 1.2))
    config = _tiny_config(start_share=0.5, onset_weight=8.0, onset_samples=100)
    model = build_model(config, seed=0)
    sampler = WindowSampler(corpus, frontend=FRONTEND, window_frames=4, context=model.config.cond_context,
                            batch_size=8, seed=3, history=2, start_share=0.5)
    weighted = window_dataset(sampler, model_config=config.model, onset_weight=8.0, onset_samples=100).take(1)
    plain = window_dataset(sampler, model_config=config.model).take(1)
    (_, target, weights), = list(weighted.as_numpy_iterator())
    onset = sampler.batch(0)["start"] == 0
    assert 0 < onset.sum() < 8 and weights.shape == target.shape
    assert np.all(weights[onset, :100] == 8.0) and np.all(weights[onset, 100:] == 1.0)
    assert np.all(weights[~onset] == 1.0)
    assert len(next(iter(plain))) == 2
    loss_weighted = model.evaluate(weighted, verbose=0, return_dict=True)["loss"]
    loss_plain = model.evaluate(plain, verbose=0, return_dict=True)["loss"]
    assert abs(loss_weighted - loss_plain) > 1e-3 * loss_plain
    with pytest.raises(ConfigError, match="onset_weight"):
        VocoderTrainConfig(onset_weight=0.5)
    with pytest.raises(ConfigError, match="onset_samples"):
        VocoderTrainConfig(onset_samples=-1)


def test_batches_are_a_function_of_seed_and_step(manifest):
    corpus = load_corpus(_items(manifest), sample_rate=16000, min_samples=640, source=manifest)

    def make(seed):
        return WindowSampler(corpus, frontend=FRONTEND, window_frames=4, context=2, batch_size=3, seed=seed)

    a, b = make(0).batch(5), make(0).batch(5)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(make(0).batch(6)["target"], a["target"])
    assert not np.array_equal(make(1).batch(5)["target"], a["target"])


def _items(manifest):
    from speechkit.data.manifest import read_manifest

    return [(u.id, u.audio, u.speaker) for u in read_manifest(manifest)]


def test_corpus_skips_and_counts_short_and_unreadable(tmp_path):
    (tmp_path / "spk1").mkdir()
    (tmp_path / "spk2").mkdir()
    audio_io.save(str(tmp_path / "spk1" / "a.wav"), _harmonic(0.3, 200, 0))
    audio_io.save(str(tmp_path / "spk2" / "b.flac"), _harmonic(0.01, 200, 1))
    (tmp_path / "spk2" / "c.wav").write_bytes(b"not audio at all")
    corpus = corpus_from_dir(str(tmp_path), sample_rate=16000, min_samples=640)
    assert corpus.ids == [os.path.join("spk1", "a")] and corpus.speaker_names == ["spk1"]
    assert corpus.skipped.counts == {"too_short": 1, "unreadable": 1}
    with pytest.raises(SpeechkitError, match="no usable audio"):
        corpus_from_dir(str(tmp_path / "spk2"), sample_rate=16000, min_samples=640)


@pytest.mark.slow
def test_tiny_model_overfits_one_clip(tmp_path):
    path = str(tmp_path / "clip.wav")
    audio_io.save(path, _harmonic(0.4, 200, 0))
    corpus = load_corpus([("clip", path, "s")], sample_rate=16000, min_samples=640, source="t")
    config = _tiny_config(learning_rate=0.01, batch_size=4)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, num_speakers=0))
    model = build_model(config, seed=0)
    sampler = WindowSampler(corpus, frontend=FRONTEND, window_frames=4, context=2, batch_size=4, seed=0)
    dataset = window_dataset(sampler, model_config=config.model)
    inputs, targets = next(iter(window_dataset(sampler, model_config=config.model, start_step=10_000)))
    before = float(model.evaluate(inputs, targets, verbose=0)[1])
    model.fit(dataset, epochs=1, steps_per_epoch=250, verbose=0)
    after = float(model.evaluate(inputs, targets, verbose=0)[1])
    assert before < 0.05
    assert after > 0.25, after


@pytest.mark.slow
def test_training_writes_run_and_resumes_exactly(manifest, tmp_path):
    config = _tiny_config()
    straight = train_vocoder(config, out_dir=str(tmp_path / "a"), manifest=manifest, verbose=0)
    assert straight["step"] == 4 and straight["stopped"] == "epochs" and straight["epochs_done"] == 2.0
    assert straight["train_utterances"] == 3
    for name in ("DONE", "train_summary.json", "model.keras", "config.yaml", "speakers.json", "skipped.json",
                 "train_log.csv", "batches.jsonl", "command.txt", "backup/state.json"):
        assert os.path.isfile(tmp_path / "a" / name), name
    assert not os.path.exists(tmp_path / "a" / "frontend.yaml") and not os.path.exists(tmp_path / "a" / "history.csv")
    assert os.path.isdir(tmp_path / "a" / "tensorboard")
    assert json.loads((tmp_path / "a" / "skipped.json").read_text())["by_reason"] == {"too_short": 1}

    class Crash(keras.callbacks.Callback):
        """Dies after step 3, the first batch of epoch 1: the checkpoint is in the middle of an epoch."""

        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 3:
                raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train_vocoder(config, out_dir=str(tmp_path / "b"), manifest=manifest, verbose=0, callbacks=[Crash()])
    assert not os.path.exists(tmp_path / "b" / "DONE")
    state = json.loads((tmp_path / "b" / "backup" / "state.json").read_text())
    assert (state["step"], state["epoch"], state["batch"]) == (3, 1, 1)
    resumed = train_vocoder(config, out_dir=str(tmp_path / "b"), manifest=manifest, verbose=0)
    assert resumed["step"] == 4
    assert [json.loads(line)["step"] for line in open(tmp_path / "b" / "batches.jsonl")] == [1, 2, 3, 4]
    a = keras.saving.load_model(str(tmp_path / "a" / "model.keras"), compile=False)
    b = keras.saving.load_model(str(tmp_path / "b" / "model.keras"), compile=False)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_allclose(wa.numpy(), wb.numpy(), atol=1e-6, err_msg=wa.path)
    again = train_vocoder(config, out_dir=str(tmp_path / "b"), manifest=manifest, verbose=0)
    assert again["step"] == 4, "a finished run trains no further at the same epochs"
    annealed = dataclasses.replace(config, train=dataclasses.replace(
        config.train, epochs=3, optimizer=dataclasses.replace(config.train.optimizer, learning_rate=2.5e-4)))
    extended = train_vocoder(annealed, out_dir=str(tmp_path / "b"), manifest=manifest, verbose=0)
    assert extended["step"] == 6
    rates = [float(row.split(",")[2]) for row in open(tmp_path / "b" / "train_log.csv").read().split()[1:]]
    np.testing.assert_allclose(rates, [1e-3, 1e-3, 2.5e-4], rtol=1e-6)
    assert "learning_rate: 0.00025" in (tmp_path / "b" / "config.yaml").read_text()


@pytest.mark.slow
def test_a_run_with_pulse_input_starts_as_the_run_it_starts_from(manifest, tmp_path):
    """``init_from``: a new input's projection starts at zero, so the first step's loss is the donor's own."""
    base = _tiny_config(epochs=1)
    base = dataclasses.replace(base, model=dataclasses.replace(base.model, lpc_order=8, lpc_normalize=True))
    train_vocoder(base, out_dir=str(tmp_path / "a"), manifest=manifest, verbose=0)
    pulsed = dataclasses.replace(base, model=dataclasses.replace(base.model, pulse_input=True))
    summary = train_vocoder(pulsed, out_dir=str(tmp_path / "b"), manifest=manifest, verbose=0,
                            init_from=str(tmp_path / "a"))
    assert summary["step"] == 2
    assert json.loads((tmp_path / "b" / "backup" / "state.json").read_text())["warm_start"] == str(tmp_path / "a")
    donor = load_vocoder(str(tmp_path / "a")).model
    corpus = corpus_from_manifest(manifest, sample_rate=16000, min_samples=4 * FRONTEND.hop_length)
    sampler = WindowSampler(corpus, frontend=FRONTEND, window_frames=4, context=2, batch_size=2, seed=0,
                            history=history_frames(donor.receptive_field().samples, FRONTEND.hop_length),
                            lpc_order=8, lpc_normalize=True, pulses=True)
    inputs, target = next(iter(window_dataset(sampler, model_config=pulsed.model)))
    assert inputs["pulses"].numpy().any()
    without = {k: v for k, v in inputs.items() if k != "pulses"}
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        target, donor(without)[:, -target.shape[1]:]).numpy()
    first = json.loads(open(tmp_path / "b" / "batches.jsonl").readline())
    assert first["step"] == 1
    np.testing.assert_allclose(first["loss"], expected, rtol=1e-4)
    wider = dataclasses.replace(pulsed, model=dataclasses.replace(pulsed.model, residual_channels=12))
    with pytest.raises(ConfigError, match="differs"):
        train_vocoder(wider, out_dir=str(tmp_path / "c"), manifest=manifest, verbose=0, init_from=str(tmp_path / "a"))


def test_time_budget_and_config_mismatch(manifest, tmp_path):
    config = _tiny_config(epochs=50, steps_per_epoch=2, sample_every=1, sample_seconds=0.05, full_history=False)
    summary = train_vocoder(config, out_dir=str(tmp_path / "r"), manifest=manifest, time_budget_min=1e-4,
                            verbose=0)
    assert summary["stopped"] == "time_budget" and summary["step"] < 100
    assert os.listdir(tmp_path / "r" / "tensorboard" / "samples")
    onset_weighted = dataclasses.replace(config, train=dataclasses.replace(
        config.train, start_share=0.5, onset_weight=4.0, onset_samples=32))
    summary = train_vocoder(onset_weighted, out_dir=str(tmp_path / "r"), manifest=manifest, time_budget_min=1e-4,
                            verbose=0)
    assert summary["stopped"] == "time_budget"
    assert "onset_weight: 4.0" in (tmp_path / "r" / "config.yaml").read_text()
    wider = dataclasses.replace(config, model=dataclasses.replace(config.model, residual_channels=16))
    with pytest.raises(SpeechkitError, match="residual_channels"):
        train_vocoder(wider, out_dir=str(tmp_path / "r"), manifest=manifest, verbose=0)
    other = _tiny_config(learning_rate=0.5)
    os.makedirs(tmp_path / "s")
    (tmp_path / "s" / "config.yaml").write_text("model: {}\n")
    with pytest.raises(SpeechkitError, match="different config"):
        train_vocoder(other, out_dir=str(tmp_path / "s"), manifest=manifest, verbose=0)


def test_too_many_speakers_is_an_error(manifest, tmp_path):
    config = _tiny_config()
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, num_speakers=1))
    with pytest.raises(SpeechkitError, match="speakers"):
        train_vocoder(config, out_dir=str(tmp_path / "t"), manifest=manifest, verbose=0)


@pytest.mark.parametrize("name", ["wavenet-mini", "wavenet-mel", "wavenet-uncond"])
def test_presets_load(name):
    config = load_vocoder_config(os.path.join(MODELS, f"{name}.yaml"))
    assert config.frontend.kind == "mel" and not config.frontend.normalize
    assert config.model.hop_length == config.frontend.hop_length == 160
    if name == "wavenet-mini":
        assert config.model.residual_channels == 32 and config.model.gate_channels == 32
    if name == "wavenet-mel":
        assert 24 <= config.model.num_layers <= 30
    if name == "wavenet-uncond":
        assert config.model.conditioning == "none" and config.model.num_speakers > 0


def test_preset_unknown_key_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  residual_channel: 32\n")
    with pytest.raises(ConfigError, match="residual_channel"):
        load_vocoder_config(str(path))
