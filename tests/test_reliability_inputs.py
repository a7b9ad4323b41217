"""Bad-input catalogue, run through the real CLI: import-librispeech, train asr, transcribe, eval and vocode.

Every case either works (with conversion) or gets an error naming the file and the reason. Batch jobs
skip bad items, count them by reason in their report, and go on; nothing is dropped silently.
RELIABILITY.md lists the same catalogue with its outcomes.
"""

import contextlib
import io
import json
import os
import re
import shutil

import keras
import numpy as np
import pytest
import soundfile as sf

from _tiny_asr import tiny_config, write_corpus, write_preset
from speechkit import audio as audio_io
from speechkit import frontend as fe
from speechkit.asr.decoding import greedy_decode
from speechkit.asr.inference import load_run
from speechkit.cli import main
from speechkit.data.manifest import Utterance, read_manifest, write_manifest
from speechkit.runs import RunDir

RATE = 16000


def _tone(seconds, rate=RATE, amplitude=0.3):
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(0).standard_normal(t.size)
    return (amplitude * np.sin(2 * np.pi * 220 * t) + 0.02 * noise).astype(np.float32)


def _corrupt_flac(path):
    sf.write(path, _tone(1.0), RATE, subtype="PCM_16")
    data = bytearray(open(path, "rb").read())
    rng = np.random.default_rng(1)
    for i in range(2000, len(data) - 10, 7):
        data[i] = rng.integers(0, 256)
    open(path, "wb").write(data)


def _bad_header_flac(path):
    sf.write(path, _tone(1.0), RATE, subtype="PCM_16")
    data = bytearray(open(path, "rb").read())
    data[:64] = bytes(64)
    open(path, "wb").write(data)


def _truncated_wav(path):
    sf.write(path, _tone(1.0), RATE, subtype="PCM_16")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])


def _nan_wav(path):
    audio = _tone(0.5)
    audio[100] = np.nan
    sf.write(path, audio, RATE, subtype="FLOAT")


def _clipped(path):
    sf.write(path, np.clip(4 * _tone(0.8), -1, 1), RATE, subtype="PCM_16")


# name: (extension, writer or None for "no file", expected error regex or None when accepted)
CASES = {
    "pcm16": (".wav", lambda p: sf.write(p, _tone(0.8), RATE, subtype="PCM_16"), None),
    "pcm_u8": (".wav", lambda p: sf.write(p, _tone(0.8), RATE, subtype="PCM_U8"), None),
    "pcm_24": (".wav", lambda p: sf.write(p, _tone(0.8), RATE, subtype="PCM_24"), None),
    "rate_48k": (".wav", lambda p: sf.write(p, _tone(0.8, 48000), 48000, subtype="PCM_16"), None),
    "rate_8k": (".wav", lambda p: sf.write(p, _tone(0.8, 8000), 8000, subtype="PCM_16"), None),
    "stereo": (".flac", lambda p: sf.write(p, np.stack([_tone(0.8), -_tone(0.8, amplitude=0.1)], 1), RATE), None),
    "silence": (".wav", lambda p: sf.write(p, np.zeros(RATE, np.float32), RATE, subtype="PCM_16"), None),
    "clipped": (".wav", _clipped, None),
    "ten_ms": (".wav", lambda p: sf.write(p, _tone(0.01), RATE, subtype="PCM_16"), None),
    "long_70s": (".flac", lambda p: sf.write(p, _tone(70.0, amplitude=0.01), RATE, subtype="PCM_16"), None),
    "corrupt_flac": (".flac", _corrupt_flac, r"audio data is corrupt"),
    "flac_bad_header": (".flac", _bad_header_flac, r"not readable as audio"),
    "truncated_wav": (".wav", _truncated_wav, r"truncated WAV: the header announces 32000 bytes of audio, the file "
                                              r"holds \d+"),
    "zero_bytes": (".wav", lambda p: open(p, "wb").close(), r"file is empty \(zero bytes\)"),
    "no_samples": (".wav", lambda p: sf.write(p, np.zeros(0, np.float32), RATE), r"audio is empty \(zero samples\)"),
    "text_as_wav": (".wav", lambda p: open(p, "w").write("hello, this is not audio\n" * 50),
                    r"not readable as audio"),
    "nan_samples": (".wav", _nan_wav, r"NaN or Inf"),
    "missing": (".wav", None, r"file does not exist"),
}
ACCEPTED = [name for name, (_, _, error) in CASES.items() if error is None]
REJECTED = [name for name, (_, _, error) in CASES.items() if error is not None]


