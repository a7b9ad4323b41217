"""Streaming recognition: chunked == whole-utterance, bounded lookahead, exports, saved_model_cli, CLI.

The model has the layout of ``models/ds2-streaming.yaml`` (kernels, strides, right context, lookahead, mel
front end with fixed normalisation); only the filters and units are shrunk, and the weights are random
and of order one, so that every path shapes the output.
"""

import dataclasses
import io
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr

from _tiny_asr import randomise_weights
from speechkit import audio as audio_io
from speechkit.asr.decoding import greedy_decode
from speechkit.asr.deepspeech2 import build_deepspeech2
from speechkit.asr.inference import load_run
from speechkit.asr.streaming import (GreedyPath, check_streamable, frontend_with_statistics, lookahead_ms,
                                     lookahead_samples, pcm16_chunks)
from speechkit.asr.train import load_train_config, train
from speechkit.config import load_yaml
from speechkit.cli import main
from speechkit.data.manifest import Utterance, write_manifest
from speechkit.errors import ConfigError, ExportError, SpeechkitError
from speechkit.export.asr import export_asr
from speechkit.export.streaming import ExportedStream, TFLiteStream
from speechkit.frontend import FrontendConfig
from speechkit.runs import RunDir
from speechkit.text import Vocabulary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESET = os.path.join(ROOT, "models", "ds2-streaming.yaml")
RATE = 16000
# Chunk sizes in samples: one 10 ms hop, not aligned with frames (37, 333, 1111), 160 ms, longer than the audio.
CHUNKS = [37, 160, 333, 1111, 2560, 10 ** 6]


def _preset_layout():
    """The preset's model with filters and units shrunk, and its front end with made-up statistics."""
    preset = load_train_config(PRESET)
    config = dataclasses.replace(preset.model, conv_filters=(4, 4), rnn_units=12)
    rng = np.random.default_rng(3)
    frontend = preset.frontend.with_statistics(rng.normal(-4.0, 1.0, 80), rng.uniform(1.5, 3.0, 80))
    return config, frontend


def _speech(seconds=2.2, seed=0):
    """Espeak-ng speech when installed, else a noise burst train; float32 at 16 kHz."""
    if shutil.which("espeak-ng"):
        raw = subprocess.run(["espeak-ng", "-v", "en-us", "--stdout", "streaming recognition of speech"],
                             check=True, capture_output=True).stdout
        audio = _decode_wav(raw)
    else:
        rng = np.random.default_rng(seed)
        n = int(seconds * RATE)
        audio = (0.1 * rng.standard_normal(n) * np.sin(np.linspace(0, 25, n)) ** 2).astype(np.float32)
    return audio[:int(seconds * RATE)]


def _decode_wav(raw):
    data, rate = sf.read(io.BytesIO(raw), dtype="float32")
    return np.asarray(soxr.resample(data, rate, RATE) if rate != RATE else data, np.float32)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("stream") / "run")
    config, frontend = _preset_layout()
    network = build_deepspeech2(config, frontend=frontend, vocab_size=Vocabulary().size)
    randomise_weights(network, 7)
    rundir = RunDir(folder, create=True)
    rundir.save_model(network)
    rundir.save_config({"frontend": frontend.to_dict(), "model": config.to_dict()})
    rundir.save_vocabulary(Vocabulary())
    return folder


@pytest.fixture(scope="module")
def recognizer(run):
    return load_run(run)


@pytest.fixture(scope="module")
def audio():
    return _speech()


@pytest.fixture(scope="module")
def export(run, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("stream_export") / "export")
    export_asr(run, out, tflite=True)
    return out


def _stream_all(stream, audio, chunk):
    for start in range(0, len(audio), chunk):
        stream.feed(audio[start:start + chunk])
    return stream.finish()


# -- The preset and its lookahead -- #

def test_preset_lookahead_is_computed_from_its_layers_and_stated():
    preset = load_train_config(PRESET)
    assert not preset.model.bidirectional and preset.frontend.normalization == "fixed"
    # 8 lookahead frames x 3 feature frames + 2 frames of conv 1 right context; conv 2 is causal.
    assert preset.model.lookahead_frames == 8 * 3 + 2
    assert lookahead_samples(preset.model, preset.frontend) == 26 * 160 + 400
    assert lookahead_ms(preset.model, preset.frontend) == 285.0 <= 300.0
    with open(PRESET, encoding="utf-8") as f:
        assert "285 ms" in f.read()
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        assert "285 ms" in f.read()
    # The old symmetric padding: 5 future frames in each convolution (the second in 30 ms frames).
    old = dataclasses.replace(preset.model, conv_right_context=())
    assert old.lookahead_frames == 8 * 3 + 5 + 5 * 3
    assert lookahead_ms(dataclasses.replace(preset.model, bidirectional=True), preset.frontend) == float("inf")


