"""CTC forced alignment: where each word and character of a known transcript is spoken.

A Deep Speech 2 network gives per-frame log-probabilities over the vocabulary ([frames, vocab],
blank at 0). Given the transcript, the best CTC path (Viterbi, Graves et al. 2006; the
"forced alignment" of torchaudio's ``forced_align`` and of ctc-segmentation, Kürzinger et al.
2020) visits the states ``blank, c1, blank, c2, ..., cN, blank``: a state repeats, moves on by
one, or skips a blank between two different labels (two equal labels in a row need a blank
between them). The kernel is compiled with numba and keeps only one int8 back-pointer per cell,
so a [frames x (2N+1)] trellis of tens of millions of cells fits in tens of MB.

Output frame ``k`` covers the audio from ``k * frame_seconds`` to ``(k + 1) * frame_seconds``,
where ``frame_seconds`` is the front end's hop times the network's time reduction factor
(``frame_seconds``). A character spans the frames on which the path emits it (not the blanks
around it), a word the span from its first character's first frame to its last character's last.
The confidence of a character is the geometric mean posterior probability (``exp`` of the mean
log-probability) of its label over the frames that emit it; that of a word or a whole alignment
is the geometric mean posterior of the path's class, label or blank, over every frame of its
span. Near 1 the network hears the transcript there; near 0 the transcript is forced onto other
sound. A forced blank over speech counts against it, so a wrong text cannot score well by picking
one good frame per letter, and the geometric mean lets a few impossible frames weigh more than
many easy ones (on the benchmark chapters it separates read from unread sentences where the
arithmetic mean does not: BENCHMARKS.md).

Long recordings are aligned piecewise (``align_pieces``): the greedy transcript is matched to the
text word by word (rapidfuzz's Levenshtein alignment: 10,000 against 10,000 words in well under a
second), runs of agreeing words become anchors (the recursive anchored alignment of Moreno et al.
1998; LibriSpeech, Panayotov et al. 2015, also matched a first-pass transcript to the book), and
each piece of text is aligned on its own between the anchors around it, with a free start and end
(frames off the path score as if recognised freely: ``ctc_forced_align``), so unspoken text,
unscripted speech and long pauses stay outside the pieces.
"""

import dataclasses
import json
import logging
import re
import unicodedata

import numba
import numpy as np
from rapidfuzz.distance import Levenshtein
from tqdm import tqdm

from speechkit import text as text_norm
from speechkit.config import atomic_write_text
from speechkit.errors import TextError

__all__ = [
    "MAX_CELLS",
    "TimedUnit",
    "Alignment",
    "frame_seconds",
    "check_text",
    "ctc_forced_align",
    "align_log_probs",
    "greedy_words",
    "anchor_words",
    "align_pieces",
    "align_audio",
]

logger = logging.getLogger(__name__)

MAX_CELLS = 40_000_000
"""Largest trellis (frames x states) aligned in one piece; longer inputs are aligned piecewise."""

_START, _STAY, _NEXT, _SKIP = 3, 0, 1, 2
_TIE = 1e-6
_SPOKEN_SIGNS = "%&#@*\u00a7\u00b6\u2030\u2020"
"""Punctuation (Unicode category P) that is read aloud ("percent", "and"), so it cannot just separate words."""


# -- Data -- #

@dataclasses.dataclass(frozen=True)
class TimedUnit:
    """A word or character with its place in the audio.

    Attributes:
        text: str, the word or character (a space is a character of its own).
        start: float seconds, the start of its first frame.
        end: float seconds, the end of its last frame (> start).
        confidence: float in [0, 1], geometric mean posterior of the path's class over its frames:
            for a character, its label on the frames that emit it; for a word, the label or blank of
            every frame from its first character's first frame to its last character's last.
    """

    text: str
    start: float
    end: float
    confidence: float

    def to_dict(self):
        return {"text": self.text, "start": round(self.start, 3), "end": round(self.end, 3),
                "confidence": round(self.confidence, 4)}


