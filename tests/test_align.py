"""CTC forced alignment: the Viterbi kernel on constructed matrices, text checks, the released model on espeak-ng."""

import itertools
import json
import os
import subprocess

import librosa
import numpy as np
import pytest

from speechkit import audio as audio_io
from speechkit.asr.align import (
    Alignment,
    align_audio,
    align_log_probs,
    align_pieces,
    anchor_words,
    check_text,
    ctc_forced_align,
    frame_seconds,
    greedy_words,
)
from speechkit.cli import main
from speechkit.errors import AudioError, TextError
from speechkit.text import Vocabulary

VOCAB = Vocabulary()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _peaky(classes, vocab_size=29, p=0.9):
    """log-probs [len(classes), vocab_size] where frame t gives ``classes[t]`` probability ``p``."""
    lp = np.full((len(classes), vocab_size), (1 - p) / (vocab_size - 1))
    lp[np.arange(len(classes)), classes] = p
    return np.log(lp).astype(np.float32)


def _brute_force(log_probs, labels, blank=0):
    """The best score over every frame labelling that collapses to ``labels`` (CTC's many-to-one map)."""
    best = -np.inf
    for path in itertools.product(range(log_probs.shape[1]), repeat=log_probs.shape[0]):
        collapsed = [c for i, c in enumerate(path) if c != blank and (i == 0 or path[i - 1] != c)]
        if collapsed == list(labels):
            best = max(best, float(sum(log_probs[t, c] for t, c in enumerate(path))))
    return best


# -- The Viterbi kernel -- #

def test_viterbi_follows_blanks_and_labels():
    # frames: blank, A, A, blank, B -> labels [A, B]
    tokens, first, last, score = ctc_forced_align(_peaky([0, 1, 1, 0, 2]), [1, 2])
    assert tokens.tolist() == [-1, 0, 0, -1, 1]
    assert (first, last) == (0, 4)
    assert score == pytest.approx(5 * np.log(0.9), rel=1e-5)


def test_viterbi_puts_a_blank_between_repeated_labels():
    # The network says A on every frame, but "AA" needs a blank between the two A's.
    tokens, _, _, _ = ctc_forced_align(_peaky([1, 1, 1]), [1, 1])
    assert tokens.tolist() == [0, -1, 1]
    # Different labels need no blank: A B on two frames.
    assert ctc_forced_align(_peaky([1, 2]), [1, 2])[0].tolist() == [0, 1]


@pytest.mark.parametrize("labels", [[1, 2], [1, 1], [2, 1, 2], [1, 2, 2]])
def test_viterbi_score_equals_brute_force(labels):
    rng = np.random.default_rng(len(labels) * 7 + labels[-1])
    log_probs = np.log(rng.dirichlet(np.ones(3), size=6)).astype(np.float32)
    tokens, first, last, score = ctc_forced_align(log_probs, labels)
    assert (first, last) == (0, 5)
    assert score == pytest.approx(_brute_force(log_probs, labels), abs=1e-4)
    emitted = [int(t) for t in tokens if t >= 0]
    assert sorted(set(emitted)) == list(range(len(labels))) and emitted == sorted(emitted)


def test_impossible_transcript_is_refused():
    with pytest.raises(ValueError, match="need at least 3 frames"):
        ctc_forced_align(_peaky([1, 1]), [1, 1])
    with pytest.raises(TextError, match=r"speech\.wav: the transcript \(2 characters\) cannot be aligned"):
        align_log_probs(_peaky([1, 1]), "AA", vocabulary=VOCAB, frame_seconds=0.03,
                        source="speech.wav")


