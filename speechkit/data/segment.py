"""Cut a long recording and its book text into utterances in LibriSpeech layout (``speechkit data segment``).

LibriSpeech was made this way (Panayotov et al. 2015): LibriVox chapters were aligned to their
Project Gutenberg text and cut at pauses into utterances of at most 35 s. Here:

1. The book text is split into sentences (``split_sentences``) and each is normalised
   (``speechkit.asr.align.check_text``); one with characters outside the vocabulary is rejected,
   named, and the rest go on.
2. The recording is recognised window by window (``Recognizer.log_probs_file``), so
   memory holds the log-probabilities (about 14 MB per hour) and one window of audio, never the
   whole recording.
3. Each sentence is force-aligned between the anchors around it (``align_pieces``): text that is
   never spoken finds no path or a low confidence; speech that is not in the text, and long
   pauses, fall between sentences and stay out of every utterance.
4. A sentence longer than ``max_seconds`` is cut at its longest pauses between words.
5. An utterance whose confidence is below ``min_confidence``, or that overlaps a more confident
   one, is rejected and listed with the reason, never silently kept.
6. CTC emits a character on a few frames somewhere inside its sound, so the aligned span can
   end before the last sound fades. Each kept utterance's speech start and end are refined to the
   sample energy (``refine_boundaries``), within ``search_seconds`` and never into a neighbour,
   and the audio is cut ``padding_seconds`` outside them (at most half-way to the neighbour).

Outputs in ``out_dir``: ``<speaker>/<chapter>/<speaker>-<chapter>-<NNNN>.flac`` and
``<speaker>-<chapter>.trans.txt`` (the layout ``speechkit data import-librispeech`` reads);
``manifest.jsonl`` (``speechkit.data.manifest``); ``sentences.jsonl``, one line per sentence
with its status (``kept`` or ``rejected``), reason, times and confidence; and ``report.json``,
the counts (``SkipReport``) and parameters.
"""

import json
import logging
import os
import re

import librosa
import numpy as np
from tqdm import tqdm

from speechkit import audio as audio_io
from speechkit.asr.align import align_pieces, check_text, frame_seconds
from speechkit.config import atomic_write_text
from speechkit.data.manifest import SkipReport, Utterance, write_manifest
from speechkit.errors import SpeechkitError, TextError

__all__ = ["split_sentences", "refine_boundaries", "segment_recording"]

logger = logging.getLogger(__name__)

_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'\u201d\u2019)\]]))\s+")
_ENERGY_FRAME, _ENERGY_HOP = 0.02, 0.005
_BRIDGE = 4


def split_sentences(text):
    """Split book text into sentences: paragraphs at blank lines, sentences after ``. ! ?``.

    Line breaks inside a paragraph are joined (books are wrapped), and white space is collapsed.

    Args:
        text: str, the book or chapter text.

    Returns:
        list of str, the raw sentences in order (not normalised), none empty.
    """
    sentences = []
    for paragraph in re.split(r"\n\s*\n", text):
        joined = " ".join(paragraph.split())
        sentences.extend(s.strip() for s in _SENTENCE_END.split(joined) if s.strip())
    return sentences