@dataclasses.dataclass(frozen=True)
class Alignment:
    """A transcript aligned to audio.

    Attributes:
        text: str, the normalised transcript that was aligned.
        words: tuple of TimedUnit, one per word, in order.
        characters: tuple of TimedUnit, one per character of ``text`` (spaces included), in order.
        start, end: float seconds, the first character's start and the last one's end.
        confidence: float in [0, 1], geometric mean posterior of the path's class (label or blank)
            over every frame from ``start`` to ``end``.
        log_score: float <= 0, mean log-probability per frame of the best path (blanks included).
        frame_seconds: float, the duration of one output frame.
        path_frames: int, the frames from ``start`` to ``end`` (the ones ``confidence`` averages).
        source: str or None, the audio the alignment belongs to.
    """

    text: str
    words: tuple
    characters: tuple
    start: float
    end: float
    confidence: float
    log_score: float
    frame_seconds: float
    path_frames: int
    source: str = None

    @property
    def min_word_confidence(self):
        """float, the lowest word confidence (1.0 for no words)."""
        return min((w.confidence for w in self.words), default=1.0)

    def to_dict(self):
        return {"source": self.source, "text": self.text, "start": round(self.start, 3), "end": round(self.end, 3),
                "confidence": round(self.confidence, 4), "min_word_confidence": round(self.min_word_confidence, 4),
                "log_score": round(self.log_score, 4), "frame_seconds": self.frame_seconds,
                "words": [w.to_dict() for w in self.words], "characters": [c.to_dict() for c in self.characters]}

    def save(self, path):
        """Atomically write ``to_dict()`` as JSON to ``path``."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")


def frame_seconds(recognizer):
    """float, seconds per output frame of ``recognizer``: front-end hop x the network's time reduction factor."""
    frontend = recognizer.frontend
    return frontend.hop_length * int(recognizer.time_reduction_factor) / frontend.sample_rate


# -- Text -- #

def check_text(text, vocabulary, *, source=None):
    """Normalise ``text`` for alignment, refusing characters that would be silently lost.

    Punctuation and white space only separate words, and accented letters fold to their base
    letter (``speechkit.text.normalize``); digits, symbols, signs that are read aloud and letters
    outside the vocabulary (``42``, ``%``, ``&``, ``ß``) would be dropped although they are spoken,
    so they raise instead.

    Args:
        text: str, the raw transcript.
        vocabulary: ``speechkit.text.Vocabulary``.
        source: optional str naming the text, for the message.

    Returns:
        str, the normalised transcript (non-empty, every character in ``vocabulary``).

    Raises:
        TextError: the text is empty after normalisation, or holds characters outside the vocabulary.
    """
    where = f"{source}: " if source else ""
    folded = unicodedata.normalize("NFKD", text)
    bad = sorted({ch for ch in folded if not unicodedata.combining(ch) and not ch.isspace()
                  and (ch in _SPOKEN_SIGNS or not unicodedata.category(ch).startswith("P"))
                  and ch.upper() not in vocabulary.characters})
    if bad:
        raise TextError(f"{where}text holds characters outside the vocabulary {vocabulary.characters!r}: "
                        + ", ".join(repr(ch) for ch in bad) + " (spell numbers and symbols out as words)")
    normalized = text_norm.normalize(text, source=source)
    vocabulary.encode(normalized)
    return normalized


# -- The Viterbi kernel -- #