def test_free_start_and_end_find_the_transcript_inside_other_speech():
    a, b, c, d = (VOCAB.encode(ch)[0] for ch in "ABCD")
    # "DDCC" (other speech), then "AB", then "CCD" again.
    frames = [d, d, c, c, 0, a, a, 0, b, 0, c, c, d]
    tokens, first, last, _ = ctc_forced_align(_peaky(frames), [a, b], free_start=True, free_end=True)
    assert tokens[5:9].tolist() == [0, 0, -1, 1]
    assert first in (4, 5) and last == 8
    assert np.all(tokens[:first] == -1) and np.all(tokens[last + 1:] == -1)
    # Fixed ends must cover every frame.
    fixed = ctc_forced_align(_peaky(frames), [a, b])
    assert (fixed[1], fixed[2]) == (0, len(frames) - 1)


def test_a_free_end_does_not_pull_a_weak_last_letter_over_a_pause():
    a, b, c = (VOCAB.encode(ch)[0] for ch in "ABC")
    # "ABC": C is heard weakly right after B (0.3 against blank 0.7), then a 1 s pause, then a clear C.
    frames = [a, 0, b] + [0] * 40 + [c, c]
    log_probs = _peaky(frames)
    log_probs[3] = np.log(np.full(29, 0.0001))
    log_probs[3, 0], log_probs[3, c] = np.log(0.7), np.log(0.3)
    pulled = ctc_forced_align(log_probs, [a, b, c], free_end=True)
    assert pulled[2] > 40  # the bare Viterbi takes the clear C after the pause
    alignment = align_log_probs(log_probs, "ABC", vocabulary=VOCAB, frame_seconds=0.03, free_end=True)
    assert alignment.characters[-1].start == pytest.approx(3 * 0.03)
    assert alignment.end == pytest.approx(4 * 0.03)


def test_alignment_times_and_confidences():
    step = 0.03
    h, i = VOCAB.encode("H")[0], VOCAB.encode("I")[0]
    space = VOCAB.encode(" ")[0]
    frames = [0, h, 0, i, i, space, 0, i, 0]
    alignment = align_log_probs(_peaky(frames), "HI I", vocabulary=VOCAB, frame_seconds=step, frame_offset=10)
    assert [w.text for w in alignment.words] == ["HI", "I"]
    assert alignment.words[0].start == pytest.approx(11 * step)
    assert alignment.words[0].end == pytest.approx(15 * step)
    assert alignment.words[1].start == pytest.approx(17 * step)
    assert alignment.words[1].end == pytest.approx(18 * step)
    assert [c.text for c in alignment.characters] == list("HI I")
    assert all(c.confidence == pytest.approx(0.9, rel=1e-5) for c in alignment.characters)
    assert alignment.confidence == pytest.approx(0.9, rel=1e-5)
    data = alignment.to_dict()
    assert data["words"][1] == {"text": "I", "start": 0.51, "end": 0.54, "confidence": 0.9}


def test_confidence_is_low_when_the_text_is_forced_onto_other_sound():
    heard = [VOCAB.encode(ch)[0] for ch in "XYZ"]
    alignment = align_log_probs(_peaky(heard * 4), "AB", vocabulary=VOCAB, frame_seconds=0.03)
    assert alignment.confidence < 0.01


# -- Text -- #

def test_check_text_normalises_punctuation_and_accents():
    assert check_text("  Café, “don’t” -- stop!\n", VOCAB) == "CAFE DON'T STOP"


@pytest.mark.parametrize("text, named", [("I have 42 cats", "'2', '4'"), ("50% off", "'%', '0', '5'"),
                                         ("Straße", "'ß'")])
def test_check_text_names_characters_outside_the_vocabulary(text, named):
    with pytest.raises(TextError, match=f"book.txt: .*outside the vocabulary.*{named}"):
        check_text(text, VOCAB, source="book.txt")


@pytest.mark.parametrize("text", ["", "  ", "...!"])
def test_check_text_refuses_empty_text(text):
    with pytest.raises(TextError, match="normalises to nothing"):
        check_text(text, VOCAB, source="t.txt")


# -- Anchors -- #

