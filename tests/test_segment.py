"""Long-audio segmentation: sentence splitting, boundary refinement, and ``speechkit data segment`` end to end."""

import json
import os
import subprocess

import librosa
import numpy as np
import pytest

from speechkit import audio as audio_io
from speechkit.asr.align import TimedUnit
from speechkit.cli import main
from speechkit.data.librispeech import import_librispeech
from speechkit.data.manifest import read_manifest
from speechkit.data.segment import _split_long, refine_boundaries, segment_recording, split_sentences
from speechkit.errors import AudioError, SpeechkitError, TextError

RATE = 16000


def test_split_sentences_joins_wrapped_lines_and_splits_paragraphs():
    text = ("It was late. \"Who is there?\" she asked,\nlooking round!\n\n  A new\nparagraph without an end\n"
            "\n\n\nLast one.")
    assert split_sentences(text) == ["It was late.", "\"Who is there?\"", "she asked, looking round!",
                                     "A new paragraph without an end", "Last one."]
    assert split_sentences(" \n\n ") == []


def _words(spans):
    return [TimedUnit(f"W{i}", a, b, 0.9) for i, (a, b) in enumerate(spans)]


def test_long_sentences_are_cut_at_their_longest_pauses():
    words = _words([(0, 1), (1.1, 2), (3.0, 4), (4.1, 5), (5.5, 6)])
    parts = _split_long(words, 3.5)
    assert [[w.text for w in p] for p in parts] == [["W0", "W1"], ["W2", "W3", "W4"]]
    assert all(p[-1].end - p[0].start <= 3.5 for p in parts)
    assert _split_long(words, 10) == [words]
    assert _split_long(_words([(0, 4)]), 3.0) is None


def _burst(on, off, total=3.0, seed=0):
    rng = np.random.default_rng(seed)
    audio = rng.normal(0, 1e-3, int(total * RATE)).astype(np.float32)
    audio[int(on * RATE):int(off * RATE)] += 0.3 * np.sin(np.arange(int((off - on) * RATE)) * 0.2)
    return audio


def test_refine_boundaries_moves_edges_to_the_sound():
    audio = _burst(1.0, 2.0)
    start, end = refine_boundaries(audio, RATE, 1.1, 1.8, low=0.0, high=3.0)
    assert start == pytest.approx(1.0, abs=0.02) and end == pytest.approx(2.0, abs=0.02)
    # An aligned span that starts and ends in the silence around the sound is pulled in.
    start, end = refine_boundaries(audio, RATE, 0.85, 2.2, low=0.0, high=3.0)
    assert start == pytest.approx(1.0, abs=0.02) and end == pytest.approx(2.0, abs=0.02)
    # Never past a neighbour, never further than search_seconds.
    start, end = refine_boundaries(audio, RATE, 1.1, 1.8, low=1.05, high=1.9)
    assert (start, end) == (pytest.approx(1.05), pytest.approx(1.9))
    start, end = refine_boundaries(audio, RATE, 1.5, 1.6, low=0.0, high=3.0, search_seconds=0.1)
    assert start == pytest.approx(1.4, abs=0.01) and end == pytest.approx(1.7, abs=0.01)


# -- End to end with the released model on espeak-ng speech -- #

_READ = ("the children were playing in the garden", "she opened the letter and read it twice",
         "he walked slowly down the long road towards the village")
_UNREAD = "nobody had ever seen such a beautiful morning"
_UNSCRIPTED = "my grandmother kept bees behind the old farmhouse"


