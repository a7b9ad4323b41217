"""Text to speech: durations from alignments, the acoustic model, training, text handling, synthesis and export."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from speechkit import audio as audio_io
from speechkit.asr.align import TimedUnit, align_log_probs
from speechkit.cli import main
from speechkit.data.durations import character_durations, read_durations, tts_text
from speechkit.errors import ConfigError, ManifestError, TextError
from speechkit.frontend import FrontendConfig, log_mel, num_frames
from speechkit.runs import RunDir
from speechkit.text import Vocabulary
from speechkit.tts.config import AcousticModelConfig, TTSConfig
from speechkit.tts.data import pad_batch, plan_epoch
from speechkit.tts.griffinlim import griffinlim_numpy, griffinlim_tf
from speechkit.tts.model import AcousticModel, length_regulate
from speechkit.tts.synthesis import Synthesizer, load_synthesizer, synthesize_to_dir
from speechkit.tts.text import normalize_for_tts, split_text
from speechkit.tts.train import build_model, train_tts

FRESH = os.path.join(os.path.dirname(__file__), "_fresh_tf_check.py")
VOCAB = Vocabulary()
FRONTEND = FrontendConfig(kind="mel", normalize=False)
TINY_MODEL = dict(embedding_dim=32, encoder_layers=2, decoder_dim=32, decoder_layers=2, decoder_dilations=[1, 2],
                  predictor_dim=32, dropout=0.0)


def _tiny_config(**train):
    optimizer = dict(name="adam", learning_rate=3e-3, warmup_steps=0, schedule="constant", clipnorm=1.0)
    return TTSConfig.from_dict({"frontend": {"kind": "mel", "normalize": False}, "model": TINY_MODEL,
                                "train": {"batch_size": 3, "epochs": 2, "checkpoint_every": 2, "log_every": 1,
                                          "optimizer": optimizer, **train}})


# -- Durations -- #

def _alignment(text, spans, step=0.03):
    chars = tuple(TimedUnit(ch, a * step, b * step, 0.9) for ch, (a, b) in zip(text, spans))
    return type("A", (), {"text": text, "characters": chars})()


def test_durations_split_blanks_between_neighbours_and_sum_to_the_mel_length():
    alignment = _alignment("AB", [(2, 3), (7, 8)])
    durations = character_durations(alignment, 100, hop_seconds=0.01)
    # leading space to A's start (6 frames), A to the blank midpoint (15), B to its end, trailing space to 100.
    assert durations.tolist() == [6, 9, 9, 76]
    assert durations.sum() == 100


@pytest.mark.parametrize("frames", [1, 37, 250])
def test_durations_from_a_real_viterbi_alignment_sum_exactly(frames):
    text = "HI THERE"
    rng = np.random.default_rng(frames)
    ctc_frames = max(len(text) + 2, (frames + 2) // 3)
    classes = np.zeros(ctc_frames, np.int64)
    positions = np.sort(rng.choice(np.arange(1, ctc_frames - 1), len(text), replace=False)) if \
        ctc_frames - 2 >= len(text) else np.arange(len(text))
    classes[positions] = VOCAB.encode(text)
    lp = np.full((ctc_frames, VOCAB.size), np.log(0.1 / (VOCAB.size - 1)), np.float32)
    lp[np.arange(ctc_frames), classes] = np.log(0.9)
    alignment = align_log_probs(lp, text, vocabulary=VOCAB, frame_seconds=0.03)
    durations = character_durations(alignment, frames, hop_seconds=0.01)
    assert len(durations) == len(tts_text(text))
    assert durations.sum() == frames and durations.min() >= 0


def test_read_durations_checks_every_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"id": "a", "audio": "a.wav", "input": " A ", "durations": [1, 2, 3], "frames": 6})
                    + "\n" + json.dumps({"id": "b", "audio": "b.wav", "input": " B ", "durations": [1, 2], "frames": 3})
                    + "\n")
    with pytest.raises(ManifestError, match=r"d.jsonl:2: 2 durations"):
        read_durations(str(path))


# -- Model -- #

def test_length_regulator_repeats_each_character_for_its_frames():
    enc = tf.constant([[[1.0], [2.0], [3.0]], [[4.0], [5.0], [0.0]]])
    frames, position, _, lengths = length_regulate(enc, tf.constant([[2, 0, 3], [1, 1, 0]]))
    assert lengths.numpy().tolist() == [5, 2]
    assert frames.numpy()[..., 0].tolist() == [[1, 1, 3, 3, 3], [4, 5, 0, 0, 0]]
    np.testing.assert_allclose(position.numpy()[0], [0.25, 0.75, 1 / 6, 0.5, 5 / 6], atol=1e-6)


def test_padding_never_changes_an_utterance():
    model = AcousticModel(AcousticModelConfig(**TINY_MODEL), n_mels=8)
    model.build()
    alone, _, _ = model((tf.constant([[1, 5, 6, 1]]), tf.constant([[2, 3, 1, 2]])))
    padded, _, _ = model((tf.constant([[1, 5, 6, 1, 0, 0], [1, 7, 7, 7, 7, 1]]),
                          tf.constant([[2, 3, 1, 2, 0, 0], [3, 3, 3, 3, 3, 3]])))
    np.testing.assert_allclose(padded[0, :8].numpy(), alone[0].numpy(), atol=1e-5)
    assert np.all(padded[0, 8:].numpy() == 0)


def test_model_round_trips_a_keras_file(tmp_path):
    model = AcousticModel(AcousticModelConfig(**TINY_MODEL), n_mels=8)
    model.build()
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    tokens = tf.constant([[1, 9, 10, 1]])
    np.testing.assert_allclose(loaded.infer(tokens)[0].numpy(), model.infer(tokens)[0].numpy(), atol=1e-6)
    assert loaded.config == model.config


def _three_utterances(n_mels=80):
    """Three utterances whose mel is a fixed template per character with a ramp inside it: learnable exactly."""
    rng = np.random.default_rng(0)
    templates = rng.normal(-3.0, 4.0, (VOCAB.size, n_mels)).astype(np.float32)
    texts = [" HELLO THERE ", " HOW ARE YOU ", " GOOD DAY "]
    batch = []
    for text in texts:
        tokens = np.array(VOCAB.encode(text), np.int32)
        durations = rng.integers(2, 7, len(tokens)).astype(np.int32)
        mel = np.concatenate([templates[t] + np.linspace(-1, 1, d)[:, None] for t, d in zip(tokens, durations)])
        batch.append((tokens, durations, mel.astype(np.float32)))
    corpus = type("C", (), {})()
    corpus.tokens, corpus.durations, corpus.mels = ([b[i] for b in batch] for i in range(3))
    return pad_batch(corpus, [0, 1, 2])


def _mel_l1(model, data):
    (tokens, durations), (mel, lengths) = data
    return float(model.losses_for(tokens, durations, mel, lengths)[1])


def test_a_tiny_model_overfits_three_utterances():
    config = _tiny_config()
    model = build_model(config, seed=0)
    data = _three_utterances()
    untrained = _mel_l1(model, data)
    dataset = tf.data.Dataset.from_tensors(data).repeat()
    model.fit(dataset, steps_per_epoch=300, epochs=1, verbose=0, shuffle=False)
    trained = _mel_l1(model, data)
    assert untrained > 3.0, untrained
    assert trained < 1.0, (untrained, trained)
    (tokens, durations), _ = data
    log_d = model.encode(tokens)[1].numpy()
    mask = tokens > 0
    assert np.mean(np.abs(np.expm1(log_d[mask]) - durations[mask])) < 1.0


# -- Text -- #

@pytest.mark.parametrize("text, expected", [
    ("Dr. Smith paid $42 on the 3rd.", "DOCTOR SMITH PAID FORTY TWO DOLLARS ON THE THIRD"),
    ("Mr. & Mrs. Brown, No. 5", "MISTER AND MISSUS BROWN NUMBER FIVE"),
    ("It's 50% e.g. in 1850", "IT'S FIFTY PERCENT FOR EXAMPLE IN EIGHTEEN FIFTY"),
    ("Caf\u00e9 \u201cnaive\u201d 1.5", "CAFE NAIVE ONE POINT FIVE"),
])
def test_normalize_for_tts(text, expected):
    assert normalize_for_tts(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "...", "!?"])
def test_empty_text_is_an_error(text):
    with pytest.raises(TextError, match="nothing to say"):
        normalize_for_tts(text, source="line 3")


@pytest.mark.parametrize("text, bad", [("Stra\u00dfe", "\u00df"), ("5\u20ac or so \u20ac", "\u20ac"),
                                       ("hi \U0001F600", "\U0001F600"), ("\u4e2d", "\u4e2d")])
def test_unknown_characters_are_named(text, bad):
    with pytest.raises(TextError, match=f"cannot speak the character.*{bad}"):
        normalize_for_tts(text)


def test_long_text_is_split_at_sentences_then_phrases_then_words():
    text = ("Hello there. This sentence is long, with many phrases; it goes on and on, and on again. "
            "Short! " + "word " * 30)
    pieces = split_text(text, max_characters=40)
    assert pieces[:3] == ["HELLO THERE", "THIS SENTENCE IS LONG WITH MANY PHRASES", "IT GOES ON AND ON AND ON AGAIN"]
    assert "SHORT" in pieces
    assert all(0 < len(p) <= 40 for p in pieces)
    assert " ".join(pieces).split() == normalize_for_tts(text).split()


def test_a_word_longer_than_the_limit_is_an_error():
    with pytest.raises(TextError, match="longer than the model's limit"):
        split_text("a " + "x" * 50, max_characters=40)


# -- Griffin-Lim -- #

def test_griffinlim_inverts_the_front_end_mel():
    t = np.arange(8000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) * np.hanning(8000)).astype(np.float32)
    mel = log_mel(audio, config=FRONTEND).numpy()
    loud = mel.max(axis=1) > mel.max() - 20
    for wave in (griffinlim_numpy(mel, config=FRONTEND, iterations=16),
                 griffinlim_tf(mel, config=FRONTEND, iterations=16).numpy()):
        assert wave.shape == ((len(mel) - 1) * FRONTEND.hop_length,) and wave.dtype == np.float32
        again = log_mel(wave, config=FRONTEND).numpy()[:len(mel)]
        error = np.abs(again - mel)[loud][:, 4:40].mean()
        silence = np.abs(log_mel(np.zeros_like(wave), config=FRONTEND).numpy() - mel)[loud][:, 4:40].mean()
        assert error < 1.5 < silence, (error, silence)


# -- Training, synthesis, export -- #

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny TTS run trained on six short tone utterances (a manifest, their durations), plus its folder."""
    folder = tmp_path_factory.mktemp("tts")
    rng = np.random.default_rng(0)
    manifest, durations = [], []
    for i, text in enumerate(["AB", "BA CA", "ABC", "CAB AB", "A", "BC"]):
        samples = int(16000 * rng.uniform(0.3, 0.6))
        audio = (0.2 * np.sin(2 * np.pi * 300 * (i + 1) * np.arange(samples) / 16000)).astype(np.float32)
        path = folder / f"u{i}.wav"
        audio_io.save(str(path), audio)
        frames = int(num_frames(samples, FRONTEND))
        cuts = np.sort(rng.choice(np.arange(1, frames), len(text) + 1, replace=False))
        d = np.diff(np.concatenate([[0], cuts, [frames]]))
        manifest.append({"id": f"u{i}", "audio": path.name, "duration": samples / 16000, "text": text, "speaker": "1"})
        durations.append({"id": f"u{i}", "audio": str(path), "text": text, "input": tts_text(text),
                          "durations": d.tolist(), "frames": frames, "confidence": 0.9})
    (folder / "train.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
    (folder / "train.durations.jsonl").write_text("".join(json.dumps(d) + "\n" for d in durations))
    run = folder / "run"
    summary = train_tts(_tiny_config(), out_dir=str(run), manifest=str(folder / "train.jsonl"),
                        durations=str(folder / "train.durations.jsonl"), verbose=0)
    return folder, run, summary


def test_train_tts_writes_the_shared_run_layout(tiny_run):
    _, run, summary = tiny_run
    names = set(os.listdir(run))
    assert {"config.yaml", "model.keras", "DONE", "train_log.csv", "train_summary.json", "batches.jsonl",
            "tensorboard", "backup", "command.txt", "skipped.json"} <= names
    assert summary["step"] == 4 and summary["stopped"] == "epochs"
    assert RunDir(str(run)).load_config(TTSConfig) == _tiny_config()


def test_train_tts_resumes_and_extends_a_finished_run(tiny_run, tmp_path):
    folder, run, _ = tiny_run
    copy = tmp_path / "run"
    subprocess.run(["cp", "-r", str(run), str(copy)], check=True)
    summary = train_tts(_tiny_config(epochs=3), out_dir=str(copy), manifest=str(folder / "train.jsonl"),
                        durations=str(folder / "train.durations.jsonl"), verbose=0)
    assert summary["step"] == 6
    steps = [json.loads(line)["step"] for line in open(copy / "batches.jsonl")]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_plan_epoch_is_a_pure_function_with_full_batches():
    frames = list(range(10, 110, 10)) + [5]
    a = plan_epoch(frames, batch_size=3, seed=1, epoch=2)
    assert a == plan_epoch(frames, batch_size=3, seed=1, epoch=2)
    assert len(a) == 3 and all(len(b) == 3 for b in a) and len({i for b in a for i in b}) == 9
    assert a != plan_epoch(frames, batch_size=3, seed=1, epoch=3)


def test_synthesize_writes_wavs_and_a_listing(tiny_run, tmp_path):
    _, run, _ = tiny_run
    synth = load_synthesizer(str(run), griffinlim_iterations=4)
    listing = synthesize_to_dir(synth, ["Ab, ba.", "CA 1"], str(tmp_path))
    assert [item["normalized"] for item in listing] == [["AB BA"], ["CA ONE"]]
    for item in listing:
        audio = audio_io.load(str(tmp_path / item["wav"]))
        assert len(audio) / 16000 == pytest.approx(item["seconds"], abs=1e-3) and np.all(np.isfinite(audio))
    lines = (tmp_path / "synthesis.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["utt0001", "utt0002"]


def test_a_bad_line_fails_before_any_audio_is_written(tiny_run, tmp_path):
    _, run, _ = tiny_run
    synth = load_synthesizer(str(run), griffinlim_iterations=4)
    with pytest.raises(TextError, match=r"text 2: cannot speak.*'\\u00df'|text 2: cannot speak.*ß"):
        synthesize_to_dir(synth, ["AB", "Straße"], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_synthesizer_refuses_a_wavenet_that_is_missing(tiny_run):
    _, run, _ = tiny_run
    model = RunDir(str(run)).load_model(cls=AcousticModel)
    with pytest.raises(ConfigError, match="needs a trained WaveNet"):
        Synthesizer(model, config=_tiny_config(), vocoder="wavenet")


def test_cli_synthesize_errors(tiny_run, tmp_path, capsys):
    _, run, _ = tiny_run
    assert main(["synthesize", "", "--run", str(run), "--out", str(tmp_path / "o")]) == 1
    assert "nothing to say" in capsys.readouterr().err
    assert main(["synthesize", "A \u4e2d", "--run", str(run), "--out", str(tmp_path / "o")]) == 1
    assert "\u4e2d" in capsys.readouterr().err
    assert main(["synthesize", "--run", str(run), "--out", str(tmp_path / "o")]) == 2
    assert main(["synthesize", "AB", "--run", str(run), "--out", str(tmp_path / "o"), "--vocoder", "wavenet"]) == 2


def test_cli_synthesize_writes_one_text_to_an_audio_file(tiny_run, tmp_path, capsys):
    _, run, _ = tiny_run
    out = tmp_path / "new" / "hello.flac"
    assert main(["synthesize", "Ab, ba.", "--run", str(run), "--out", str(out), "--vocoder", "griffinlim",
                 "--griffinlim-iterations", "2"]) == 0
    assert "hello.flac: " in capsys.readouterr().out
    audio = audio_io.load(str(out))
    folder = load_synthesizer(str(run), griffinlim_iterations=2).synthesize("Ab, ba.")["audio"]
    assert audio.shape == folder.shape and not (tmp_path / "new" / "synthesis.jsonl").exists()
    (tmp_path / "lines.txt").write_text("AB\nBA\n")
    assert main(["synthesize", "--text-file", str(tmp_path / "lines.txt"), "--run", str(run), "--out",
                 str(tmp_path / "two.wav")]) == 2
    assert "holds 2 texts; give a folder" in capsys.readouterr().err and not (tmp_path / "two.wav").exists()


def test_a_packed_tts_model_synthesizes_from_the_cli_like_its_run(tiny_run, tmp_path, monkeypatch, capsys):
    folder, run, _ = tiny_run
    root = tmp_path / "models"
    monkeypatch.setenv("SPEECHKIT_MODELS", str(root))
    assert main(["models", "pack", str(run), "--name", "tts-mini", "--float16", "--probe",
                 str(folder / "train.jsonl")]) == 0
    assert "tts model" in capsys.readouterr().out
    card = json.loads((root / "tts-mini" / "card.json").read_text())
    assert card["family"] == "tts" and card["storage"] == "float16" and card["verification"]["passed"]
    assert card["verification"]["utterances"] == 4 and not (root / "tts-mini" / "model.keras").exists()
    assert main(["synthesize", "Ab, ba.", "--out", str(tmp_path / "released"), "--vocoder", "griffinlim",
                 "--griffinlim-iterations", "2"]) == 0
    assert main(["synthesize", "Ab, ba.", "--run", str(run), "--out", str(tmp_path / "run"),
                 "--vocoder", "griffinlim", "--griffinlim-iterations", "2"]) == 0
    released = audio_io.load(str(tmp_path / "released" / "utt0001.wav"))
    trained = audio_io.load(str(tmp_path / "run" / "utt0001.wav"))
    assert released.shape == trained.shape and np.max(np.abs(released - trained)) < 0.05
    assert main(["eval-tts", "--model", "tts-mini", "--manifest", str(folder / "train.jsonl"), "--out",
                 str(tmp_path / "eval"), "--limit", "1", "--plots", "0", "--asr", "none",
                 "--vocoder", "griffinlim", "--griffinlim-iterations", "2"]) == 0
    assert main(["synthesize", "AB", "--model", "tts-mini", "--run", str(run), "--out", str(tmp_path / "x")]) == 2
    assert "not both" in capsys.readouterr().err


def test_tts_pack_verification_fails_for_another_models_weights(tiny_run):
    from speechkit.models import PROBE_TEXTS, _verify_tts
    from speechkit.tts.synthesis import load_acoustic_model

    _, run, _ = tiny_run
    trained, config = load_acoustic_model(str(run))
    other = build_model(config, seed=7)
    assert _verify_tts((trained, config), (trained, config), PROBE_TEXTS)["passed"]
    assert not _verify_tts((trained, config), (other, config), PROBE_TEXTS)["passed"]


@pytest.mark.slow
def test_exported_tts_round_trips_in_a_fresh_process(tiny_run, tmp_path):
    from speechkit.export.tts import export_tts

    _, run, _ = tiny_run
    export = tmp_path / "export"
    info = export_tts(str(run), str(export), griffinlim_iterations=8)
    assert info["signatures"]["serving_default"]["inputs"] == ["text string []"]
    text = "Ab, ca!"
    np.savez(str(tmp_path / "in.npz"), text=np.array(text))
    jobs = [{"kind": "saved_model", "path": str(export), "signature": "serving_default",
             "inputs": str(tmp_path / "in.npz"), "outputs": str(tmp_path / "out.npz")}]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    done = subprocess.run([sys.executable, FRESH, str(tmp_path / "jobs.json")], capture_output=True, text=True,
                          cwd=str(tmp_path), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(str(tmp_path / "out.npz")) as out:
        waveform, mel = out["waveform"], out["log_mel"]
    synth = load_synthesizer(str(run))
    expected_mel = synth.mel(normalize_for_tts(text))
    np.testing.assert_allclose(mel, expected_mel, atol=1e-4)
    expected = griffinlim_tf(expected_mel, config=FRONTEND, iterations=8).numpy()
    assert waveform.dtype == np.float32 and waveform.shape == expected.shape == ((len(mel) - 1) * 160,)
    np.testing.assert_allclose(waveform, expected, atol=1e-3)


# -- Evaluation -- #

def test_mcd_dtw_forgives_timing_but_not_spectra():
    from speechkit.tts.evaluate import mcd_dtw

    rng = np.random.default_rng(0)
    reference = np.repeat(rng.normal(-3, 3, (20, 80)), 3, axis=0)
    stretched = np.repeat(reference[::3], 5, axis=0)
    assert mcd_dtw(reference, reference) == 0.0
    assert mcd_dtw(reference, stretched) < 1e-9
    assert mcd_dtw(reference, reference + rng.normal(0, 1, reference.shape)) > 5.0


def test_eval_tts_writes_a_report(tiny_run, tmp_path):
    folder, run, _ = tiny_run
    out = tmp_path / "eval"
    assert main(["eval-tts", "--run", str(run), "--manifest", str(folder / "train.jsonl"), "--out", str(out),
                 "--limit", "2", "--plots", "1", "--asr", "none", "--vocoder", "griffinlim",
                 "--griffinlim-iterations", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["utterances"] == 2 and report["summary"]["rtf"] > 0
    assert (out / report["utterances"][0]["png"]).exists() and "png" not in report["utterances"][1]
    assert all((out / r["wav"]).exists() and r["mcd_dtw_mel_db"] > 0 for r in report["utterances"])


# -- WaveNet path -- #

def test_wavenet_path_conditions_like_the_exported_vocoder(tiny_run):
    from speechkit.export.vocoder import VocoderServingModule
    from speechkit.vocoder.generation import Vocoder
    from speechkit.vocoder.wavenet import WaveNet, WaveNetConfig

    _, run, _ = tiny_run
    wavenet = WaveNet(WaveNetConfig(layers_per_stack=3, stacks=2, residual_channels=8, gate_channels=8,
                                    skip_channels=8, head_channels=16, cond_channels=8), FRONTEND)
    wavenet.build()
    rng = np.random.default_rng(3)
    for w in wavenet.weights:
        w.assign(rng.normal(0.0, 0.4, w.shape).astype(np.float32))
    model = RunDir(str(run)).load_model(cls=AcousticModel)
    synth = Synthesizer(model, config=_tiny_config(), vocoder="wavenet", wavenet=Vocoder(wavenet, run_dir="tiny"))
    mel = synth.mel("AB CA")
    ours = synth.vocode(mel, temperature=0.0)
    served = VocoderServingModule(wavenet, jit_compile=False).from_mel(
        log_mel=tf.constant(mel[None]), temperature=tf.constant(0.0), seed=tf.constant(0))["waveform"][0].numpy()
    assert ours.shape == (len(mel) * FRONTEND.hop_length,)
    np.testing.assert_allclose(ours, served, atol=1e-5)


# -- Durations with the released ASR model -- #

@pytest.mark.slow
def test_compute_durations_with_ds2_mini_keeps_read_speech_and_drops_wrong_text(tmp_path):
    from speechkit.asr.inference import load_run
    from speechkit.data.durations import compute_durations
    from speechkit.models import resolve_model

    sentences = ["THE WEATHER WAS FINE AND WARM", "SHE OPENED THE DOOR SLOWLY"]
    lines = []
    for i, text in enumerate(sentences):
        wav = tmp_path / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us+m3", "-w", str(wav), text.lower()], check=True, timeout=60)
        audio = audio_io.load(str(wav))
        audio_io.save(str(wav), audio + np.random.default_rng(i).normal(0, 1e-3, audio.shape).astype(np.float32))
        lines.append({"id": f"s{i}", "audio": wav.name, "duration": len(audio) / 16000, "text": text, "speaker": "1"})
    lines.append(dict(lines[0], id="wrong", text="COMPLETELY DIFFERENT WORDS ARE HERE INSTEAD"))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    recognizer = load_run(resolve_model("ds2-mini", family="asr"))
    out = tmp_path / "d.jsonl"
    report = compute_durations(recognizer, str(manifest), str(out), frontend=FRONTEND, min_confidence=0.2)
    assert report["kept"] == 2 and report["skipped"] == {"low_confidence": 1}
    assert json.loads((tmp_path / "d.jsonl.report.json").read_text())["skipped_items"]["items"]["low_confidence"]
    for item in read_durations(str(out)):
        frames = int(num_frames(len(audio_io.load(item["audio"])), FRONTEND))
        assert item["durations"].sum() == frames == item["frames"] and item["confidence"] >= 0.2
        assert len(item["durations"]) == len(tts_text(item["text"]))


def test_the_preset_predicts_exactly_the_wavenet_mini_conditioning_features():
    from speechkit.vocoder.config import VocoderConfig

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tts = TTSConfig.load(os.path.join(repo, "models", "tts-mini.yaml"))
    assert tts.frontend == VocoderConfig.load(os.path.join(repo, "models", "wavenet-mini.yaml")).frontend
    with pytest.raises(ConfigError, match="normalize: false"):
        TTSConfig.from_dict({"frontend": {"kind": "mel", "normalize": True}})


def test_the_released_vocoder_is_the_default_mel_inversion(tmp_path, monkeypatch):
    from argparse import Namespace

    from speechkit.cli.tts import _vocoder_choice

    monkeypatch.setenv("SPEECHKIT_MODELS", str(tmp_path))
    args = Namespace(vocoder=None, vocoder_model=None, vocoder_run=None)
    assert _vocoder_choice(args, "synthesize") == ("griffinlim", None)
    (tmp_path / "wavenet-mini").mkdir()
    (tmp_path / "wavenet-mini" / "card.json").write_text(json.dumps({"name": "wavenet-mini", "family": "vocoder"}))
    assert _vocoder_choice(args, "synthesize") == ("wavenet", str(tmp_path / "wavenet-mini"))
    assert _vocoder_choice(Namespace(vocoder="griffinlim", vocoder_model=None, vocoder_run=None),
                           "synthesize") == ("griffinlim", None)