def refine_boundaries(audio, sample_rate, start, end, *, low, high, search_seconds=0.3, floor_db=40.0):
    """Move an aligned speech span's edges to where the sound starts and fades, by frame energy.

    A frame (20 ms, 5 ms hop) is sound when its RMS lies within ``floor_db`` of the loudest frame
    inside ``[start, end]`` (the criterion of ``librosa.effects.trim``) and 10 dB above the quietest
    frame of the excerpt. The start moves back over the sound that precedes it (or on to the first
    sound, when the aligned start lies in silence), bridging dips of up to 20 ms, and the end
    likewise forward, each by at most ``search_seconds`` and never beyond ``low`` / ``high``.

    Args:
        audio: float32 [samples], an excerpt of the recording that covers ``[low, high]``, starting at ``low``.
        sample_rate: int, Hz.
        start, end: float seconds from the excerpt's start, the aligned span.
        low, high: float seconds from the excerpt's start, the limits (a neighbour or the file's edge).
        search_seconds: float >= 0, the farthest an edge moves.
        floor_db: float > 0, dB below the loudest frame that still counts as sound.

    Returns:
        (start, end): float seconds from the excerpt's start, with ``low <= start < end <= high``.
    """
    rms = librosa.feature.rms(y=audio, frame_length=round(_ENERGY_FRAME * sample_rate),
                              hop_length=round(_ENERGY_HOP * sample_rate), center=True)[0]
    level = 20 * np.log10(np.maximum(rms, 1e-10))
    times = np.arange(len(level)) * _ENERGY_HOP
    inside = level[(times >= start) & (times <= end)]
    if inside.size == 0:
        return max(low, start), min(high, end)
    sound = level > max(inside.max() - floor_db, level.min() + 10.0)

    def frame(t):
        return int(np.clip(round(t / _ENERGY_HOP), 0, len(level) - 1))

    reach = int(round(search_seconds / _ENERGY_HOP))
    first, last = frame(start), frame(end)
    lo_frame, hi_frame = max(frame(low), first - reach), min(frame(high), last + reach)
    i = first
    if sound[i]:
        while i > lo_frame and sound[max(lo_frame, i - _BRIDGE):i].any():
            i -= 1
        while i < first and not sound[i]:
            i += 1
    else:
        while i < min(last, first + reach) and not sound[i]:
            i += 1
    j = last
    if sound[j]:
        while j < hi_frame and sound[j + 1:min(hi_frame, j + _BRIDGE) + 1].any():
            j += 1
        while j > last and not sound[j]:
            j -= 1
    else:
        while j > max(i, last - reach) and not sound[j]:
            j -= 1
    new_start, new_end = max(low, i * _ENERGY_HOP), min(high, j * _ENERGY_HOP)
    if new_end <= new_start:
        return max(low, start), min(high, end)
    return float(new_start), float(new_end)


def _split_long(words, max_seconds):
    """Cut a sentence's timed words at its longest pauses until each part spans at most ``max_seconds``.

    Returns:
        list of lists of TimedUnit, or None when a single word is longer than ``max_seconds``.
    """
    if any(w.end - w.start > max_seconds for w in words):
        return None
    if words[-1].end - words[0].start <= max_seconds:
        return [words]
    gaps = [words[k + 1].start - words[k].end for k in range(len(words) - 1)]
    k = int(np.argmax(gaps))
    return _split_long(words[:k + 1], max_seconds) + _split_long(words[k + 1:], max_seconds)


def _confidence(words):
    """The words' geometric mean confidence, weighted by their spans (as over the frames of the part)."""
    spans = np.array([w.end - w.start for w in words])
    return float(np.exp(np.average([np.log(max(w.confidence, 1e-300)) for w in words], weights=spans)))


def _default_speaker(path):
    stem = re.sub(r"[^A-Za-z0-9]", "", os.path.splitext(os.path.basename(path))[0])
    return stem or "0"


