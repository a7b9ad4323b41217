"""Copy-synthesis metrics (known answers), the evaluation report, loading runs, and the vocoder CLI."""

import json
import os

import numpy as np
import pytest
import scipy.signal
import yaml

from speechkit import audio as audio_io
from speechkit.cli import main
from speechkit.data.manifest import Utterance, write_manifest
from speechkit.errors import AudioError, ConfigError, RunError
from speechkit.frontend import FrontendConfig
from speechkit.runs import RunDir
from speechkit.vocoder.evaluate import (evaluate_vocoder, log_spectral_distance, mel_cepstral_distortion,
                                        pitch_agreement, pitch_track)
from speechkit.vocoder.generation import load_vocoder
from speechkit.vocoder.wavenet import WaveNet, WaveNetConfig

FRONTEND = FrontendConfig(kind="mel", normalize=False)


def _noise(n=8000, seed=0):
    return (0.2 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_distances_known_answers():
    x = _noise()
    assert log_spectral_distance(x, x, frontend=FRONTEND) == 0.0
    assert mel_cepstral_distortion(x, x, frontend=FRONTEND) == 0.0
    # A gain of 1/2 lowers every power by 10 log10(4) dB and moves only the level cepstrum c0.
    assert log_spectral_distance(x, 0.5 * x, frontend=FRONTEND) == pytest.approx(20 * np.log10(2), abs=1e-3)
    assert mel_cepstral_distortion(x, 0.5 * x, frontend=FRONTEND) == pytest.approx(0.0, abs=1e-3)
    other = _noise(seed=1)
    lsd, mcd = log_spectral_distance(x, other, frontend=FRONTEND), mel_cepstral_distortion(x, other, frontend=FRONTEND)
    assert 3 < lsd < 10 and mcd > 1
    with pytest.raises(AudioError, match="equal lengths"):
        log_spectral_distance(x, x[:-1], frontend=FRONTEND)


def test_distances_ignore_silent_reference_frames():
    speech = np.concatenate([_noise(4000, seed=3) * 1e-5, _noise(4000)])
    hiss = speech + np.concatenate([_noise(4000, seed=2) * 0.05, np.zeros(4000, np.float32)])
    assert log_spectral_distance(speech, hiss, frontend=FRONTEND) < 1.0
    assert log_spectral_distance(speech, hiss, frontend=FRONTEND, active_db=200.0) > 10.0


def _tone(f0, n=8000):
    t = np.arange(n) / 16000
    return (0.3 * sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 6))).astype(np.float32)


def test_pitch_agreement_known_answers():
    tone = pitch_track(_tone(150.0), frontend=FRONTEND)
    same = pitch_agreement([(tone, tone)])
    assert same["voiced_reference"] > 0.8 and same["vde"] == 0.0 and same["gpe"] == 0.0
    assert same["f0_error_cents"] == 0.0
    fifth = pitch_agreement([(tone, pitch_track(_tone(225.0), frontend=FRONTEND))])
    assert fifth["gpe"] > 0.9 and abs(fifth["f0_error_cents"] - 702) < 30
    noise = pitch_agreement([(tone, pitch_track(_noise(), frontend=FRONTEND))])
    assert noise["voiced_estimate"] < 0.1 and noise["vde"] > 0.7
    flat = pitch_agreement([(pitch_track(_noise(), frontend=FRONTEND), pitch_track(_noise(seed=4), frontend=FRONTEND))])
    assert flat["gpe"] is None and flat["f0_error_cents"] is None


def _tiny_run(path, seed=0, lpc_order=0):
    """An untrained tiny mel-conditioned WaveNet in the run layout ``load_vocoder`` reads."""
    config = WaveNetConfig(layers_per_stack=3, stacks=2, residual_channels=8, gate_channels=8, skip_channels=8,
                           head_channels=16, cond_channels=8, lpc_order=lpc_order)
    model = WaveNet(config, FRONTEND)
    model.build()
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(0.0, 0.3, w.shape).astype(np.float32))
    run = RunDir(path, create=True)
    run.save_model(model)
    run.save_config({"frontend": FRONTEND.to_dict(), "model": config.to_dict()})
    return config