def test_models_that_cannot_stream_are_refused_with_the_reasons():
    config, frontend = _preset_layout()
    with pytest.raises(ConfigError, match="bidirectional"):
        check_streamable(dataclasses.replace(config, bidirectional=True), frontend)
    with pytest.raises(ConfigError, match="normalization: utterance"):
        check_streamable(config, FrontendConfig(kind="mel"))
    with pytest.raises(ConfigError, match="no statistics"):
        check_streamable(config, FrontendConfig(kind="mel", normalization="fixed"))
    check_streamable(config, frontend)
    check_streamable(config, FrontendConfig(kind="mel", normalize=False))


# -- Keras: chunked == whole utterance -- #

@pytest.mark.parametrize("chunk", CHUNKS)
def test_chunked_stream_equals_whole_utterance(recognizer, audio, chunk):
    reference = recognizer.log_probs([audio])[0]
    expected = recognizer.transcribe([audio])[0]
    stream = recognizer.stream()
    final = _stream_all(stream, audio, chunk)
    assert stream.log_probs.shape == reference.shape
    np.testing.assert_allclose(stream.log_probs, reference, atol=1e-4)
    assert final == expected and expected


def test_partial_transcripts_grow_and_the_stream_ends_once(recognizer, audio):
    stream = recognizer.stream()
    frames = []
    for start in range(0, len(audio), 2560):
        partial = stream.feed(audio[start:start + 2560])
        frames.append(len(stream.log_probs))
        assert partial == greedy_decode(stream.log_probs, recognizer.vocabulary)
    assert frames == sorted(frames) and frames[-1] > 0
    assert stream.feed(np.zeros(0, np.float32)) == stream.partial
    stream.finish()
    with pytest.raises(SpeechkitError, match="finished"):
        stream.feed(audio[:10])


def test_output_frames_become_final_exactly_when_their_lookahead_has_arrived(recognizer, audio):
    """Before ``finish``, a stream emits frame j as soon as the audio reaches j * 480 + lookahead, not later."""
    model = recognizer.streaming_model()
    unit = model.frontend.hop_length * model.config.time_reduction_factor
    for cut in (4559, 4560, 4561, 9000, 12345):
        stream = recognizer.stream()
        stream.feed(audio[:cut])
        ready = sum(1 for j in range(1000) if j * unit + model.lookahead_samples <= cut)
        assert len(stream.log_probs) == ready, cut


@pytest.mark.parametrize("cut", [9000, 17777])
def test_audio_after_the_lookahead_window_cannot_change_earlier_outputs(recognizer, audio, cut):
    """Whole-utterance inference: changing audio from sample ``cut`` on keeps every frame whose lookahead ends first."""
    model = recognizer.streaming_model()
    unit = model.frontend.hop_length * model.config.time_reduction_factor
    changed = audio.copy()
    changed[cut:] = np.random.default_rng(1).uniform(-0.5, 0.5, len(audio) - cut)
    before = recognizer.log_probs([audio])[0]
    after = recognizer.log_probs([changed])[0]
    safe = sum(1 for j in range(len(before)) if j * unit + model.lookahead_samples <= cut)
    assert 0 < safe < len(before)
    np.testing.assert_allclose(after[:safe], before[:safe], atol=1e-6)
    # The bound is tight: the first frame that reads 10 ms of the new audio changes (random weights of order
    # one saturate many clipped ReLUs, so the change is small, but well above the float noise of 1e-6).
    first_reading = next(j for j in range(len(before)) if j * unit + model.lookahead_samples >= cut + 160)
    assert np.abs(after[first_reading] - before[first_reading]).max() > 5e-6
    assert np.abs(after[-1] - before[-1]).max() > 1e-4


# -- Exports: SavedModel and TFLite -- #

@pytest.mark.slow
@pytest.mark.parametrize("kind", ["saved_model", "tflite"])
def test_exported_stream_equals_whole_utterance_and_ignores_the_future(recognizer, export, audio, kind):
    make = (lambda: ExportedStream(export)) if kind == "saved_model" else (lambda: TFLiteStream(export))
    reference = recognizer.log_probs([audio])[0]
    for chunk in (333, 2560):
        stream = make()
        final = _stream_all(stream, audio, chunk)
        assert stream.log_probs.shape == reference.shape
        np.testing.assert_allclose(stream.log_probs, reference, atol=1e-4)
        assert final == recognizer.transcribe([audio])[0]
    cut = 12000
    changed = audio.copy()
    changed[cut:] = 0.3
    first, second = make(), make()
    first.feed(audio[:cut])
    second.feed(changed[:cut])
    emitted = len(first.log_probs)
    first.feed(audio[cut:])
    second.feed(changed[cut:])
    first.finish()
    second.finish()
    np.testing.assert_allclose(second.log_probs[:emitted], first.log_probs[:emitted], atol=1e-6)
    np.testing.assert_allclose(second.log_probs, recognizer.log_probs([changed])[0], atol=1e-4)
    assert np.abs(second.log_probs - first.log_probs).max() > 1e-3