def segment_recording(recognizer, audio_path, text, out_dir, *, speaker=None, chapter="0", max_seconds=20.0,
                      min_confidence=0.2, padding_seconds=0.15, search_seconds=0.3, margin_seconds=2.0,
                      progress=False, source_text=None):
    """Cut ``audio_path`` into utterances of at most ``max_seconds``, one per sentence of ``text`` (or part of one).

    Args:
        recognizer: ``speechkit.asr.inference.Recognizer``, the model whose CTC output aligns.
        audio_path: str, the long recording (any libsndfile format and rate).
        text: str, the book text read in the recording (more or less of it).
        out_dir: str, the folder to write (created; files of the same names are replaced).
        speaker: str of letters and digits, the speaker id; default: the recording's file name.
        chapter: str of letters and digits, the chapter id.
        max_seconds: float > 0, the longest utterance's speech.
        min_confidence: float in [0, 1], the lowest confidence an utterance is kept with: the
            geometric mean posterior of its CTC path over its frames (``speechkit.asr.align``).
        padding_seconds: float >= 0, audio kept beyond the speech on each side (at most half-way
            to the neighbouring utterance).
        search_seconds: float >= 0, how far ``refine_boundaries`` may move an edge.
        margin_seconds: float >= 0, how far beyond its neighbouring anchors a sentence is searched.
        progress: bool, show progress bars.
        source_text: optional str naming the text, for messages.

    Returns:
        dict: the report written to ``out_dir/report.json`` (counts, seconds, paths, parameters).

    Raises:
        AudioError: the recording is missing or unreadable;
        TextError: no sentence of the text can be aligned (empty, or all outside the vocabulary);
        SpeechkitError: bad ids or limits.
    """
    speaker = _default_speaker(audio_path) if speaker is None else str(speaker)
    chapter = str(chapter)
    for name, value in (("speaker", speaker), ("chapter", chapter)):
        if not re.fullmatch(r"[A-Za-z0-9]+", value):
            raise SpeechkitError(f"{name} id must be letters and digits (LibriSpeech ids hold no '-'), "
                                 f"received {value!r}")
    if max_seconds <= 0 or not 0 <= min_confidence <= 1:
        raise SpeechkitError(f"need max_seconds > 0 and min_confidence in [0, 1], received {max_seconds}, "
                             f"{min_confidence}")
    text_name = source_text or "text"
    skips = SkipReport()
    sentences = []
    for i, raw in enumerate(split_sentences(text)):
        try:
            sentences.append({"index": i, "raw": raw,
                              "text": check_text(raw, recognizer.vocabulary, source=f"{text_name} sentence {i + 1}")})
        except TextError as err:
            reason = "empty_text" if "normalises to nothing" in str(err) else "unknown_characters"
            skips.add(reason, f"sentence {i + 1}", err)
            sentences.append({"index": i, "raw": raw, "text": None, "status": "rejected", "reason": reason,
                              "detail": str(err)})
    usable = [s for s in sentences if s["text"] is not None]
    if not usable:
        raise TextError(f"{text_name}: no sentence to align (the text is empty or every sentence holds characters "
                        "outside the vocabulary)")
    rate = recognizer.frontend.sample_rate
    duration = audio_io.info(audio_path)[0]
    log_probs = recognizer.log_probs_file(audio_path, progress=progress)
    step = frame_seconds(recognizer)
    alignments = align_pieces(log_probs, [s["text"] for s in usable], vocabulary=recognizer.vocabulary,
                              frame_seconds=step, source=audio_path, margin_seconds=margin_seconds,
                              progress=progress)
    candidates = []
    for sentence, alignment in zip(usable, alignments):
        if alignment is None:
            sentence.update(status="rejected", reason="not_found", detail="no CTC path near its anchors")
            skips.add("not_found", f"sentence {sentence['index'] + 1}", sentence["text"])
            continue
        sentence.update(start=round(alignment.start, 3), end=round(alignment.end, 3),
                        confidence=round(alignment.confidence, 4))
        parts = _split_long(list(alignment.words), max_seconds)
        if parts is None:
            sentence.update(status="rejected", reason="too_long", detail=f"a word is longer than {max_seconds} s")
            skips.add("too_long", f"sentence {sentence['index'] + 1}", sentence["text"])
            continue
        sentence["parts"] = []
        for words in parts:
            conf = alignment.confidence if len(parts) == 1 else _confidence(words)
            part = {"sentence": sentence, "text": " ".join(w.text for w in words), "start": words[0].start,
                    "end": words[-1].end, "confidence": conf, "status": "kept"}
            sentence["parts"].append(part)
            candidates.append(part)
    candidates.sort(key=lambda p: p["start"])
    for part in candidates:
        if part["confidence"] < min_confidence:
            part.update(status="rejected", reason="low_confidence")
    last = None
    for part in (p for p in candidates if p["status"] == "kept"):
        if last is None or last["end"] <= part["start"]:
            last = part
            continue
        loser = last if last["confidence"] < part["confidence"] else part
        loser.update(status="rejected", reason="overlap")
        last = part if loser is last else last
    kept = [p for p in candidates if p["status"] == "kept"]
    for part in candidates:
        if part["status"] == "rejected":
            skips.add(part["reason"], f"sentence {part['sentence']['index'] + 1}",
                      f"{part['text']!r} at {part['start']:.2f}-{part['end']:.2f} s, confidence "
                      f"{part['confidence']:.3f}")
    folder = os.path.join(out_dir, speaker, chapter)
    os.makedirs(folder, exist_ok=True)
    utterances, lines = [], []
    for n, part in enumerate(tqdm(kept, desc="cut", unit="utt", disable=not progress)):
        low = kept[n - 1]["speech_end"] if n else 0.0
        high = kept[n + 1]["start"] if n + 1 < len(kept) else duration
        lo, hi = max(0.0, low), min(duration, high)
        excerpt = audio_io.load(audio_path, sample_rate=rate, offset=lo, duration=hi - lo)
        start, end = refine_boundaries(excerpt, rate, part["start"] - lo, part["end"] - lo, low=0.0,
                                       high=len(excerpt) / rate, search_seconds=search_seconds)
        part.update(speech_start=lo + start, speech_end=lo + end)
    for n, part in enumerate(kept):
        before = part["speech_start"] - (kept[n - 1]["speech_end"] if n else 0.0)
        after = (kept[n + 1]["speech_start"] if n + 1 < len(kept) else duration) - part["speech_end"]
        cut_start = part["speech_start"] - min(padding_seconds, before / 2 if n else before)
        cut_end = part["speech_end"] + min(padding_seconds, after / 2 if n + 1 < len(kept) else after)
        utt_id = f"{speaker}-{chapter}-{n:04d}"
        path = os.path.join(folder, utt_id + ".flac")
        audio = audio_io.load(audio_path, sample_rate=rate, offset=cut_start, duration=cut_end - cut_start)
        audio_io.save(path, audio, sample_rate=rate)
        part.update(id=utt_id, cut_start=cut_start, cut_end=cut_end)
        utterances.append(Utterance(id=utt_id, audio=os.path.abspath(path), duration=len(audio) / rate,
                                    text=part["text"], speaker=speaker))
        lines.append(f"{utt_id} {part['text']}")
    atomic_write_text(os.path.join(folder, f"{speaker}-{chapter}.trans.txt"), "".join(x + "\n" for x in lines))
    manifest = os.path.join(out_dir, "manifest.jsonl")
    write_manifest(manifest, utterances)
    records = []
    for sentence in sentences:
        base = {"sentence": sentence["index"] + 1, "raw": sentence["raw"], "text": sentence["text"]}
        if "parts" not in sentence:
            records.append({**base, **{k: sentence.get(k) for k in ("status", "reason", "detail", "start", "end",
                                                                      "confidence")}})
            continue
        for part in sentence["parts"]:
            record = {**base, "part_text": part["text"], "status": part["status"], "reason": part.get("reason"),
                      "id": part.get("id"), "start": round(part["start"], 3), "end": round(part["end"], 3),
                      "confidence": round(part["confidence"], 4)}
            for key in ("speech_start", "speech_end", "cut_start", "cut_end"):
                if key in part:
                    record[key] = round(part[key], 3)
            records.append(record)
    atomic_write_text(os.path.join(out_dir, "sentences.jsonl"),
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    kept_seconds = sum(u.duration for u in utterances)
    report = {"audio": os.path.abspath(audio_path), "seconds": round(duration, 3), "sentences": len(sentences),
              "utterances": len(utterances), "kept_seconds": round(kept_seconds, 3),
              "rejected": skips.to_dict(), "manifest": manifest,
              "parameters": {"speaker": speaker, "chapter": chapter, "max_seconds": max_seconds,
                             "min_confidence": min_confidence, "padding_seconds": padding_seconds,
                             "search_seconds": search_seconds, "margin_seconds": margin_seconds,
                             "frame_seconds": step, "model": recognizer.run_dir}}
    atomic_write_text(os.path.join(out_dir, "report.json"), json.dumps(report, indent=2) + "\n")
    logger.info("%s: %d utterances, %.1f of %.1f s kept; %d sentences, %s", out_dir, len(utterances), kept_seconds,
                duration, len(sentences), skips.summary())
    return report
