"""Released models: packing a run (float32 and float16), loading it back, listing, ``--model`` and the errors."""

import functools
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from _tiny_asr import tiny_config
from speechkit import audio as audio_io
from speechkit.asr.beam import DecodeConfig
from speechkit.asr.deepspeech2 import build_deepspeech2
from speechkit.asr.inference import load_run
from speechkit.asr.lm import build_lm
from speechkit.cli import main
from speechkit.errors import KenLMError, RunError, SpeechkitError
from speechkit.frontend import FrontendConfig
from speechkit.models import (MAX_FILE_BYTES, MODELS_ENV, default_model, eval_figures, list_models,
                              model_decode_config, models_root, pack_model, probe_audio, resolve_model)
from speechkit.runs import RunDir
from speechkit.text import Vocabulary
from speechkit.vocoder.config import VocoderConfig
from speechkit.vocoder.generation import load_vocoder
from speechkit.vocoder.wavenet import WaveNet, WaveNetConfig

VOCAB = Vocabulary()
compact = functools.partial(WaveNetConfig, layers_per_stack=3, stacks=2, residual_channels=8, gate_channels=8,
                            skip_channels=8, head_channels=16, cond_channels=8)


def _randomise(model, seed, scale):
    """Decisive random weights (an untrained model's near-ties would make any comparison a coin toss)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.normal(0.0, scale, w.shape)
        if "moving_variance" in w.path:
            value = np.abs(value) + 0.5
        w.assign(value.astype(w.dtype))


def _finish(run, model):
    run.save_model(model)
    run.append_command("speechkit train ... (test)")
    run.write_text(RunDir.TRAIN_LOG, "epoch,loss\n0,3.5\n1,2.25\n")
    run.mark_done({"step": 12, "epochs_done": 2.0, "train_seconds": 36.0, "train_cpu_seconds": 70.0,
                   "audio_seconds_trained": 90.0, "best_dev_wer": 0.9, "stopped": "epochs"})


@pytest.fixture(scope="module")
def asr_run(tmp_path_factory):
    """A finished tiny ASR run with a tuned decode.yaml whose LM lies outside the run."""
    root = tmp_path_factory.mktemp("asr")
    config = tiny_config()
    run = RunDir(root / "run", create=True)
    model = build_deepspeech2(config.model, frontend=config.frontend, vocab_size=VOCAB.size)
    _randomise(model, 0, 0.5)
    run.save_config(config)
    run.save_vocabulary(VOCAB)
    text = root / "lm.txt"
    text.write_text("\n".join(["THE CAT SAT ON THE MAT", "A DOG RAN TO THE HOUSE", "THE CAT RAN"] * 30) + "\n")
    build_lm(str(text), str(root / "lm"), order=2, heldout_fraction=0.0, discount_fallback="always")
    run.save_decode_config(DecodeConfig(decoder="beam", lm=str(root / "lm"), alpha=0.5, beta=1.0, beam_width=8))
    _finish(run, model)
    return run.path


@pytest.fixture(scope="module")
def vocoder_run(tmp_path_factory):
    config = VocoderConfig(frontend=FrontendConfig(kind="mel", normalize=False),
                           model=compact(num_speakers=2, lpc_order=8))
    run = RunDir(tmp_path_factory.mktemp("vocoder") / "run", create=True)
    model = WaveNet(config.model, config.frontend, name="wavenet")
    model.build()
    _randomise(model, 1, 0.4)
    run.save_config(config)
    run.save_speakers(["s1", "s2"])
    _finish(run, model)
    return run.path


@pytest.fixture(scope="module")
def released(asr_run, vocoder_run, tmp_path_factory):
    """A models folder with a float16 ASR model and a float32 vocoder."""
    root = str(tmp_path_factory.mktemp("models"))
    asr = pack_model(asr_run, name="tiny-asr", root=root, float16=True, figures={"test_wer_greedy": 0.5},
                     data="tones", description="tiny test ASR")
    voc = pack_model(vocoder_run, name="tiny-voc", root=root)
    return root, asr, voc


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory):
    """A real synthesised utterance (espeak-ng, as the mini corpus uses)."""
    path = str(tmp_path_factory.mktemp("wav") / "hello.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", path, "the cat sat on the mat"], check=True, timeout=60)
    return path


# -- Packing and loading back -- #

def test_pack_writes_a_run_layout_with_card_and_model_card(released, asr_run):
    root, card, _ = released
    path = os.path.join(root, "tiny-asr")
    names = set(os.listdir(path))
    assert {"config.yaml", "weights.npz", "vocabulary.json", "decode.yaml", "train_summary.json", "card.json",
            "README.md", "train_log.csv", "command.txt", "lm"} <= names
    assert "model.keras" not in names and not any(n.startswith(".") for n in os.listdir(root))
    saved = json.load(open(os.path.join(path, "card.json")))
    assert saved["family"] == "asr" and saved["storage"] == "float16" and saved["figures"] == {"test_wer_greedy": 0.5}
    assert saved["training"]["steps"] == 12 and saved["training"]["cpu_hours"] == pytest.approx(70 / 3600)
    assert all(f["bytes"] < MAX_FILE_BYTES for f in saved["files"].values())
    assert saved["verification"]["passed"] and saved["verification"]["greedy_transcripts_identical"] == 3
    readme = open(os.path.join(path, "README.md")).read()
    for text in ("# Model card: tiny-asr", "float16", "tones", "speechkit train", "test_wer_greedy",
                 "speechkit lm build", "| epoch | loss |"):
        assert text in readme
    # The LM travels inside the folder, and decode.yaml points at it relatively.
    assert "lm: lm" in open(os.path.join(path, "decode.yaml")).read()
    assert RunDir(path).decode_config().lm == os.path.join(path, "lm")


def test_float16_halves_the_weights_and_keeps_the_transcripts(released, asr_run, tmp_path):
    root, card16, _ = released
    card32 = pack_model(asr_run, name="tiny-asr-32", root=str(tmp_path))
    assert card16["files"]["weights.npz"]["bytes"] < 0.7 * card32["files"]["weights.npz"]["bytes"]
    assert card32["verification"]["max_abs_diff_log_probs"] == 0.0
    original, packed = load_run(asr_run), load_run(card16["path"])
    assert packed.network.weights[0].dtype == "float32"
    audios = probe_audio(count=4, seconds=1.0, seed=3)
    a, b = original.log_probs(audios), packed.log_probs(audios)
    diff = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
    assert 0 < diff < 0.05
    assert original.transcribe(audios) == packed.transcribe(audios)
    assert any(original.transcribe(audios))


def test_vocoder_round_trip(released, vocoder_run):
    _, _, card = released
    assert card["family"] == "vocoder" and card["verification"]["argmax_agreement"] == 1.0
    original, packed = load_vocoder(vocoder_run), load_vocoder(card["path"])
    assert packed.speakers == ["s1", "s2"]
    audio = probe_audio(count=1, seconds=0.05)[0]
    np.testing.assert_array_equal(original.vocode([audio], temperature=0.0, speaker="s2")[0],
                                  packed.vocode([audio], temperature=0.0, speaker="s2")[0])


def test_pack_refuses_to_overwrite_and_unfinished_runs(released, asr_run, tmp_path):
    root, _, _ = released
    with pytest.raises(RunError, match="tiny-asr: already exists"):
        pack_model(asr_run, name="tiny-asr", root=root)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(asr_run, unfinished)
    os.remove(unfinished / "DONE")
    with pytest.raises(RunError, match="DONE: missing"):
        pack_model(str(unfinished), name="x", root=str(tmp_path / "models"))
    assert not (tmp_path / "models" / "x").exists()


def test_pack_fails_when_the_packed_weights_do_not_reproduce_the_run(asr_run, tmp_path, monkeypatch):
    import speechkit.models as models

    monkeypatch.setattr(models, "_verify_asr", lambda *a: {"passed": False, "utterances": 3})
    with pytest.raises(RunError, match="do not reproduce"):
        pack_model(asr_run, name="bad", root=str(tmp_path))
    assert os.listdir(tmp_path) == []


# -- Listing and resolution -- #

def test_listing_resolution_and_default(released, monkeypatch, tmp_path):
    root, _, _ = released
    monkeypatch.setenv(MODELS_ENV, root)
    assert models_root() == root
    assert [(m["name"], m["family"]) for m in list_models()] == [("tiny-asr", "asr"), ("tiny-voc", "vocoder")]
    assert resolve_model("tiny-asr", family="asr") == os.path.join(root, "tiny-asr")
    assert resolve_model(os.path.join(root, "tiny-voc"), family="vocoder") == os.path.join(root, "tiny-voc")
    with pytest.raises(RunError, match="not an asr model"):
        resolve_model("tiny-voc", family="asr")
    with pytest.raises(RunError, match=r"nope: .*released: tiny-asr"):
        resolve_model("nope", family="asr")
    assert default_model("asr") == os.path.join(root, "tiny-asr")
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    with pytest.raises(RunError, match="no released asr model"):
        default_model("asr")


# -- Errors -- #

def test_missing_or_corrupt_weights_name_the_file(released, tmp_path):
    root, _, _ = released
    for name, load in (("tiny-asr", load_run), ("tiny-voc", load_vocoder)):
        copy = tmp_path / name
        shutil.copytree(os.path.join(root, name), copy)
        weights = copy / "weights.npz"
        data = weights.read_bytes()
        weights.write_bytes(data[:len(data) // 2])
        with pytest.raises(RunError, match=r"weights\.npz: cannot read the weights, the file is corrupt"):
            load(str(copy))
        weights.write_bytes(b"not a zip file at all")
        with pytest.raises(RunError, match=r"weights\.npz: cannot read"):
            load(str(copy))
        os.remove(weights)
        with pytest.raises(RunError, match=r"weights\.npz: missing"):
            load(str(copy))


def test_weights_of_another_model_are_refused(released, tmp_path):
    root, _, _ = released
    copy = tmp_path / "mixed"
    shutil.copytree(os.path.join(root, "tiny-asr"), copy)
    shutil.copy(os.path.join(root, "tiny-voc", "weights.npz"), copy / "weights.npz")
    with pytest.raises(RunError, match="weights.npz: holds .* different models"):
        load_run(str(copy))


def test_missing_lm_names_the_file_and_the_build_command(released, tmp_path):
    root, _, _ = released
    copy = tmp_path / "tiny-asr"
    shutil.copytree(os.path.join(root, "tiny-asr"), copy)
    assert model_decode_config(str(copy)).lm == str(copy / "lm")
    os.remove(copy / "lm" / "lm.binary")
    with pytest.raises(KenLMError, match=r"lm\.binary: missing.*speechkit lm build --text .* --order 2"):
        model_decode_config(str(copy))


# -- The command line, end to end -- #

def _lines(capsys):
    return [line.split("\t") for line in capsys.readouterr().out.splitlines() if "\t" in line]


def test_cli_models_transcribe_eval_vocode_with_model(released, asr_run, speech_wav, tmp_path, monkeypatch, capsys):
    root, _, _ = released
    monkeypatch.setenv(MODELS_ENV, root)
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "tiny-asr" in listing and "float16" in listing and "test_wer_greedy 0.5" in listing

    assert main(["transcribe", asr_run, speech_wav, "--decoder", "greedy"]) == 0
    expected = _lines(capsys)
    assert main(["transcribe", "--model", "tiny-asr", "--decoder", "greedy", speech_wav]) == 0
    assert _lines(capsys) == expected
    assert main(["transcribe", "--decoder", "greedy", speech_wav]) == 0  # the released model by default
    assert _lines(capsys) == expected
    assert main(["transcribe", "--model", os.path.join(root, "tiny-asr"), speech_wav]) == 0  # beam + shipped LM
    assert _lines(capsys)[0][0] == speech_wav

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "u1", "audio": speech_wav, "duration": audio_io.info(speech_wav)[0],
                                    "text": "THE CAT SAT ON THE MAT", "speaker": "s"}) + "\n")
    assert main(["eval", "--model", "tiny-asr", "--manifest", str(manifest), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.json").exists()
    assert main(["eval", "--manifest", str(manifest), "--out", str(tmp_path / "r2")]) == 2

    out = tmp_path / "vocoded.wav"
    assert main(["vocode", "--model", "tiny-voc", speech_wav, "--out", str(out), "--max-seconds", "0.1"]) == 1
    short = tmp_path / "short.wav"
    audio_io.save(str(short), audio_io.load(speech_wav)[:800])
    assert main(["vocode", "--model", "tiny-voc", str(short), "--out", str(out), "--temperature", "0",
                 "--speaker", "s2"]) == 0
    assert audio_io.info(str(out))[0] == pytest.approx(0.05, abs=0.011)

    assert main(["transcribe", "--model", "tiny-voc", speech_wav]) == 1
    assert "not an asr model" in capsys.readouterr().err


def test_cli_pack_refuses_overwrite_and_reports_the_check(asr_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    assert main(["models", "pack", asr_run, "--name", "m", "--float16", "--figure", "test_wer_beam_lm=0.25"]) == 0
    out = capsys.readouterr().out
    assert "weights float16" in out and "greedy transcripts identical on 3/3" in out and "max abs diff" in out
    assert main(["models", "pack", asr_run, "--name", "m"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["models", "pack", asr_run, "--name", "m", "--force"]) == 0
    assert json.load(open(tmp_path / "m" / "card.json"))["storage"] == "float32"


def test_cli_export_with_model_and_no_default(released, speech_wav, tmp_path, monkeypatch, capsys):
    root, _, _ = released
    monkeypatch.setenv(MODELS_ENV, root)
    assert main(["export", "asr", "--model", "tiny-asr", "--out", str(tmp_path / "asr")]) == 0
    assert os.path.isfile(tmp_path / "asr" / "saved_model.pb")
    assert main(["export", "vocoder", "--model", "tiny-voc", "--out", str(tmp_path / "voc"), "--no-xla"]) == 0
    assert main(["export", "asr", "--out", str(tmp_path / "x")]) == 2
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "empty"))
    capsys.readouterr()
    assert main(["transcribe", speech_wav]) == 2
    assert "no released asr model" in capsys.readouterr().err


def test_eval_figures_read_an_eval_report_and_name_a_bad_one(tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"wer": 0.25, "cer": 0.1, "rtf": 0.02, "utterances": 187, "words": 2020}))
    assert eval_figures("test_greedy", str(report)) == {"test_greedy_wer": 0.25, "test_greedy_cer": 0.1,
                                                        "test_greedy_rtf": 0.02, "test_greedy_utterances": 187}
    report.write_text(json.dumps({"wer": 0.25}))
    with pytest.raises(SpeechkitError, match="report.json: not a 'speechkit eval' report"):
        eval_figures("x", str(report))
