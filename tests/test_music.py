"""Chord labels, the chroma template recogniser and the music scores, on known-answer signals."""

import numpy as np
import pytest

from speechkit import audio as audio_io
from speechkit.errors import ConfigError
from speechkit.music import (LABELS, chance_accuracy, chord_pitch_classes, chord_profile, chord_templates, flatness,
                             histogram_distance, is_music, parse_chord, recognize_chord, same_chord, score_clips)
from speechkit.music.chords import QUALITIES
from speechkit.music.scores import MAX_FLATNESS

RATE = 16000


def _triad(label, *, octave=4, inversion=0, seconds=1.0, harmonics=4):
    """Additive synthesis: each tone with decaying harmonics and an exponential decay."""
    root, quality = parse_chord(label)
    notes = [12 * (octave + 1) + root + step for step in QUALITIES[quality]]
    for i in range(inversion):
        notes[i] += 12
    t = np.arange(int(seconds * RATE)) / RATE
    wave = np.zeros_like(t)
    for note in notes:
        f0 = 440.0 * 2 ** ((note - 69) / 12)
        for h in range(1, harmonics + 1):
            if h * f0 < RATE / 2:
                wave += 0.5 ** (h - 1) * np.sin(2 * np.pi * h * f0 * t)
    wave *= np.exp(-1.5 * t)
    return (0.2 * wave / np.abs(wave).max()).astype(np.float32)


def test_labels_and_parsing():
    assert len(LABELS) == 48 and len(set(LABELS)) == 48
    assert parse_chord("C:maj") == (0, "maj")
    assert parse_chord("Db:min") == (1, "min")
    assert parse_chord(13) == parse_chord("13") == (1, "min")
    assert chord_pitch_classes("A:min") == {9, 0, 4}


@pytest.mark.parametrize("bad", ["H:maj", "C:sus4", "Cmaj", "48", -1])
def test_bad_labels_are_rejected(bad):
    with pytest.raises(ConfigError):
        parse_chord(bad)


def test_augmented_triads_are_enharmonic_and_chance_counts_it():
    assert same_chord("C:aug", "E:aug") and same_chord("C:aug", "G#:aug")
    assert not same_chord("C:maj", "A:min")
    assert chance_accuracy() == pytest.approx((36 * 1 + 12 * 3) / 48 / 48)
    assert chance_accuracy(["C:maj"]) == pytest.approx(1 / 48)


def test_templates_are_unit_norm_and_peak_on_the_chord_tones():
    templates = chord_templates()
    assert templates.shape == (48, 12)
    np.testing.assert_allclose(np.linalg.norm(templates, axis=1), 1.0, rtol=1e-6)
    assert set(np.argsort(templates[LABELS.index("D:min")])[-3:]) == chord_pitch_classes("D:min")


@pytest.mark.parametrize("label, octave, inversion", [
    ("C:maj", 4, 0), ("A:min", 3, 1), ("F#:maj", 4, 2), ("D#:min", 5, 0), ("B:dim", 3, 0), ("E:dim", 4, 1),
    ("C:aug", 4, 2), ("G:maj", 3, 1), ("A#:min", 4, 0),
])
def test_recogniser_names_synthetic_triads(label, octave, inversion):
    recognised, scores = recognize_chord(chord_profile(_triad(label, octave=octave, inversion=inversion),
                                                       sample_rate=RATE))
    assert same_chord(recognised, label), recognised
    assert scores.shape == (48,)


def test_profile_ignores_surrounding_silence():
    chord = _triad("E:min")
    padded = np.concatenate([np.zeros(RATE // 2, np.float32), chord, np.zeros(RATE, np.float32)])
    np.testing.assert_allclose(chord_profile(chord, sample_rate=RATE), chord_profile(padded, sample_rate=RATE),
                               atol=0.03)


def test_music_share_tells_triads_from_noise_and_silence():
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(RATE)).astype(np.float32)
    assert is_music(_triad("C:maj"), sample_rate=RATE)
    assert not is_music(noise, sample_rate=RATE) and flatness(noise, sample_rate=RATE) > 0.3
    assert not is_music(np.zeros(RATE, np.float32), sample_rate=RATE)
    assert not is_music(1e-4 * _triad("C:maj"), sample_rate=RATE)
    # An 8 kHz model's noise, resampled to 16 kHz, is silent above 4 kHz: still noise, not music.
    band_limited = audio_io.resample(audio_io.resample(noise, RATE, 8000), 8000, RATE)
    assert flatness(band_limited, sample_rate=RATE, band_hz=RATE / 2) < MAX_FLATNESS
    assert not is_music(band_limited, sample_rate=RATE) and flatness(band_limited, sample_rate=RATE) > 0.3


def test_histogram_distance_is_total_variation():
    a, b = np.eye(12)[0], np.eye(12)[1]
    assert histogram_distance(a, a) == 0.0
    assert histogram_distance(a, b) == pytest.approx(1.0)
    assert histogram_distance(a, (a + b) / 2) == pytest.approx(0.5)


def test_score_clips_counts_noise_as_a_wrong_chord():
    rng = np.random.default_rng(1)
    clips = [_triad("C:maj"), _triad("A:min"), (0.1 * rng.standard_normal(RATE)).astype(np.float32)]
    result = score_clips(clips, sample_rate=RATE, requested=["C:maj", "A:min", "G:maj"],
                         reference=np.full(12, 1 / 12))
    summary = result["summary"]
    assert summary["chord_accuracy"] == pytest.approx(2 / 3)
    assert summary["music_share"] == pytest.approx(2 / 3)
    assert 0 < summary["histogram_distance"] < 1
    with pytest.raises(ConfigError, match="2 requested chords for 3 clips"):
        score_clips(clips, sample_rate=RATE, requested=["C:maj", "A:min"])