class _FakeRecognizer:
    """Knows the reference of loud-enough audio, and says nothing otherwise."""

    run_dir = "fake-asr"

    def __init__(self, texts):
        self.texts = texts

    def transcribe(self, audios, decoder=None):
        return [self.texts[len(a)] if np.abs(a).max() > 0.35 else "" for a in audios]


def test_evaluate_vocoder_report(tmp_path):
    _tiny_run(str(tmp_path / "run"))
    vocoder = load_vocoder(str(tmp_path / "run"))
    utts = []
    texts = {}
    for i, n in enumerate((900, 1300)):
        path = str(tmp_path / f"u{i}.wav")
        audio_io.save(path, 2 * _noise(n, seed=i).clip(-0.25, 0.25))
        utts.append(Utterance(f"u{i}", path, n / 16000, f"WORD{i} TWO", "s"))
        texts[n] = f"WORD{i} TWO"
    utts.append(Utterance("gone", str(tmp_path / "missing.wav"), 1.0, "X", "s"))
    out = str(tmp_path / "report")
    report = evaluate_vocoder(vocoder, utts, out_dir=out, recognizer=_FakeRecognizer(texts), plots=1, seed=3)
    s = report["summary"]
    assert s["utterances"] == 2 and report["skipped"]["by_reason"] == {"unreadable": 1}
    assert s["lsd_db"] > s["mulaw_lsd_db"] > 0 and s["mcd_db"] > 0 and s["rtf"] > 0
    assert s["wer_original"] == 0.0
    for name in ("report.json", "report.md", "png/u0.png", "wav/u0_original.wav", "wav/u1_vocoded.wav"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert not os.path.exists(os.path.join(out, "png", "u1.png"))
    assert json.loads(open(os.path.join(out, "report.json")).read())["summary"] == s
    vocoded = audio_io.load(os.path.join(out, "wav", "u1_vocoded.wav"))
    assert len(vocoded) == 1300
    assert "mel-cepstral distortion" in open(os.path.join(out, "report.md")).read()
    assert set(s["pitch"]) == {"voiced_reference", "voiced_estimate", "vde", "gpe", "f0_error_cents"}
    assert "voicing decision error" in open(os.path.join(out, "report.md")).read()


def test_lpc_report_measures_the_filter_alone(tmp_path):
    """A residual model's report adds the filter driven by level-matched noise; with a strong envelope it is
    far closer to the original than white noise of the same power."""
    _tiny_run(str(tmp_path / "run"), lpc_order=12)
    vocoder = load_vocoder(str(tmp_path / "run"))
    b, a = scipy.signal.butter(2, [900, 1300], btype="bandpass", fs=16000)
    resonant = scipy.signal.lfilter(b, a, _noise(4000, seed=5)).astype(np.float32)
    resonant *= 0.4 / np.abs(resonant).max()
    path = str(tmp_path / "r.wav")
    audio_io.save(path, resonant)
    report = evaluate_vocoder(vocoder, [Utterance("r", path, 0.25, "RING", "s")], out_dir=str(tmp_path / "report"),
                              recognizer=_FakeRecognizer({4000: "RING"}), plots=0)
    s = report["summary"]
    white = _noise(4000, seed=6) * (np.std(resonant) / 0.2)
    assert s["noise_lsd_db"] < log_spectral_distance(resonant, white, frontend=FRONTEND) - 5.0
    assert 0 < s["mulaw_lsd_db"] < s["noise_lsd_db"] and "wer_noise_excited" in s
    assert s["pitch_noise_excited"]["voiced_reference"] == s["pitch"]["voiced_reference"]
    assert "pitch_without_postfilter" not in s
    assert "filter alone" in open(str(tmp_path / "report" / "report.md")).read()
    again = evaluate_vocoder(vocoder, [Utterance("r", path, 0.25, "RING", "s")], out_dir=str(tmp_path / "report2"),
                             plots=0, postfilter=1)["summary"]
    assert "pitch_without_postfilter" in again
    assert "| vocoded, without the post-filter |" in open(str(tmp_path / "report2" / "report.md")).read()

def test_load_vocoder_rejects_mismatched_config(tmp_path):
    _tiny_run(str(tmp_path / "run"))
    run = RunDir(tmp_path / "run")
    saved = run.read_config()
    run.write_text(RunDir.CONFIG, yaml.safe_dump({**saved, "model": {**saved["model"], "cond_channels": 4}}))
    with pytest.raises(ConfigError, match=r"model\.keras: model config differs from .*config\.yaml"):
        load_vocoder(run.path)
    run.write_text(RunDir.CONFIG, yaml.safe_dump({**saved, "frontend": {**saved["frontend"], "fmax": 7000.0}}))
    with pytest.raises(ConfigError, match=r"model\.keras: front-end config differs.*fmax: 7000\.0 != 8000\.0"):
        load_vocoder(run.path)
    # The post-filter is a generation setting that a resumed run may change: config.yaml's value wins.
    run.write_text(RunDir.CONFIG, yaml.safe_dump({**saved, "model": {**saved["model"], "mel_postfilter": 2}}))
    assert load_vocoder(run.path).config.mel_postfilter == 2
    run.write_text(RunDir.CONFIG, yaml.safe_dump(saved))
    run.save_speakers(["a", "b"])
    with pytest.raises(ConfigError, match=r"speakers\.json: names 2 speakers, the model has 0"):
        load_vocoder(run.path)
    os.remove(run.file(RunDir.SPEAKERS))
    os.remove(run.file(RunDir.CONFIG))
    assert load_vocoder(run.path).frontend == FRONTEND
    os.remove(run.file(RunDir.MODEL))
    with pytest.raises(RunError, match=r"model\.keras: missing"):
        load_vocoder(run.path)


def test_cli_vocode_generate_eval(tmp_path, capsys):
    _tiny_run(str(tmp_path / "run"))
    wav = str(tmp_path / "in.wav")
    audio_io.save(wav, _noise(700))
    out = str(tmp_path / "out.wav")
    assert main(["vocode", str(tmp_path / "run"), "--mel-from", wav, "--out", out, "--seed", "2"]) == 0
    assert len(audio_io.load(out)) == 700
    assert "RTF" in capsys.readouterr().out
    # A mel-conditioned model cannot free-run: a runtime error, exit 1.
    assert main(["generate", str(tmp_path / "run"), "--seconds", "0.01", "--out", out]) == 1
    assert "vocode" in capsys.readouterr().err
    manifest = str(tmp_path / "m.jsonl")
    write_manifest(manifest, [Utterance("a", wav, 700 / 16000, "A", "s"), Utterance("b", wav, 700 / 16000, "B", "s")])
    assert main(["eval-vocoder", str(tmp_path / "run"), "--manifest", manifest, "--out", str(tmp_path / "rep"),
                 "--limit", "1", "--plots", "0"]) == 0
    assert "LSD" in capsys.readouterr().out
    assert json.load(open(tmp_path / "rep" / "report.json"))["summary"]["utterances"] == 1
    assert main(["eval-vocoder", str(tmp_path / "run"), "--manifest", manifest, "--out", str(tmp_path / "rep2"),
                 "--limit", "1", "--plots", "0", "--postfilter", "2"]) == 0
    capsys.readouterr()
    summary = json.load(open(tmp_path / "rep2" / "report.json"))["summary"]
    assert summary["postfilter"] == 2 and summary["lsd_db"] != json.load(open(tmp_path / "rep" / "report.json"))[
        "summary"]["lsd_db"]
    assert main(["vocode", str(tmp_path / "nowhere"), "--mel-from", wav, "--out", out]) == 1