def _write_cases(folder, name_of=lambda case: case):
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for case, (ext, writer, _) in CASES.items():
        path = os.path.join(folder, name_of(case) + ext)
        if writer is not None:
            writer(path)
        paths[case] = path
    return paths


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return _write_cases(str(tmp_path_factory.mktemp("cases")))


@pytest.fixture(scope="module")
def asr_run(tmp_path_factory):
    """A tiny ASR run trained for two steps by ``speechkit train asr`` on a manifest with bad lines."""
    root = tmp_path_factory.mktemp("asr")
    manifest = write_corpus(str(root / "data"), ["CAB", "BAD", "DAB", "ACE"])
    good = open(manifest).read()
    impossible = Utterance("too_long", str(root / "data" / "u00.wav"), 0.3,
                           "A LABEL FAR LONGER THAN A THIRD OF A SECOND CAN HOLD", "s")
    digits = Utterance("digits", str(root / "data" / "u01.wav"), 0.35, "ROOM 101", "s")
    extra = str(root / "data" / "extra.jsonl")
    write_manifest(extra, [impossible, digits])
    with open(manifest, "w") as f:
        f.write(good + open(extra).read() + "{this is not json\n" + json.dumps({"id": "x", "audio": "u00.wav"}) + "\n")
    preset = write_preset(str(root / "tiny.yaml"), tiny_config(batch_size=2, epochs=1))
    run = str(root / "run")
    assert main(["train", "asr", "--config", preset, "--train", manifest, "--out", run, "--quiet"]) == 0
    return run


def test_training_drops_and_counts_bad_manifest_lines_and_labels(asr_run):
    skipped = json.load(open(os.path.join(asr_run, RunDir.SKIPPED)))
    assert skipped["by_reason"] == {"bad_fields": 1, "bad_text": 1, "ctc_impossible": 1, "not_json": 1}
    assert skipped["items"]["ctc_impossible"][0]["item"] == "too_long"
    assert "train.jsonl:7" in skipped["items"]["not_json"][0]["item"]
    assert "missing field(s) ['duration', 'text', 'speaker']" in skipped["items"]["bad_fields"][0]["detail"]
    summary = json.load(open(os.path.join(asr_run, "train_summary.json")))
    assert summary["training_utterances"] == 4 and summary["step"] == 2


