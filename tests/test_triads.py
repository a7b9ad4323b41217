"""The piano-triads corpus: the plan, rendering through fluidsynth, resuming, and errors that name the file."""

import json
import os

import numpy as np
import pytest

from speechkit import audio as audio_io
from speechkit.data.manifest import read_manifest
from speechkit.data.triads import TriadsConfig, find_soundfont, plan_triads, render_triad, synth_triads
from speechkit.errors import ConfigError, SynthesisError
from speechkit.music.chords import LABELS
from speechkit.music.scores import check_recognizer

TINY = TriadsConfig(seed=3, octaves=(4,), inversions=(0, 1), min_seconds=0.6, max_seconds=0.9,
                    release_seconds=0.3, test_per_chord=1)


def test_default_plan_covers_every_triad_voicing_and_holds_out_one_per_chord():
    items = plan_triads(TriadsConfig())
    assert len(items) == 12 * 4 * 3 * 3
    assert {i.chord for i in items} == set(LABELS)
    assert len({i.id for i in items}) == len(items)
    test = [i for i in items if i.split == "test"]
    assert sorted(i.chord for i in test) == sorted(LABELS)
    assert all(1.5 <= i.held_seconds <= 3.0 and 50 <= i.velocity <= 110 for i in items)
    assert len({i.velocity for i in items}) > 20 and len({i.held_seconds for i in items}) > 20


def test_plan_is_a_pure_function_of_the_config():
    assert plan_triads(TriadsConfig(seed=1)) == plan_triads(TriadsConfig(seed=1))
    assert plan_triads(TriadsConfig(seed=1)) != plan_triads(TriadsConfig(seed=2))


@pytest.mark.parametrize("chord, octave, inversion, notes", [
    ("C:maj", 4, 0, (60, 64, 67)),
    ("C:maj", 4, 1, (64, 67, 72)),
    ("C:maj", 4, 2, (67, 72, 76)),
    ("A:min", 3, 0, (57, 60, 64)),
    ("B:dim", 3, 0, (59, 62, 65)),
    ("G#:aug", 5, 1, (84, 88, 92)),
])
def test_voicings(chord, octave, inversion, notes):
    config = TriadsConfig(octaves=(octave,), inversions=(inversion,), test_per_chord=0)
    (item,) = [i for i in plan_triads(config) if i.chord == chord]
    assert item.notes == notes


def test_manifest_entry_carries_the_chord_as_speaker():
    entry = plan_triads(TINY)[0].manifest_entry()
    assert entry["speaker"] == entry["text"] == entry["chord"] == "C:maj"
    assert entry["audio"].endswith(".wav") and entry["duration"] == pytest.approx(plan_triads(TINY)[0].seconds)


@pytest.mark.parametrize("changes", [{"octaves": ()}, {"inversions": (3,)}, {"variants": 0},
                                     {"min_seconds": 2.0, "max_seconds": 1.0}, {"min_velocity": 0},
                                     {"test_per_chord": 9}, {"gain": 0.0}])
def test_bad_config_is_rejected(changes):
    with pytest.raises(ConfigError):
        TriadsConfig(**changes)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("triads")
    return out, synth_triads(str(out), TINY, jobs=2, progress=False)


def test_synth_triads_writes_wavs_and_manifests(tiny_corpus):
    out, summary = tiny_corpus
    assert summary["splits"] == {"train": {"files": 48, "seconds": pytest.approx(summary["splits"]["train"]["seconds"]),
                                           "chords": 48},
                                 "test": {"files": 48, "seconds": pytest.approx(summary["splits"]["test"]["seconds"]),
                                          "chords": 48}}
    utts = read_manifest(str(out / "test.jsonl"))
    assert len(utts) == 48
    for utt in utts[:5]:
        seconds, rate = audio_io.info(utt.audio)[:2]
        assert rate == 16000 and seconds == pytest.approx(utt.duration, abs=1e-3)
        wave = audio_io.load(utt.audio)
        assert 0.01 < np.abs(wave).max() <= 0.99 and np.abs(wave[-10:]).max() < 1e-3
        # The attack starts at once: no lead-in silence for generation from silence to learn.
        assert np.abs(wave[0]) > 5e-4 * np.abs(wave).max() and np.abs(wave[:80]).max() > 0.05 * np.abs(wave).max()
    assert json.loads((out / "triads.json").read_text())["complete"] is True


def test_rerun_resumes_and_renders_identical_files(tiny_corpus):
    out, _ = tiny_corpus
    path = out / read_manifest(str(out / "train.jsonl"))[5].audio
    before = path.read_bytes()
    os.remove(path)
    summary = synth_triads(str(out), TINY, jobs=1, progress=False)
    assert summary["rendered"] == 1 and summary["skipped"] == 95
    assert path.read_bytes() == before


def test_other_settings_in_the_same_folder_are_refused(tiny_corpus):
    out, _ = tiny_corpus
    with pytest.raises(ConfigError, match="triads.json.*seed"):
        synth_triads(str(out), TriadsConfig(seed=4, octaves=(4,), inversions=(0, 1), min_seconds=0.6,
                                            max_seconds=0.9, release_seconds=0.3), progress=False)


def test_chord_recogniser_names_every_rendered_chord(tiny_corpus):
    out, _ = tiny_corpus
    result = check_recognizer([str(out / "train.jsonl"), str(out / "test.jsonl")])
    assert result["clips"] == 96
    assert result["accuracy"] >= 0.98, result["errors"]


def test_render_errors_name_the_file(tmp_path):
    item = plan_triads(TINY)[0]
    target = str(tmp_path / "x.wav")
    with pytest.raises(SynthesisError, match="x.wav.*fluidsynth exited"):
        render_triad(item, TINY, out_path=target, soundfont=find_soundfont(), fluidsynth="false")
    assert not os.path.exists(target)


def test_missing_soundfont_is_named(tmp_path):
    with pytest.raises(SynthesisError, match="nothing.sf2"):
        find_soundfont(str(tmp_path / "nothing.sf2"))