def test_greedy_words_and_anchors():
    codes = {ch: VOCAB.encode(ch)[0] for ch in "ABCDE "}
    frames = [0, codes["A"], codes["A"], codes["B"], 0, codes[" "], codes["C"], 0, codes[" "], codes["D"], 0]
    assert greedy_words(_peaky(frames), VOCAB) == [("AB", 1, 3), ("C", 6, 6), ("D", 9, 9)]
    reference = "the cat sat on the mat today".split()
    hypothesis = "a cat sat on the hat today".split()
    assert anchor_words(hypothesis, reference, min_run=3) == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert anchor_words(hypothesis, reference, min_run=5) == []


def test_align_pieces_skips_text_that_is_not_spoken():
    def spell(text):
        out = []
        for ch in text:
            out += [VOCAB.encode(ch)[0], 0]
        return out

    spoken = ["ONE TWO THREE", "SEVEN EIGHT NINE"]
    frames = [0] * 5 + spell(spoken[0]) + [0] * 8 + spell("XQ XQ") + [0] * 8 + spell(spoken[1]) + [0] * 5
    found = align_pieces(_peaky(frames), [spoken[0], "FOUR FIVE SIX", spoken[1]], vocabulary=VOCAB,
                         frame_seconds=0.03, min_run=2, margin_seconds=0.3)
    assert found[0].confidence > 0.8 and found[2].confidence > 0.8
    assert found[1] is None or found[1].confidence < 0.2
    assert found[0].words[0].start == pytest.approx(5 * 0.03)
    assert found[2].end < len(frames) * 0.03


# -- The released model on synthesised speech -- #

_SENTENCES = ("he walked slowly down the long road", "the children were playing in the garden")
_PAUSES = (0.4, 1.6, 0.3)


def _speech_span(audio):
    _, (on, off) = librosa.effects.trim(audio, top_db=40, frame_length=320, hop_length=80)
    return on / 16000, off / 16000


@pytest.fixture(scope="module")
def two_sentences(tmp_path_factory):
    """A wav of two espeak-ng sentences (a mini test speaker's voice) with unequal pauses, and their true spans.

    A noise floor 60 dB down stands for a room: the front end normalises each recording by its own
    statistics, and long stretches of exact digital zeros would dominate them.
    """
    folder = tmp_path_factory.mktemp("align")
    pieces, spans, t = [], [], 0.0
    for i, sentence in enumerate(_SENTENCES):
        path = str(folder / f"s{i}.wav")
        subprocess.run(["espeak-ng", "-v", "en-gb+m5", "-s", "166", "-p", "46", "-w", path, sentence], check=True,
                       timeout=60)
        audio = audio_io.load(path)
        pause = np.zeros(int(_PAUSES[i] * 16000), np.float32)
        t += len(pause) / 16000
        on, off = _speech_span(audio)
        spans.append((t + on, t + off))
        pieces += [pause, audio]
        t += len(audio) / 16000
    pieces.append(np.zeros(int(_PAUSES[-1] * 16000), np.float32))
    path = str(folder / "both.wav")
    audio = np.concatenate(pieces)
    audio_io.save(path, audio + np.random.default_rng(0).normal(0, 1e-3, audio.shape).astype(np.float32))
    return path, spans


@pytest.fixture(scope="module")
def recognizer():
    from speechkit.asr.inference import load_run
    from speechkit.models import resolve_model

    return load_run(resolve_model("ds2-mini", family="asr"))


def test_frame_seconds_comes_from_the_model(recognizer):
    expected = recognizer.frontend.hop_length * recognizer.network.time_reduction_factor / 16000
    assert frame_seconds(recognizer) == pytest.approx(expected)