@numba.njit(cache=True, nogil=True)
def _viterbi(log_probs, labels, blank, garbage, free_start, free_end, back):
    """Fill ``back`` [frames, 2N+1] and return (best score, last frame, last state).

    ``garbage[t]`` is the score of frame t off the path (used with a free start or end).
    """
    num_frames = log_probs.shape[0]
    num_states = 2 * labels.shape[0] + 1
    neg = -np.inf
    prev = np.full(num_states, neg)
    cur = np.full(num_states, neg)
    total_garbage = 0.0
    for t in range(num_frames):
        total_garbage += garbage[t]
    before = 0.0
    best, end_t, end_s = neg, -1, -1
    for t in range(num_frames):
        for s in range(num_states):
            label = blank if s % 2 == 0 else labels[s // 2]
            if t == 0:
                score = 0.0 if s <= 1 else neg
                arg = _START
            else:
                score = prev[s]
                arg = _STAY
                if s >= 1 and prev[s - 1] > score:
                    score = prev[s - 1]
                    arg = _NEXT
                if s >= 3 and s % 2 == 1 and labels[s // 2] != labels[s // 2 - 1] and prev[s - 2] > score:
                    score = prev[s - 2]
                    arg = _SKIP
                if free_start and s <= 1 and score < before - _TIE:
                    score = before
                    arg = _START
            cur[s] = score + log_probs[t, label] if score > neg else neg
            back[t, s] = arg
        before += garbage[t]
        if free_end or t == num_frames - 1:
            after = total_garbage - before if free_end else 0.0
            for s in range(max(0, num_states - 2), num_states):
                if cur[s] + after > best + _TIE:
                    best, end_t, end_s = cur[s] + after, t, s
        prev, cur = cur, prev
    return best, end_t, end_s


@numba.njit(cache=True, nogil=True)
def _backtrace(back, end_t, end_s, states):
    """Write the best path's state per frame into ``states`` (left -1 off the path); return the first frame."""
    t, s = end_t, end_s
    while True:
        states[t] = s
        arg = back[t, s]
        if arg == _START or t == 0:
            return t
        s -= arg
        t -= 1


def ctc_forced_align(log_probs, labels, *, blank=0, free_start=False, free_end=False):
    """The best CTC path of ``labels`` through ``log_probs`` (Viterbi).

    With a free start or end, the frames before or after the path are "garbage": each scores the
    log-probability of its most likely class, as if it were recognised freely. Unscripted speech
    and other text then stay off the path (the transcript's labels score far below the frame's
    best there), while the path gains nothing by reaching into them over a pause (a blank in
    silence scores what garbage does) and loses nothing by keeping the frames on which its first
    and last labels are the most likely class: ties go to the path, so those frames are not trimmed.

    Args:
        log_probs: float [frames, vocab], log-probabilities of the valid frames only.
        labels: sequence of int class ids, non-empty, without blanks.
        blank: int, the blank class.
        free_start: bool, the path may start at any frame; otherwise it starts at frame 0.
        free_end: bool, the path may end at any frame; otherwise it ends at the last frame.

    Returns:
        (tokens, first, last, score): int32 [frames] holding, per frame, the index into ``labels``
        the path emits there, or -1 for a blank or a frame off the path; the path's first and last
        frame (int); and the path's log-probability (float, garbage not included).

    Raises:
        ValueError: no path exists (the labels need more frames than there are: one per label
            plus one blank between each pair of equal neighbours), or bad shapes.
    """
    log_probs = np.ascontiguousarray(log_probs, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if log_probs.ndim != 2 or labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"need log_probs [frames, vocab] and 1-D non-empty labels, received shapes "
                         f"{log_probs.shape} and {labels.shape}")
    if labels.min() < 0 or labels.max() >= log_probs.shape[1] or np.any(labels == blank):
        raise ValueError(f"labels must lie in [0, {log_probs.shape[1]}) and exclude the blank {blank}")
    needed = labels.size + int(np.count_nonzero(labels[1:] == labels[:-1]))
    if log_probs.shape[0] < needed:
        raise ValueError(f"{labels.size} labels need at least {needed} frames, the audio has {log_probs.shape[0]}")
    back = np.empty((log_probs.shape[0], 2 * labels.size + 1), np.int8)
    garbage = log_probs.max(axis=1).astype(np.float64)
    score, end_t, end_s = _viterbi(log_probs, labels, int(blank), garbage, bool(free_start), bool(free_end), back)
    if not np.isfinite(score):
        raise ValueError(f"no CTC path of {labels.size} labels through {log_probs.shape[0]} frames")
    states = np.full(log_probs.shape[0], -1, np.int64)
    first = int(_backtrace(back, end_t, end_s, states))
    tokens = np.where(states % 2 == 1, states // 2, -1).astype(np.int32)
    path = np.arange(first, end_t + 1)
    emitted = tokens[first:end_t + 1]
    classes = np.where(emitted >= 0, labels[np.maximum(emitted, 0)], blank)
    return tokens, first, int(end_t), float(log_probs[path, classes].astype(np.float64).sum())


# -- One transcript -- #

def align_log_probs(log_probs, text, *, vocabulary, frame_seconds, source=None, free_start=False, free_end=False,
                    frame_offset=0, max_word_gap_seconds=0.4):
    """Align a normalised ``text`` to ``log_probs`` and time its words and characters.

    With a free end, a pause costs the path nothing, so it could keep a weakly heard last letter
    (the silent E of "SUZANNE") for a better match in the speech after the pause. When two letters
    of the last word lie more than ``max_word_gap_seconds`` apart, the window is cut just after the
    first of them and the text aligned again; likewise for the first word with a free start.

    Args:
        log_probs: float [frames, vocabulary.size], log-probabilities over the true frames only.
        text: str, normalised (``check_text``), non-empty.
        vocabulary: ``speechkit.text.Vocabulary`` (blank at 0).
        frame_seconds: float > 0, seconds per frame (``frame_seconds(recognizer)``).
        source: optional str, the audio's name, for messages and the result.
        free_start, free_end: bool, see ``ctc_forced_align``.
        frame_offset: int, frames before ``log_probs[0]`` in the recording (added to every time).
        max_word_gap_seconds: float > 0, the longest silence between two letters of a word.

    Returns:
        Alignment.

    Raises:
        TextError: naming ``source``: the transcript is too long for the audio (no CTC path).
    """
    labels = np.array(vocabulary.encode(text), np.int64)
    try:
        tokens, first, last, score = ctc_forced_align(log_probs, labels, blank=text_norm.BLANK_INDEX,
                                                      free_start=free_start, free_end=free_end)
    except ValueError as err:
        seconds = len(log_probs) * frame_seconds
        raise TextError(f"{source or 'audio'}: the transcript ({len(text)} characters) cannot be aligned to "
                        f"{seconds:.2f} s of audio: {err}") from None
    emitted = tokens[first:last + 1]
    classes = np.where(emitted >= 0, labels[np.maximum(emitted, 0)], text_norm.BLANK_INDEX)
    log_posterior = log_probs[np.arange(first, last + 1), classes].astype(np.float64)
    on_label = np.flatnonzero(emitted >= 0)
    bounds = np.searchsorted(emitted[on_label], np.arange(len(labels) + 1))
    runs = [(on_label[bounds[i]], on_label[bounds[i + 1] - 1] + 1) for i in range(len(labels))]
    window = _edge_word_window(text, runs, first, len(log_probs), free_start, free_end,
                               max(1, int(round(max_word_gap_seconds / frame_seconds))))
    if window is not None:
        lo, hi = window
        try:
            return align_log_probs(log_probs[lo:hi], text, vocabulary=vocabulary, frame_seconds=frame_seconds,
                                   source=source, free_start=free_start, free_end=free_end,
                                   frame_offset=frame_offset + lo, max_word_gap_seconds=max_word_gap_seconds)
        except TextError:
            pass

    def unit(piece, lo, hi):
        offset = frame_offset + first
        return TimedUnit(piece, (offset + lo) * frame_seconds, (offset + hi) * frame_seconds,
                         float(np.exp(log_posterior[lo:hi].mean())))

    characters = tuple(unit(ch, *runs[i]) for i, ch in enumerate(text))
    words = tuple(unit(m.group(), runs[m.start()][0], runs[m.end() - 1][1]) for m in re.finditer(r"[^ ]+", text))
    whole = unit(text, runs[0][0], runs[-1][1])
    return Alignment(text=text, words=words, characters=characters, start=whole.start, end=whole.end,
                     confidence=whole.confidence, log_score=score / (last - first + 1),
                     frame_seconds=float(frame_seconds), path_frames=runs[-1][1] - runs[0][0], source=source)


def _edge_word_window(text, runs, first, num_frames, free_start, free_end, max_gap):
    """(lo, hi) frames that cut off a letter of the first or last word pulled over a pause, or None."""
    words = [m.span() for m in re.finditer(r"[^ ]+", text)]
    lo, hi = 0, num_frames
    if free_end:
        a, b = words[-1]
        gaps = [k for k in range(a + 1, b) if runs[k][0] - runs[k - 1][1] > max_gap]
        if gaps:
            hi = first + runs[gaps[0] - 1][1] + max_gap
    if free_start:
        a, b = words[0]
        gaps = [k for k in range(a + 1, b) if runs[k][0] - runs[k - 1][1] > max_gap]
        if gaps:
            lo = first + runs[gaps[-1]][0] - max_gap
    return None if (lo, hi) == (0, num_frames) else (lo, hi)


# -- Anchors: where the greedy transcript agrees with the text -- #

def greedy_words(log_probs, vocabulary):
    """The best-path words with their frames.

    Args:
        log_probs: float [frames, vocabulary.size].
        vocabulary: ``speechkit.text.Vocabulary``.

    Returns:
        list of ``(word, first_frame, last_frame)``: str and ints, in order.
    """
    best = np.asarray(log_probs).argmax(axis=1)
    change = np.flatnonzero(np.concatenate([[True], best[1:] != best[:-1]]))
    words, current, first, last = [], [], 0, 0
    space = vocabulary.encode(" ")[0]
    for t in change:
        label = int(best[t])
        if label == text_norm.BLANK_INDEX:
            continue
        if label == space:
            if current:
                words.append(("".join(current), first, last))
            current = []
            continue
        end = t
        while end + 1 < len(best) and best[end + 1] == label:
            end += 1
        if not current:
            first = int(t)
        current.append(vocabulary.decode([label]))
        last = int(end)
    if current:
        words.append(("".join(current), first, last))
    return words


def anchor_words(hypothesis, reference, *, min_run=3):
    """Pairs of reference and hypothesis word positions that agree within a run of agreeing words.

    The two word lists are aligned by Levenshtein distance (rapidfuzz, linear memory); a word is
    an anchor when it lies in a run of at least ``min_run`` consecutive equal words, which chance
    agreements of short common words rarely form.

    Args:
        hypothesis: list of str, recognised words.
        reference: list of str, the text's words.
        min_run: int >= 1.

    Returns:
        list of ``(reference_index, hypothesis_index)``, increasing in both.
    """
    pairs = []
    for tag, ref_lo, ref_hi, hyp_lo, hyp_hi in Levenshtein.opcodes(reference, hypothesis):
        if tag == "equal" and ref_hi - ref_lo >= min_run:
            pairs.extend(zip(range(ref_lo, ref_hi), range(hyp_lo, hyp_hi)))
    return pairs


def align_pieces(log_probs, pieces, *, vocabulary, frame_seconds, source=None, min_run=3, margin_seconds=2.0,
                 progress=False):
    """Align each of several normalised texts somewhere in a long recording, in reading order.

    Each piece is searched between the anchors (``anchor_words``) just before and just after it,
    widened by ``margin_seconds``, with a free start and end, so it needs memory for that window
    only. A piece with no CTC path there gets None; a piece that is not spoken gets a low
    confidence: the caller decides what to keep.

    Args:
        log_probs: float [frames, vocabulary.size], the whole recording.
        pieces: list of str, normalised texts in reading order.
        vocabulary, frame_seconds, source: as ``align_log_probs``.
        min_run: int, the shortest run of agreeing words that anchors.
        margin_seconds: float >= 0, how far beyond the neighbouring anchors a piece is searched.
        progress: bool, show a progress bar.

    Returns:
        list of (Alignment or None), one per piece.
    """
    hypothesis = greedy_words(log_probs, vocabulary)
    reference, owner = [], []
    for i, piece in enumerate(pieces):
        words = piece.split()
        reference.extend(words)
        owner.extend([i] * len(words))
    anchors = anchor_words([w for w, _, _ in hypothesis], reference, min_run=min_run)
    ref_index = np.array([r for r, _ in anchors], np.int64)
    frames = np.array([(hypothesis[h][1], hypothesis[h][2]) for _, h in anchors], np.int64).reshape(-1, 2)
    logger.info("%s: %d of %d text words anchored to %d recognised words", source or "audio", len(anchors),
                len(reference), len(hypothesis))
    margin = int(round(margin_seconds / frame_seconds))
    total = len(log_probs)
    out = []
    first_word = 0
    for i, piece in enumerate(tqdm(pieces, desc="align", unit="piece", disable=not progress)):
        last_word = first_word + len(piece.split())
        before = np.searchsorted(ref_index, first_word) - 1
        after = np.searchsorted(ref_index, last_word)
        lo = int(frames[before, 1]) + 1 if before >= 0 else 0
        hi = int(frames[after, 0]) if after < len(ref_index) else total
        lo, hi = max(0, lo - margin), min(total, max(hi, lo) + margin)
        first_word = last_word
        try:
            out.append(align_log_probs(log_probs[lo:hi], piece, vocabulary=vocabulary, frame_seconds=frame_seconds,
                                       source=source, free_start=True, free_end=True, frame_offset=lo))
        except TextError as err:
            logger.debug("piece %d not found: %s", i, err)
            out.append(None)
    return out


def _pieces(text, max_words):
    """``text`` cut into pieces of at most ``max_words`` words; each but the last keeps its trailing space."""
    words = text.split()
    count = -(-len(words) // max_words)
    size = -(-len(words) // count)
    pieces = [" ".join(words[i:i + size]) for i in range(0, len(words), size)]
    return [p + " " for p in pieces[:-1]] + pieces[-1:]


def align_audio(recognizer, audio, text, *, source=None, text_source=None, max_cells=MAX_CELLS, piece_words=40,
                progress=False):
    """Align a transcript to a recording with a trained recogniser: the library side of ``speechkit align``.

    Audio whose trellis (frames x (2 x characters + 1)) fits in ``max_cells`` is aligned in one
    Viterbi pass over all of it; longer audio in pieces of about ``piece_words`` words
    (``align_pieces``), each of which must be found.

    Args:
        recognizer: ``speechkit.asr.inference.Recognizer``.
        audio: str path of an audio file (read window by window), or float32 [samples] at the
            recogniser's rate.
        text: str, the raw transcript (``check_text`` normalises it).
        source: optional str naming the audio; defaults to the path.
        text_source: optional str naming the transcript (a file) in messages about it.
        max_cells: int, the largest single trellis.
        piece_words: int > 0, words per piece for long audio.
        progress: bool, show progress bars.

    Returns:
        Alignment.

    Raises:
        AudioError: the audio is missing, unreadable or empty;
        TextError: naming the audio: the text is empty, holds characters outside the vocabulary,
            is too long for the audio, or (long audio) a piece of it is not found.
    """
    source = source or (audio if isinstance(audio, str) else "audio")
    vocabulary = recognizer.vocabulary
    text = check_text(text, vocabulary, source=text_source or f"transcript of {source}")
    if isinstance(audio, str):
        log_probs = recognizer.log_probs_file(audio, progress=progress)
    else:
        log_probs = recognizer.log_probs([audio])[0]
    step = frame_seconds(recognizer)
    if len(log_probs) * (2 * len(text) + 1) <= max_cells:
        return align_log_probs(log_probs, text, vocabulary=vocabulary, frame_seconds=step, source=source)
    pieces = _pieces(text, piece_words)
    found = align_pieces(log_probs, pieces, vocabulary=vocabulary, frame_seconds=step, source=source,
                         progress=progress)
    missing = [i for i, a in enumerate(found) if a is None]
    if missing:
        raise TextError(f"{source}: {len(missing)} of {len(pieces)} pieces of the transcript were not found in the "
                        f"audio, the first: {pieces[missing[0]][:80]!r}")
    return _join(found, step, source)


def _join(alignments, step, source):
    """One Alignment from consecutive pieces (``_pieces``: every piece but the last ends in a space).

    Its confidence (geometric) and log score are the pieces' averages, weighted by their frames.
    """
    spoken = np.array([a.path_frames for a in alignments], np.float64)
    path_frames = np.array([round((a.end - a.start) / step) for a in alignments], np.float64)
    return Alignment(text="".join(a.text for a in alignments), words=tuple(w for a in alignments for w in a.words),
                     characters=tuple(c for a in alignments for c in a.characters), start=alignments[0].start,
                     end=alignments[-1].end,
                     confidence=float(np.exp(np.average([np.log(max(a.confidence, 1e-300)) for a in alignments],
                                                        weights=spoken))),
                     log_score=float(np.average([a.log_score for a in alignments], weights=path_frames)),
                     frame_seconds=step, path_frames=int(spoken.sum()), source=source)