def test_training_stops_with_the_file_named_when_audio_turns_bad(tmp_path, capsys):
    data = tmp_path / "data"
    manifest = write_corpus(str(data), ["CAB", "BAD", "DAB", "ACE"])
    _corrupt_flac(str(data / "broken.flac"))
    utterances = read_manifest(manifest) + [Utterance("broken", str(data / "broken.flac"), 1.0, "FACE", "s")]
    write_manifest(manifest, utterances)
    preset = write_preset(str(tmp_path / "tiny.yaml"), tiny_config(batch_size=5, epochs=1))
    code = main(["train", "asr", "--config", preset, "--train", manifest, "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"training stopped: {data / 'broken.flac'}: audio data is corrupt" in err, err[-2000:]


@pytest.fixture(scope="module")
def transcribed(asr_run, files, tmp_path_factory):
    """One ``speechkit transcribe`` call over every case, in catalogue order."""
    report = str(tmp_path_factory.mktemp("transcribe") / "skipped.json")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["transcribe", asr_run, *files.values(), "--report", report])
    return code, out.getvalue(), err.getvalue(), json.load(open(report))


def test_transcribe_batch_exit_code_and_summary(transcribed):
    code, _, err, report = transcribed
    assert code == 1
    assert f"{len(REJECTED)} of {len(CASES)} file(s) skipped (skipped {len(REJECTED)} (bad_audio: {len(REJECTED)}))" \
        in err
    assert report["by_reason"] == {"bad_audio": len(REJECTED)}


def test_transcribe_keeps_input_order(transcribed, files):
    _, out, _, _ = transcribed
    assert [line.split("\t")[0] for line in out.splitlines()] == [files[c] for c in ACCEPTED]


@pytest.mark.parametrize("case", REJECTED)
def test_transcribe_names_file_and_reason(transcribed, files, case):
    _, out, err, report = transcribed
    pattern = CASES[case][2]
    assert files[case] not in out
    line = next(line for line in err.splitlines() if line.startswith(f"speechkit: skipped (bad_audio): {files[case]}:"))
    assert re.search(pattern, line), line
    assert any(item["item"] == files[case] and re.search(pattern, item["detail"])
               for item in report["items"]["bad_audio"])


@pytest.mark.parametrize("case", ACCEPTED)
def test_transcribe_accepts_and_converts(transcribed, files, case):
    _, out, _, _ = transcribed
    lines = [line for line in out.splitlines() if line.split("\t")[0] == files[case]]
    assert len(lines) == 1 and len(lines[0].split("\t")) == 2
    assert set(lines[0].split("\t")[1]) <= set(" 'ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _tone_turns(seconds, seed=2):
    """Low and high tones taking turns at irregular intervals (0.3-1.5 s), in a little noise.

    The irregular turns make every stretch of the letters a model emits for it unlike every other
    stretch, so windows that are misplaced or dropped change the transcript.
    """
    rng = np.random.default_rng(seed)
    pieces, total, k = [], 0, 0
    while total < seconds * RATE:
        n = int(rng.uniform(0.3, 1.5) * RATE)
        pieces.append(0.3 * np.sin(2 * np.pi * (300 if k % 2 else 2000) * np.arange(n) / RATE))
        total, k = total + n, k + 1
    audio = np.concatenate(pieces)[:int(seconds * RATE)]
    return (audio + 0.01 * rng.standard_normal(audio.size)).astype(np.float32)


def _emit_letters_by_input(recognizer, audio):
    """Set the output layer so the model emits A or B by the sign of the hidden state's main variation.

    An untrained model emits blanks only, and any windowing reproduces that. Here the output follows
    the input instead: the logits of A and B are plus and minus the projection of the last hidden
    layer onto its first principal component over ``audio`` (blank stays at 0), so every frame is a
    letter and the letter changes wherever the sound does.
    """
    network = recognizer.network
    hidden = keras.Model(network.inputs, network.get_layer("logits").input)
    features, lengths = fe.features(audio[None], [len(audio)], config=recognizer.frontend)
    h = np.asarray(hidden([features, lengths]))[0]
    centered = h - h.mean(axis=0)
    direction = np.linalg.svd(centered, full_matrices=False)[2][0]
    scale = 10.0 / np.abs(centered @ direction).mean()
    layer = network.get_layer("logits")
    kernel, bias = (np.zeros_like(w) for w in layer.get_weights())
    labels = recognizer.vocabulary.labels
    for letter, sign in (("A", 1.0), ("B", -1.0)):
        kernel[:, labels.index(letter)] = sign * scale * direction
        bias[labels.index(letter)] = -sign * scale * float(h.mean(axis=0) @ direction)
    layer.set_weights([kernel, bias])


def test_long_file_is_recognised_in_windows_like_whole(asr_run, tmp_path):
    recognizer = load_run(asr_run)
    audio = _tone_turns(70.0)
    path = str(tmp_path / "long.flac")
    sf.write(path, audio, RATE, subtype="PCM_16")
    audio = audio_io.load(path)
    _emit_letters_by_input(recognizer, audio)
    assert len(recognizer.windows(len(audio))) == 3
    chunked = recognizer.log_probs([audio])[0]
    whole = recognizer._run([audio])[0]
    assert chunked.shape == whole.shape
    whole_best = np.argmax(whole, -1)
    assert np.mean(whole_best != 0) > 0.99
    # Per-window feature normalisation differs a little from whole-file normalisation.
    assert np.mean(np.argmax(chunked, -1) == whole_best) > 0.95
    # Transcripts are the letters' turns, so a frame that flips near a turn adds a letter: the frames
    # above are the exact comparison, the transcripts only have to be non-empty and alike.
    text = recognizer.transcribe([audio])[0]
    whole_text = greedy_decode(whole, recognizer.vocabulary)
    assert len(whole_text) >= 60 and set(text) == set(whole_text) == {"A", "B"}
    assert abs(len(text) - len(whole_text)) <= 0.1 * len(whole_text)
    assert dict(recognizer.transcribe_files([path]))[path] == text


def test_eval_counts_every_skip(asr_run, files, tmp_path):
    utterances = [Utterance(case, path, 1.0, "CAB", "s") for case, path in files.items()]
    utterances += [Utterance("accents", files["pcm16"], 1.0, "Café déjà vu", "s"),
                   Utterance("digits", files["pcm16"], 1.0, "ROOM 101", "s"),
                   Utterance("empty", files["pcm16"], 1.0, "", "s")]
    manifest = str(tmp_path / "test.jsonl")
    write_manifest(manifest, utterances)
    with open(manifest, "a") as f:
        f.write("not json at all\n" + json.dumps({"id": "nofields"}) + "\n")
    out = tmp_path / "report"
    assert main(["eval", asr_run, "--manifest", manifest, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["utterances"] == len(ACCEPTED) + 1
    assert report["skipped"]["by_reason"] == {"bad_audio": len(REJECTED), "bad_fields": 1, "empty_reference": 1,
                                              "not_json": 1, "reference_has_digits": 1}
    hyps = [json.loads(line) for line in open(out / "hypotheses.jsonl")]
    assert {h["id"]: h["ref"] for h in hyps}["accents"] == "CAFE DEJA VU"
    skipped = {item["item"]: item["detail"] for item in report["skipped"]["items"]["bad_audio"]}
    for case in REJECTED:
        assert re.search(CASES[case][2], skipped[case]) and files[case] in skipped[case]


def test_import_librispeech_counts_every_skip(tmp_path):
    chapter = tmp_path / "LibriSpeech" / "7" / "77"
    names = {case: f"7-77-{i:04d}" for i, case in enumerate(CASES)}
    paths = _write_cases(str(chapter), names.get)
    lines = [f"{names[case]} CAB" for case in CASES]
    shutil.copy(paths["pcm16"], chapter / "7-77-0100.wav")
    shutil.copy(paths["pcm16"], chapter / "7-77-0101.wav")
    shutil.copy(paths["pcm16"], chapter / "7-77-0102.wav")
    lines += ["7-77-0100 Café, déjà vu!", "7-77-0101 ROOM 101", "", "7-77-0102 ...", "7-77-0103 NO AUDIO"]
    (chapter / "7-77.trans.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "train.jsonl"
    assert main(["data", "import-librispeech", str(tmp_path / "LibriSpeech"), "--out", str(out)]) == 0
    kept = {u.id: u.text for u in read_manifest(str(out))}
    accepted = [names[c] for c in ACCEPTED if c not in ("ten_ms", "long_70s")]
    assert sorted(kept) == sorted(accepted + ["7-77-0100"]) and kept["7-77-0100"] == "CAFE DEJA VU"
    report = json.loads((tmp_path / "train.jsonl.report.json").read_text())
    # "missing" has a transcript but no file, like 7-77-0103.
    assert report["by_reason"] == {"digits_in_text": 1, "duration_out_of_range": 2, "empty_line": 1,
                                   "empty_text": 1, "missing_audio": 2, "unreadable": len(REJECTED) - 1}
    unreadable = {os.path.basename(item["item"]): item["detail"] for item in report["items"]["unreadable"]}
    for case in REJECTED:
        if case != "missing":
            assert re.search(CASES[case][2], unreadable[os.path.basename(paths[case])]), case


# -- vocode -- #

@pytest.fixture(scope="module")
def vocoder_run(tmp_path_factory):
    """An untrained tiny mel-conditioned WaveNet saved in the run layout ``load_vocoder`` reads."""
    from speechkit.config import save_yaml
    from speechkit.frontend import FrontendConfig
    from speechkit.vocoder.config import VocoderConfig
    from speechkit.vocoder.train import build_model
    from speechkit.vocoder.wavenet import WaveNetConfig

    run = tmp_path_factory.mktemp("vocoder")
    model = WaveNetConfig(layers_per_stack=2, stacks=1, residual_channels=4, gate_channels=4, skip_channels=4,
                          head_channels=8, cond_channels=4)
    config = VocoderConfig(frontend=FrontendConfig(kind="mel", normalize=False), model=model)
    build_model(config, seed=0).save(str(run / "model.keras"))
    save_yaml(str(run / "config.yaml"), config)
    return str(run)


@pytest.mark.parametrize("case", [c for c in REJECTED if c not in ("corrupt_flac", "nan_samples")] +
                         ["corrupt_flac", "nan_samples"])
def test_vocode_names_file_and_reason(vocoder_run, files, tmp_path, capsys, case):
    out = tmp_path / "out.wav"
    assert main(["vocode", vocoder_run, "--mel-from", files[case], "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"speechkit: error: {files[case]}:") and re.search(CASES[case][2], err), err
    assert not out.exists()


def test_vocode_converts_odd_formats(vocoder_run, tmp_path, capsys):
    src = tmp_path / "odd.wav"
    stereo = np.stack([_tone(0.05, 48000), _tone(0.05, 48000)], 1)
    sf.write(src, stereo, 48000, subtype="PCM_24")
    out = tmp_path / "out.wav"
    assert main(["vocode", vocoder_run, "--mel-from", str(src), "--out", str(out)]) == 0
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.frames) == (16000, 1, 800)


def test_vocode_refuses_an_hour(vocoder_run, tmp_path, capsys):
    long = tmp_path / "hour.wav"
    with sf.SoundFile(long, "w", samplerate=RATE, channels=1, subtype="PCM_16") as f:
        block = np.zeros(RATE * 60, np.int16)
        for _ in range(60):
            f.write(block)
    assert main(["vocode", vocoder_run, "--mel-from", str(long), "--out", str(tmp_path / "o.wav")]) == 1
    err = capsys.readouterr().err
    assert f"{long}: 3600.0 s is longer than --max-seconds 120" in err