def _espeak(folder, name, text, voice="en-gb+m5"):
    path = str(folder / f"{name}.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "166", "-p", "46", "-w", path, text], check=True, timeout=60)
    audio = audio_io.load(path)
    _, (on, off) = librosa.effects.trim(audio, top_db=40, frame_length=320, hop_length=80)
    return audio, on / RATE, off / RATE


@pytest.fixture(scope="module")
def chapter(tmp_path_factory):
    """A recording of the read sentences with an unscripted one (another voice) between, and a book text.

    The book holds the read sentences and one more that is never read. A noise floor 60 dB down
    stands for a room. Returns (audio path, text path, true spans of the read sentences, span of
    the unscripted sentence).
    """
    folder = tmp_path_factory.mktemp("segment")
    pieces, spans, t = [], [], 0.0

    def add(audio, pause):
        nonlocal t
        pieces.append(np.zeros(int(pause * RATE), np.float32))
        t += int(pause * RATE) / RATE
        pieces.append(audio)
        start = t
        t += len(audio) / RATE
        return start

    for i, sentence in enumerate(_READ):
        audio, on, off = _espeak(folder, f"read{i}", sentence)
        start = add(audio, (0.5, 0.8, 2.5)[i])
        spans.append((start + on, start + off))
        if i == 0:
            audio, on, off = _espeak(folder, "unscripted", _UNSCRIPTED, voice="en-us+f3")
            start = add(audio, 0.7)
            unscripted = (start + on, start + off)
    pieces.append(np.zeros(int(0.6 * RATE), np.float32))
    audio = np.concatenate(pieces)
    audio += np.random.default_rng(0).normal(0, 1e-3, audio.shape).astype(np.float32)
    path = str(folder / "chapter.flac")
    audio_io.save(path, audio)
    book = folder / "book.txt"
    book.write_text(f"{_READ[0].capitalize()}. {_READ[1].capitalize()}!\n\n{_UNREAD.capitalize()}.\n"
                    f"{_READ[2].capitalize()}.\n", encoding="utf-8")
    return path, str(book), spans, unscripted


def test_cli_segment_keeps_read_sentences_and_rejects_the_rest(chapter, tmp_path, capsys):
    audio, book, spans, unscripted = chapter
    out = str(tmp_path / "corpus")
    assert main(["data", "segment", audio, book, "--out", out, "--model", "ds2-mini", "--speaker", "7",
                 "--chapter", "3"]) == 0
    assert "3 utterances" in capsys.readouterr().out
    utterances = read_manifest(os.path.join(out, "manifest.jsonl"))
    assert [u.text for u in utterances] == [s.upper() for s in _READ]
    assert [u.id for u in utterances] == ["7-3-0000", "7-3-0001", "7-3-0002"]
    assert all(u.speaker == "7" and os.path.isfile(u.audio) for u in utterances)
    assert all(os.path.dirname(u.audio) == os.path.join(out, "7", "3") for u in utterances)
    with open(os.path.join(out, "7", "3", "7-3.trans.txt"), encoding="utf-8") as f:
        assert f.read().splitlines()[1] == "7-3-0001 " + _READ[1].upper()
    records = [json.loads(line) for line in open(os.path.join(out, "sentences.jsonl"), encoding="utf-8")]
    kept = [r for r in records if r["status"] == "kept"]
    unread = [r for r in records if r["text"] == _UNREAD.upper()]
    assert len(unread) == 1 and unread[0]["status"] == "rejected" and unread[0]["reason"]
    for record, (lo, hi) in zip(kept, spans):
        assert abs(record["speech_start"] - lo) < 0.06 and abs(record["speech_end"] - hi) < 0.06, (record, lo, hi)
        assert record["cut_start"] <= record["speech_start"] and record["cut_end"] >= record["speech_end"]
        assert record["cut_end"] <= unscripted[0] or record["cut_start"] >= unscripted[1]
    for u, record in zip(utterances, kept):
        assert u.duration == pytest.approx(record["cut_end"] - record["cut_start"], abs=0.01)
    report = json.loads(open(os.path.join(out, "report.json"), encoding="utf-8").read())
    assert report["utterances"] == 3 and report["sentences"] == 4 and report["rejected"]["skipped"] == 1
    imported, skips = import_librispeech(out, str(tmp_path / "imported.jsonl"))
    assert sorted(u.text for u in imported) == sorted(s.upper() for s in _READ) and skips.total == 0


@pytest.fixture(scope="module")
def recognizer():
    from speechkit.asr.inference import load_run
    from speechkit.models import resolve_model

    return load_run(resolve_model("ds2-mini", family="asr"))


def test_max_seconds_cuts_long_sentences_and_low_confidence_is_rejected(recognizer, chapter, tmp_path):
    audio, _, spans, _ = chapter
    text = ". ".join(_READ) + "."
    report = segment_recording(recognizer, audio, text, str(tmp_path / "short"), speaker="1", max_seconds=1.5)
    records = [json.loads(line) for line in open(tmp_path / "short" / "sentences.jsonl", encoding="utf-8")]
    kept = [r for r in records if r["status"] == "kept"]
    assert report["utterances"] == len(kept) > 3
    assert all(r["speech_end"] - r["speech_start"] <= 1.5 + 2 * 0.3 for r in kept)
    assert " ".join(r["part_text"] for r in kept) == " ".join(_READ).upper()
    strict = segment_recording(recognizer, audio, text, str(tmp_path / "strict"), speaker="1", min_confidence=1.0)
    assert strict["utterances"] == 0 and strict["rejected"]["by_reason"] == {"low_confidence": 3}


def test_bad_inputs_name_the_problem(recognizer, chapter, tmp_path):
    audio, _, _, _ = chapter
    with pytest.raises(TextError, match="book.txt: no sentence to align"):
        segment_recording(recognizer, audio, "1984. 42!", str(tmp_path / "a"), source_text="book.txt")
    with pytest.raises(TextError, match="no sentence to align"):
        segment_recording(recognizer, audio, "  \n\n", str(tmp_path / "b"))
    with pytest.raises(AudioError, match="nothing.flac: file does not exist"):
        segment_recording(recognizer, str(tmp_path / "nothing.flac"), "Hello there.", str(tmp_path / "c"))
    with pytest.raises(SpeechkitError, match="speaker id must be letters and digits"):
        segment_recording(recognizer, audio, "Hello there.", str(tmp_path / "d"), speaker="a-b")
    assert main(["data", "segment", audio, str(tmp_path / "missing.txt"), "--out", str(tmp_path / "e"),
                 "--model", "ds2-mini"]) == 1