def test_released_model_recovers_sentence_boundaries_that_a_uniform_split_misses(recognizer, two_sentences):
    path, spans = two_sentences
    alignment = align_audio(recognizer, path, ". ".join(_SENTENCES) + ".")
    words = alignment.words
    first_len = len(_SENTENCES[0].split())
    found = [(words[0].start, words[first_len - 1].end), (words[first_len].start, words[-1].end)]
    errors = [abs(a - b) for f, s in zip(found, spans) for a, b in zip(f, s)]
    tolerance = 0.15
    assert max(errors) < tolerance, (found, spans)
    # A uniform split of the speech by characters puts the second sentence's start far off.
    chars = len(_SENTENCES[0]) + 1
    total = len(_SENTENCES[0]) + 1 + len(_SENTENCES[1])
    uniform_start = spans[0][0] + (spans[1][1] - spans[0][0]) * chars / total
    assert abs(uniform_start - spans[1][0]) > tolerance
    assert alignment.confidence > 0.6
    assert all(words[i].end <= words[i + 1].start for i in range(len(words) - 1))


def test_wrong_transcript_gets_a_low_confidence(recognizer, two_sentences):
    path, _ = two_sentences
    wrong = align_audio(recognizer, path, "quick brown foxes jump over lazy dogs in my yard")
    assert wrong.confidence < 0.3 and wrong.log_score < -1.0


def test_piecewise_alignment_agrees_with_one_pass(recognizer, two_sentences):
    path, _ = two_sentences
    text = " ".join(_SENTENCES)
    whole = align_audio(recognizer, path, text)
    pieces = align_audio(recognizer, path, text, max_cells=1, piece_words=4)
    assert isinstance(pieces, Alignment) and pieces.text == whole.text
    assert [w.text for w in pieces.words] == [w.text for w in whole.words]
    assert max(abs(a.start - b.start) for a, b in zip(pieces.words, whole.words)) <= 0.1


def test_bad_inputs_name_the_problem(recognizer, two_sentences, tmp_path):
    path, _ = two_sentences
    with pytest.raises(TextError, match="normalises to nothing"):
        align_audio(recognizer, path, "  ")
    with pytest.raises(TextError, match="'7'"):
        align_audio(recognizer, path, "he walked 7 miles")
    with pytest.raises(AudioError, match="missing.wav: file does not exist"):
        align_audio(recognizer, str(tmp_path / "missing.wav"), "hello")
    short = str(tmp_path / "short.wav")
    audio_io.save(short, audio_io.load(path)[:4000])
    with pytest.raises(TextError, match=r"short\.wav: the transcript .* cannot be aligned to 0\.2\d s"):
        align_audio(recognizer, short, " ".join(_SENTENCES))


# -- The command line -- #

def test_cli_align_writes_json(two_sentences, tmp_path, capsys):
    path, spans = two_sentences
    out = str(tmp_path / "sub" / "align.json")
    assert main(["align", path, ". ".join(_SENTENCES), "--model", "ds2-mini", "--out", out]) == 0
    data = json.loads(open(out, encoding="utf-8").read())
    assert data["text"] == " ".join(_SENTENCES).upper()
    assert len(data["words"]) == sum(len(s.split()) for s in _SENTENCES)
    assert len(data["characters"]) == len(data["text"])
    assert abs(data["words"][0]["start"] - spans[0][0]) < 0.15
    assert not [f for f in os.listdir(tmp_path / "sub") if ".tmp." in f]
    run_dir = os.path.join(REPO, "models", "ds2-mini")
    assert main(["align", run_dir, path, _SENTENCES[0] + " " + _SENTENCES[1], "--out", out]) == 0
    assert json.loads(open(out, encoding="utf-8").read())["words"] == data["words"]
    text_file = tmp_path / "t.txt"
    text_file.write_text("He walked 3 miles.", encoding="utf-8")
    assert main(["align", path, "--text-file", str(text_file), "--model", "ds2-mini", "--out", out]) == 1
    err = capsys.readouterr().err
    assert "t.txt" in err and "'3'" in err
    assert main(["align", path, "--model", "ds2-mini", "--out", out]) == 2
