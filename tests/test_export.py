"""SavedModel and TFLite exports: parity with the Keras models in a fresh TensorFlow-only process, CLI."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from _tiny_asr import randomise_weights
from speechkit import audio as audio_io
from speechkit.asr.beam import DecodeConfig, load_decode_config
from speechkit.asr.decoding import greedy_decode
from speechkit.asr.deepspeech2 import DeepSpeech2Config, build_deepspeech2
from speechkit.data.manifest import Utterance, write_manifest
from speechkit.export.asr import ExportError, export_asr, greedy_transcripts, load_exported_asr
from speechkit.export.vocoder import export_vocoder, load_exported_vocoder
from speechkit.errors import ConfigError, RunError
from speechkit.frontend import FrontendConfig, log_mel, mu_law_decode
from speechkit.runs import RunDir
from speechkit.text import Vocabulary

VOCAB = Vocabulary()
FRESH = os.path.join(os.path.dirname(__file__), "_fresh_tf_check.py")
TEXTS = ["HELLO WORLD", "THE CAT SAT ON THE MAT TODAY", "YES"]


# -- Fixtures -- #

@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Three utterances of different lengths spoken by espeak-ng (16 kHz float32), with their wav paths."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    folder = tmp_path_factory.mktemp("speech")
    paths, audios = [], []
    for i, text in enumerate(TEXTS):
        path = str(folder / f"u{i}.wav")
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", path, text.lower()], check=True, capture_output=True)
        paths.append(path)
        audios.append(audio_io.load(path))
    assert len({len(a) for a in audios}) == 3
    return paths, audios


def _asr_run(path, model_config, frontend, seed):
    run = RunDir(path, create=True)
    network = build_deepspeech2(model_config, frontend=frontend, vocab_size=VOCAB.size)
    randomise_weights(network, seed)
    run.save_model(network)
    run.save_config({"frontend": frontend.to_dict(), "model": model_config.to_dict()})
    run.save_vocabulary(VOCAB)
    return path


@pytest.fixture(scope="module")
def asr_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("asr_runs")
    bidirectional = _asr_run(str(root / "bi"), DeepSpeech2Config(
        conv_filters=(4,), conv_kernels=((5, 7),), conv_strides=((2, 2),), rnn_layers=2, rnn_units=8, fc_units=8),
        FrontendConfig(kind="spectrogram"), seed=1)
    RunDir(bidirectional).save_decode_config(DecodeConfig(decoder="beam", alpha=0.7, beta=1.5, lm=str(root / "lm")))
    streaming = _asr_run(str(root / "streaming"), DeepSpeech2Config(
        conv_filters=(4,), conv_kernels=((5, 7),), conv_strides=((3, 2),), rnn_layers=2, rnn_units=8,
        bidirectional=False, lookahead=3), FrontendConfig(kind="mel", n_mels=20), seed=2)
    return {"bi": bidirectional, "streaming": streaming, "lm": str(root / "lm")}


def _fresh(tmp_path, jobs):
    """Run ``jobs`` in a new interpreter that may import only TensorFlow and NumPy; return their outputs."""
    for i, job in enumerate(jobs):
        np.savez(str(tmp_path / f"in{i}.npz"), **job.pop("arrays"))
        job.update(inputs=str(tmp_path / f"in{i}.npz"), outputs=str(tmp_path / f"out{i}.npz"))
    spec = tmp_path / "jobs.json"
    spec.write_text(json.dumps(jobs))
    done = subprocess.run([sys.executable, FRESH, str(spec)], capture_output=True, text=True, cwd=str(tmp_path),
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = []
    for job in jobs:
        with np.load(job["outputs"]) as data:
            results.append({name: data[name] for name in data.files})
    return results


def _json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _padded(audios):
    lengths = np.array([len(a) for a in audios], np.int32)
    batch = np.zeros((len(audios), lengths.max()), np.float32)
    for row, a in enumerate(audios):
        batch[row, :len(a)] = a
    return batch, lengths


# -- In-graph greedy decoding -- #

def _one_hot(ids, frames_per_id=2):
    rows = np.repeat(np.asarray(ids), frames_per_id)
    log_probs = np.full((len(rows), VOCAB.size), -9.0, np.float32)
    log_probs[np.arange(len(rows)), rows] = 0.0
    return log_probs


def test_greedy_transcripts_equal_greedy_decode():
    rng = np.random.default_rng(0)
    space = VOCAB.encode(" ")[0]
    cases = [
        _one_hot(VOCAB.encode("HEL") + [0] + VOCAB.encode("LO") + VOCAB.encode("LO")),
        _one_hot([space, 0, space] + VOCAB.encode("A") + [space, space, 0, space] + VOCAB.encode("B") + [space]),
        _one_hot([0, 0, 0]),
        rng.normal(0, 2, (40, VOCAB.size)).astype(np.float32),
        rng.normal(0, 2, (23, VOCAB.size)).astype(np.float32),
    ]
    frames = max(len(c) for c in cases)
    batch = np.stack([np.pad(c, [(0, frames - len(c)), (0, 0)], constant_values=5.0) for c in cases])
    lengths = np.array([len(c) for c in cases], np.int32)
    labels = tf.constant(VOCAB.labels)
    got = [t.decode() for t in greedy_transcripts(tf.constant(batch), tf.constant(lengths), labels).numpy()]
    assert got == [greedy_decode(c, VOCAB) for c in cases]
    assert got[:3] == ["HELLOLO", "A B", ""]
    shorter = greedy_transcripts(tf.constant(batch), tf.constant(lengths - 10), labels).numpy()
    assert [t.decode() for t in shorter[3:]] == [greedy_decode(c[:-10], VOCAB) for c in cases[3:]]


# -- ASR -- #

def test_asr_saved_model_matches_keras_in_fresh_process(asr_runs, speech, tmp_path):
    from speechkit.asr.inference import load_run

    _, audios = speech
    out = str(tmp_path / "export")
    info = export_asr(asr_runs["bi"], out)
    assert os.path.isfile(os.path.join(out, "saved_model.pb")) and info["signature"] == "serving_default"
    assert _json(os.path.join(out, "vocabulary.json")) == VOCAB.to_dict()
    tuned = load_decode_config(out)
    assert (tuned.decoder, tuned.alpha, tuned.beta, tuned.lm) == ("beam", 0.7, 1.5, asr_runs["lm"])
    assert _json(os.path.join(out, "export.json"))["lm"] == asr_runs["lm"]

    recognizer = load_run(asr_runs["bi"])
    reference = recognizer.log_probs(audios)
    waveform, lengths = _padded(audios)
    (got,) = _fresh(tmp_path, [{"kind": "saved_model", "path": out, "signature": "serving_default",
                                "arrays": {"waveform": waveform, "lengths": lengths}}])
    assert got["log_probs"].shape[:2] == (3, max(len(r) for r in reference))
    np.testing.assert_array_equal(got["output_lengths"], [len(r) for r in reference])
    for row, ref in enumerate(reference):
        np.testing.assert_allclose(got["log_probs"][row, :len(ref)], ref, atol=1e-4, rtol=0)
    texts = [t.decode() for t in got["transcripts"]]
    assert texts == [greedy_decode(ref, VOCAB) for ref in reference]
    assert any(texts), "random weights should spell something, or the decoding check proves little"


def test_streaming_tflite_matches_saved_model_in_fresh_process(asr_runs, speech, tmp_path):
    _, audios = speech
    out = str(tmp_path / "export")
    info = export_asr(asr_runs["streaming"], out, tflite=True)
    assert info["tflite_max_abs_diff"] < 1e-4 and not os.path.exists(os.path.join(out, "decode.yaml"))
    waveform, lengths = _padded(audios)
    arrays = {"waveform": waveform, "lengths": lengths}
    saved, lite = _fresh(tmp_path, [
        {"kind": "saved_model", "path": out, "signature": "serving_default", "arrays": dict(arrays)},
        {"kind": "tflite", "path": os.path.join(out, "model.tflite"), "signature": "serving_default",
         "arrays": dict(arrays)}])
    for row in range(3):
        n = int(saved["output_lengths"][row])
        np.testing.assert_array_equal(lite[f"output_lengths_{row}"], [n])
        assert np.all(np.isfinite(lite[f"log_probs_{row}"]))
        np.testing.assert_allclose(lite[f"log_probs_{row}"][0], saved["log_probs"][row, :n], atol=1e-4, rtol=0)


def test_exported_recognizer_errors(tmp_path):
    with pytest.raises(ExportError, match="saved_model.pb"):
        load_exported_asr(str(tmp_path))


def test_export_reads_the_run_through_run_dir(tmp_path):
    with pytest.raises(RunError, match="no such run directory"):
        export_asr(str(tmp_path / "nope"), str(tmp_path / "out"))
    partial = RunDir(tmp_path / "partial", create=True)
    partial.save_vocabulary(VOCAB)
    with pytest.raises(RunError, match=r"partial/model\.keras: missing"):
        export_asr(partial.path, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


# -- Vocoder -- #

@pytest.fixture(scope="module")
def vocoder_run(tmp_path_factory):
    from speechkit.vocoder.wavenet import WaveNet, WaveNetConfig

    run = RunDir(tmp_path_factory.mktemp("vocoder_run"))
    frontend = FrontendConfig(kind="mel", normalize=False)
    config = WaveNetConfig(layers_per_stack=3, stacks=2, residual_channels=8, gate_channels=8, skip_channels=8,
                           head_channels=16, cond_channels=8, num_speakers=2, speaker_channels=4)
    model = WaveNet(config, frontend)
    model.build()
    rng = np.random.default_rng(3)
    for w in model.weights:
        w.assign(rng.normal(0.0, 0.4, w.shape).astype(np.float32))
    run.save_model(model)
    run.save_config({"frontend": frontend.to_dict(), "model": config.to_dict()})
    run.save_speakers(["spk_a", "spk_b"])
    return run.path


def test_vocoder_saved_model_matches_generator_in_fresh_process(vocoder_run, speech, tmp_path):
    """Both signatures at temperature 0 equal the in-process TF generation loop; sampling follows the seed.

    The loop is exported without XLA here to keep the test fast; the CLI test covers the default
    XLA-compiled export against ``Vocoder.vocode(backend="tf")``.
    """
    from speechkit.vocoder.generation import TFGenerator, load_vocoder
    from speechkit.vocoder.wavenet import silence_class

    vocoder = load_vocoder(vocoder_run)
    frontend, model = vocoder.frontend, vocoder.model
    generator = TFGenerator(model, jit_compile=False)
    speaker_vector = model.speaker_vector(np.array([1], np.int32)).numpy()

    def generate(cond, samples):
        classes, _ = generator.run(np.full([1], silence_class(frontend)), model.initial_state(1), samples,
                                   noise=np.zeros((1, samples), np.float32), temperature=0.0, cond=cond,
                                   speaker_vector=speaker_vector)
        return mu_law_decode(classes, frontend.mu).numpy()[0]

    heads = [a[2000:2000 + n] for a, n in zip(speech[1], (1500, 900))]
    reference = [generate(vocoder.conditioning(h)[None], len(h)) for h in heads]
    mel = log_mel(heads[1][None], config=frontend).numpy()
    context = model.config.cond_context
    edge = np.concatenate([np.repeat(mel[:, :1], context, 1), mel, np.repeat(mel[:, -1:], context, 1)], axis=1)
    mel_reference = generate(model.upsample(edge).numpy(), mel.shape[1] * frontend.hop_length)

    out = str(tmp_path / "export")
    export_vocoder(vocoder_run, out, jit_compile=False)
    assert _json(os.path.join(out, "speakers.json")) == ["spk_a", "spk_b"]
    waveform, lengths = _padded(heads)
    common = {"speaker": np.array([1, 1], np.int32), "temperature": np.float32(0.0), "seed": np.int32(5)}
    copy, from_mel = _fresh(tmp_path, [
        {"kind": "saved_model", "path": out, "signature": "vocode_waveform",
         "arrays": {"waveform": waveform, "lengths": lengths, **common}},
        {"kind": "saved_model", "path": out, "signature": "serving_default",
         "arrays": {"log_mel": mel, "speaker": common["speaker"][:1], "temperature": common["temperature"],
                    "seed": common["seed"]}}])
    for row, ref in enumerate(reference):
        np.testing.assert_allclose(copy["waveform"][row, :len(ref)], ref, atol=1e-4, rtol=0)
        assert np.all(copy["waveform"][row, len(ref):] == 0.0)
    assert min(np.std(r) for r in reference) > 1e-3
    assert from_mel["waveform"].shape == (1, len(mel_reference))
    np.testing.assert_allclose(from_mel["waveform"][0], mel_reference, atol=1e-4, rtol=0)

    exported = load_exported_vocoder(out)
    a, b = (exported.vocode(heads[1:], temperature=1.0, seed=7, speaker="spk_a")[0] for _ in range(2))
    c = exported.vocode(heads[1:], temperature=1.0, seed=8, speaker="spk_a")[0]
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    with pytest.raises(ConfigError, match="speaker"):
        exported.vocode(heads, temperature=0.0)


# -- Command line -- #

@pytest.mark.slow
def test_cli_export_transcribe_vocode_and_check(asr_runs, vocoder_run, speech, tmp_path, capsys, monkeypatch):
    from speechkit.cli import main

    paths, audios = speech
    root = tmp_path / "export"
    assert main(["export", "asr", asr_runs["streaming"], "--out", str(root / "asr")]) == 0
    assert main(["export", "vocoder", vocoder_run, "--out", str(root / "vocoder")]) == 0
    capsys.readouterr()

    assert main(["transcribe", "--saved-model", str(root / "asr"), "--decoder", "greedy"] + paths[:2]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    exported = load_exported_asr(str(root / "asr"))
    assert lines == [f"{p}\t{t}" for p, t in zip(paths[:2], exported.transcribe(audios[:2]))]
    monkeypatch.setenv("SPEECHKIT_MODELS", str(tmp_path / "no-released-models"))
    assert main(["transcribe"] + paths[:1]) == 2  # no run, no --model, no released model
    monkeypatch.delenv("SPEECHKIT_MODELS")

    wav = tmp_path / "short.wav"
    audio_io.save(str(wav), audios[2][1000:1600])
    assert main(["vocode", "--saved-model", str(root / "vocoder"), "--mel-from", str(wav), "--out",
                 str(tmp_path / "out.wav"), "--temperature", "0", "--speaker", "spk_a"]) == 0
    assert len(audio_io.load(str(tmp_path / "out.wav"))) == 600

    manifest = tmp_path / "test.jsonl"
    write_manifest(str(manifest), [Utterance(id=f"u{i}", audio=p, duration=len(a) / 16000, text=t, speaker="s")
                                   for i, (p, a, t) in enumerate(zip(paths, audios, TEXTS))])
    capsys.readouterr()
    args = ["export", "check", str(root), "--manifest", str(manifest), "--asr-run", asr_runs["streaming"],
            "--vocoder-run", vocoder_run, "--vocoder-seconds", "0.05"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "max |SavedModel - Keras| log-prob" in printed and "exports match" in printed
    report = _json(root / "check.json")
    assert report["passed"] and report["asr"]["utterances"] == 3 and report["vocoder"]["samples"] == 2 * 800
    other = _asr_run(str(tmp_path / "other"), DeepSpeech2Config(
        conv_filters=(4,), conv_kernels=((5, 7),), conv_strides=((3, 2),), rnn_layers=2, rnn_units=8,
        bidirectional=False, lookahead=3), FrontendConfig(kind="mel", n_mels=20), seed=9)
    assert main(args[:5] + ["--asr-run", other]) == 1
    assert "export check failed: ASR log-probs differ" in capsys.readouterr().err