@pytest.mark.slow
def test_example_clients_stream_a_wav_with_tensorflow_only(recognizer, export, audio, tmp_path):
    wav = str(tmp_path / "speech.wav")
    sf.write(wav, audio, RATE, subtype="PCM_16")
    pcm = audio_io.load(wav)
    reference = recognizer.log_probs([pcm])[0]
    expected = recognizer.transcribe([pcm])[0]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for script, target, chunk_ms in (("stream_saved_model.py", export, "23.1"),
                                     ("stream_tflite.py", os.path.join(export, "model.tflite"), "160")):
        out = str(tmp_path / f"{script}.npz")
        done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), target, wav, "--chunk-ms",
                               chunk_ms, "--log-probs", out], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "speechkit" not in done.stderr
        with np.load(out) as data:
            np.testing.assert_allclose(data["log_probs"], reference, atol=1e-4)
        assert done.stdout.strip().splitlines()[-1] == f"{wav}\t{expected}"


@pytest.mark.slow
def test_saved_model_cli_lists_every_signature_with_its_shapes(export):
    cli = shutil.which("saved_model_cli") or os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    done = subprocess.run([cli, "show", "--all", "--dir", export], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    sections = dict(re.findall(r"signature_def\['(\w+)'\]:(.*?)(?=signature_def\[|\Z)", done.stdout, re.S))
    assert {"serving_default", "stream_init", "stream_step", "stream_finish"} <= set(sections)

    def tensors(text, kind):
        return dict(re.findall(kind + r"\['(\w+)'\] tensor_info:\s*dtype: \w+\s*shape: (\([^)]*\))", text))

    state = {"samples": "()", "audio": "(799)", "conv_1": "(10, 80, 1)", "conv_2": "(10, 40, 4)",
             "gru_1": "(12)", "gru_4": "(12)", "lookahead": "(8, 12)"}
    step_in, step_out = tensors(sections["stream_step"], "inputs"), tensors(sections["stream_step"], "outputs")
    assert step_in["audio_chunk"] == "(-1)" and step_out["log_probs"] == "(-1, 29)"
    for name, shape in state.items():
        assert step_in[name] == shape and step_out[name] == shape
        assert tensors(sections["stream_init"], "outputs")[name] == shape
        assert tensors(sections["stream_finish"], "inputs")[name] == shape
    assert tensors(sections["stream_finish"], "outputs") == {"log_probs": "(-1, 29)"}
    assert tensors(sections["serving_default"], "inputs") == {"lengths": "(-1)", "waveform": "(-1, -1)"}


def test_export_of_a_model_that_cannot_stream_has_no_stream_signatures(tmp_path):
    config, _ = _preset_layout()
    frontend = FrontendConfig(kind="mel", n_mels=20)
    network = build_deepspeech2(dataclasses.replace(config, rnn_layers=1), frontend=frontend)
    rundir = RunDir(str(tmp_path / "run"), create=True)
    rundir.save_model(network)
    rundir.save_config({"frontend": frontend.to_dict(), "model": dataclasses.replace(config, rnn_layers=1).to_dict()})
    rundir.save_vocabulary(Vocabulary())
    info = export_asr(rundir.path, str(tmp_path / "export"))
    assert "streaming" not in info
    with pytest.raises(ExportError, match="stream_init"):
        ExportedStream(str(tmp_path / "export"))


# -- CLI -- #

def test_cli_streams_a_file_and_raw_pcm_from_stdin(run, recognizer, audio, tmp_path, capsys, monkeypatch):
    wav = str(tmp_path / "speech.wav")
    sf.write(wav, audio, RATE, subtype="PCM_16")
    pcm = audio_io.load(wav)
    expected = recognizer.transcribe([pcm])[0]
    assert main(["transcribe", run, "--stream", wav]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"{wav}\t{expected}"
    partials = [line.split("\t") for line in lines[:-1]]
    assert partials and all(float(a) < float(b) for (a, _), (b, _) in zip(partials, partials[1:]))
    assert len({text for _, text in partials}) == len(partials)

    raw = (np.clip(pcm, -1, 1) * 32767).round().astype("<i2").tobytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    assert main(["transcribe", run, "--stream", "-", "--chunk-ms", "70"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"-\t{expected}"


def test_cli_refuses_to_stream_a_bidirectional_model(tmp_path, capsys):
    config, frontend = _preset_layout()
    config = dataclasses.replace(config, bidirectional=True, rnn_layers=1)
    rundir = RunDir(str(tmp_path / "run"), create=True)
    rundir.save_model(build_deepspeech2(config, frontend=frontend))
    rundir.save_config({"frontend": frontend.to_dict(), "model": config.to_dict()})
    rundir.save_vocabulary(Vocabulary())
    wav = str(tmp_path / "a.wav")
    sf.write(wav, np.zeros(1600, np.float32), RATE)
    assert main(["transcribe", rundir.path, "--stream", wav]) == 1
    assert "bidirectional" in capsys.readouterr().err


def test_pcm16_chunks_reassemble_odd_reads():
    samples = (np.arange(-500, 501) * 30).astype("<i2")

    class Trickle(io.BytesIO):
        def read(self, n=-1):
            return super().read(min(n, 7))

    chunks = list(pcm16_chunks(Trickle(samples.tobytes()), chunk_samples=64))
    np.testing.assert_array_equal(np.concatenate(chunks), samples.astype(np.float32) / 32768.0)
    assert max(len(c) for c in chunks) <= 64


# -- Fixed normalisation statistics -- #

def test_training_statistics_are_filled_in_deterministically(tmp_path):
    rng = np.random.default_rng(0)
    utterances = []
    for i in range(4):
        path = str(tmp_path / f"u{i}.wav")
        sf.write(path, (0.05 * (i + 1) * rng.standard_normal(4000)).astype(np.float32), RATE)
        utterances.append(Utterance(id=f"u{i}", audio=path, duration=0.25, text="A", speaker="s"))
    fixed = FrontendConfig(kind="mel", n_mels=20, normalization="fixed")
    first = frontend_with_statistics(fixed, utterances)
    again = frontend_with_statistics(fixed, utterances)
    assert first == again and len(first.feature_mean) == 20 and min(first.feature_std) > 0
    assert frontend_with_statistics(first, utterances[:1]) is first
    plain = FrontendConfig(kind="mel", n_mels=20)
    assert frontend_with_statistics(plain, utterances) is plain
    assert FrontendConfig.from_dict(first.to_dict()) == first


@pytest.mark.slow
def test_training_stores_the_statistics_and_a_resume_computes_the_same(tmp_path):
    """train() fills in the fixed statistics before config.yaml is written; the model streams like it decodes."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make apt)")
    utterances = []
    for i, text in enumerate(["GOOD MORNING", "THE CAT SAT ON THE MAT", "OPEN THE DOOR PLEASE", "RED AND BLUE"]):
        path = str(tmp_path / f"u{i}.wav")
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", path, text.lower()], check=True)
        utterances.append(Utterance(id=f"u{i}", audio=path, duration=audio_io.info(path)[0], text=text, speaker="s"))
    manifest = str(tmp_path / "train.jsonl")
    write_manifest(manifest, utterances)
    preset = load_train_config(PRESET)
    config = dataclasses.replace(preset, model=_preset_layout()[0], batch_size=2, epochs=1, checkpoint_every=2,
                                 dev_batch_size=4)
    assert config.frontend.needs_statistics
    out = str(tmp_path / "run")
    train(config, train_manifest=manifest, out_dir=out, verbose=0)
    stored = load_yaml(os.path.join(out, "config.yaml"))["frontend"]
    assert stored["normalization"] == "fixed" and len(stored["feature_mean"]) == len(stored["feature_std"]) == 80
    train(dataclasses.replace(config, epochs=2), train_manifest=manifest, out_dir=out, verbose=0)  # resumes
    assert load_yaml(os.path.join(out, "config.yaml"))["frontend"] == stored
    recognizer = load_run(out)
    assert recognizer.frontend.feature_mean == tuple(stored["feature_mean"])
    audio = audio_io.load(utterances[1].audio)
    stream = recognizer.stream()
    final = _stream_all(stream, audio, 2560)
    np.testing.assert_allclose(stream.log_probs, recognizer.log_probs([audio])[0], atol=1e-4)
    assert final == recognizer.transcribe([audio])[0]


def test_greedy_path_grows_like_greedy_decode_of_all_frames():
    vocabulary = Vocabulary()
    rng = np.random.default_rng(2)
    frames = rng.normal(size=(60, vocabulary.size)).astype(np.float32)
    frames[:, 0] += rng.choice([0.0, 4.0], size=60)  # runs of blanks
    frames[20:23] = frames[19]  # a repeat that spans a chunk boundary
    path = GreedyPath(vocabulary)
    for start, end in ((0, 0), (0, 20), (20, 21), (21, 45), (45, 60)):
        path.append(frames[start:end])
        assert path.text == greedy_decode(frames[:end], vocabulary)
