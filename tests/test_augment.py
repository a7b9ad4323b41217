"""Offline augmentation: speed perturbation, coloured noise, SNR mixing and the augmented manifest."""

import json
import os

import numpy as np
import pytest

from speechkit import audio as audio_io
from speechkit.cli import main
from speechkit.data.augment import AugmentConfig, augment_manifest, colored_noise, mix_at_snr, speed_perturb
from speechkit.data.manifest import Utterance, read_manifest, write_manifest
from speechkit.errors import ConfigError, ManifestError

RATE = 16000


def _tone(freq, seconds=1.0):
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(audio):
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return np.fft.rfftfreq(len(audio), 1.0 / RATE)[int(np.argmax(spectrum))]


def test_speed_perturbation_changes_tempo_and_pitch_together():
    tone = _tone(440.0)
    faster, slower = speed_perturb(tone, 1.1, RATE), speed_perturb(tone, 0.9, RATE)
    assert abs(len(faster) - len(tone) / 1.1) <= 2 and abs(len(slower) - len(tone) / 0.9) <= 2
    assert _peak_hz(faster) == pytest.approx(484.0, abs=3) and _peak_hz(slower) == pytest.approx(396.0, abs=3)
    assert speed_perturb(tone, 1.0, RATE) is not None and len(speed_perturb(tone, 1.0, RATE)) == len(tone)


@pytest.mark.parametrize("kind, slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_colored_noise_has_the_spectral_slope_of_its_colour(kind, slope):
    noise = colored_noise(kind, 2 ** 16, np.random.default_rng(0))
    assert noise.dtype == np.float32 and np.std(noise) == pytest.approx(1.0, rel=1e-3)
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(len(noise))
    band = (freqs > 1e-3) & (freqs < 0.3)
    fitted = np.polyfit(np.log10(freqs[band]), np.log10(power[band]), 1)[0]
    assert fitted == pytest.approx(slope, abs=0.15)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_mix_at_snr_hits_the_requested_ratio(snr_db):
    speech = _tone(300.0) * 0.5
    noise = colored_noise("white", len(speech), np.random.default_rng(1))
    mixed = mix_at_snr(speech, noise, snr_db)
    residual = mixed - speech
    measured = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(residual.astype(np.float64) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.05)
    loud = mix_at_snr(speech * 1.9, noise * 5, -10.0)
    assert np.max(np.abs(loud)) <= 0.99 + 1e-6
    assert np.array_equal(mix_at_snr(np.zeros(10, np.float32), np.ones(10, np.float32), 5.0), np.zeros(10))


def _corpus(root, count=4):
    utterances = []
    for i in range(count):
        path = str(root / f"u{i}.flac")
        audio_io.save(path, _tone(200.0 + 50 * i, 0.5 + 0.1 * i))
        utterances.append(Utterance(id=f"s{i % 2}-u{i}", audio=path, duration=0.5 + 0.1 * i, text=f"WORD {i}",
                                    speaker=f"s{i % 2}"))
    manifest = str(root / "train.jsonl")
    write_manifest(manifest, utterances)
    return manifest, utterances


def test_augment_manifest_lists_originals_and_copies_and_reuses_them(tmp_path):
    manifest, utterances = _corpus(tmp_path)
    config = AugmentConfig(speeds=(0.9, 1.1), noise=("babble", "pink"), noisy_copies=2, snr_db=(10.0, 10.0))
    summary = augment_manifest(manifest, str(tmp_path / "aug"), config, progress=False)
    assert summary["originals"] == 4 and summary["copies"] == 16 and summary["written"] == 16
    listed = read_manifest(str(tmp_path / "aug" / "train.jsonl"))
    assert [u.id for u in listed[:4]] == [u.id for u in utterances]
    by_id = {u.id: u for u in listed}
    original, fast = by_id["s1-u1"], by_id["sp1.1-s1-u1"]
    assert fast.speaker == "sp1.1-s1" and fast.text == original.text
    assert fast.duration == pytest.approx(original.duration / 1.1, abs=1e-3)
    noisy = by_id["noise1-s1-u1"]
    assert noisy.speaker == "s1" and noisy.duration == pytest.approx(original.duration, abs=1e-3)
    clean, dirty = audio_io.load(original.audio), audio_io.load(noisy.audio)
    snr = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean((dirty - clean).astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.3)
    assert json.loads((tmp_path / "aug" / "augment.json").read_text())["settings"]["noisy_copies"] == 2

    again = augment_manifest(manifest, str(tmp_path / "aug"), config, progress=False)
    assert again["written"] == 0 and again["reused"] == 16
    elsewhere = augment_manifest(manifest, str(tmp_path / "aug2"), config, progress=False)
    assert elsewhere["written"] == 16
    for u in listed[4:]:
        twin = u.audio.replace(os.sep + "aug" + os.sep, os.sep + "aug2" + os.sep)
        assert np.array_equal(audio_io.load(u.audio), audio_io.load(twin)), u.id


def test_unreadable_audio_is_named_and_left_out_with_its_copies(tmp_path):
    manifest, utterances = _corpus(tmp_path)
    with open(utterances[2].audio, "wb") as f:
        f.write(b"not audio at all")
    summary = augment_manifest(manifest, str(tmp_path / "aug"), AugmentConfig(speeds=(0.9,)), progress=False)
    assert summary["failed"]["count"] == 1 and utterances[2].audio in summary["failed"]["items"]["s0-u2"]
    assert summary["originals"] == 3 and summary["copies"] == 3


def test_noise_files_and_bad_settings(tmp_path):
    manifest, _ = _corpus(tmp_path)
    noise_dir = tmp_path / "noise"
    noise_dir.mkdir()
    audio_io.save(str(noise_dir / "hum.wav"), _tone(50.0, 0.3))
    summary = augment_manifest(manifest, str(tmp_path / "aug"), AugmentConfig(
        speeds=(), noise_files=str(noise_dir), noisy_copies=1), progress=False)
    assert summary["copies"] == 4
    with pytest.raises(ManifestError, match="no such noise manifest or folder"):
        augment_manifest(manifest, str(tmp_path / "x"), AugmentConfig(noise_files=str(tmp_path / "nope"),
                                                                      noisy_copies=1), progress=False)
    with pytest.raises(ConfigError, match="speed factors"):
        AugmentConfig(speeds=(3.0,))
    with pytest.raises(ConfigError, match="unknown noise kinds"):
        AugmentConfig(noise=("rain",))
    with pytest.raises(ConfigError, match="need a noise source"):
        AugmentConfig(noisy_copies=1)


def test_cli_augment(tmp_path, capsys):
    manifest, _ = _corpus(tmp_path)
    out = tmp_path / "aug"
    assert main(["data", "augment", manifest, "--out", str(out), "--speeds", "0.9", "--noise", "white"]) == 0
    assert "4 originals + 8 copies (8 written, 0 reused)" in capsys.readouterr().out
    assert len(read_manifest(str(out / "train.jsonl"))) == 12
