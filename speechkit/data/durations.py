"""Character durations for TTS training, from CTC forced alignment with a trained ASR model.

A TTS utterance's input is its normalised transcript with one space added at each end
(``tts_text``); the edge spaces take the silence before and after the speech. The forced aligner
(``speechkit.asr.align``) gives each character of the transcript the span of ASR output frames
(30 ms for ds2-mini) on which the CTC path emits it. ``character_durations`` turns those spans
into frames of the TTS front end (10 ms): each boundary between two characters is the midpoint
of the blank frames between them, so blanks go half to each neighbour, and the durations of an
utterance sum exactly to its mel length ``1 + samples // hop``.

Why the aligner and not an alignment learned with the TTS model (monotonic alignment search,
attention): the released ASR model already hears this speech, so durations cost one inference
pass, are fixed before TTS training starts (the acoustic model trains on a plain regression loss
from its first step), and each utterance can be rejected by the alignment's confidence.
"""

import json
import logging
import os

import numpy as np
from tqdm import tqdm

from speechkit import audio as audio_io
from speechkit.asr.align import align_log_probs, check_text, frame_seconds
from speechkit.config import atomic_write_text
from speechkit.data.manifest import SkipReport, read_manifest
from speechkit.errors import AudioError, ManifestError, TextError
from speechkit.frontend import num_frames

__all__ = ["tts_text", "character_durations", "compute_durations", "read_durations"]

logger = logging.getLogger(__name__)


def tts_text(text):
    """The acoustic model's input for a normalised transcript: ``" " + text + " "`` (edge spaces hold the silence)."""
    return f" {text} "


def character_durations(alignment, mel_frames, *, hop_seconds):
    """Frames of the TTS front end for each character of ``tts_text(alignment.text)``.

    Args:
        alignment: ``speechkit.asr.align.Alignment`` of the whole utterance (times from its start).
        mel_frames: int > 0, the utterance's mel length (``speechkit.frontend.num_frames``).
        hop_seconds: float > 0, the TTS front end's frame shift.

    Returns:
        int64 numpy array [len(alignment.text) + 2], >= 0, summing to ``mel_frames``: the leading
        space (silence before the first character), each character, the trailing space.
    """
    starts = np.array([c.start for c in alignment.characters]) / hop_seconds
    ends = np.array([c.end for c in alignment.characters]) / hop_seconds
    inner = (ends[:-1] + starts[1:]) / 2.0
    bounds = np.concatenate([[0.0, starts[0]], inner, [ends[-1], float(mel_frames)]])
    bounds = np.clip(np.rint(bounds), 0, mel_frames).astype(np.int64)
    bounds = np.maximum.accumulate(bounds)
    bounds[-1] = mel_frames
    return np.diff(bounds)


def compute_durations(recognizer, manifest, out_path, *, frontend, min_confidence=0.2, batch_size=16, limit=None,
                      progress=False):
    """Align every utterance of ``manifest`` and write its character durations as JSONL.

    Each line of ``out_path``: ``{"id", "audio" (absolute path), "text" (normalised transcript),
    "input" (``tts_text``), "durations" (frames per character of ``input``), "frames" (their sum,
    the mel length), "confidence"}``. Utterances whose alignment confidence is below
    ``min_confidence``, whose text has characters the model cannot align, whose transcript is too long
    for the audio, or whose audio cannot be read are left out and counted by reason in
    ``<out_path>.report.json`` (``speechkit.data.manifest.SkipReport``).

    Args:
        recognizer: ``speechkit.asr.inference.Recognizer`` (the released ``ds2-mini``).
        manifest: str, a JSONL manifest.
        out_path: str, the durations file (written atomically).
        frontend: FrontendConfig of the TTS model (its hop and sample rate give the mel frames).
        min_confidence: float in [0, 1].
        batch_size: int > 0, utterances per forward pass.
        limit: optional int, only the first utterances of the manifest.
        progress: bool, show a progress bar.

    Returns:
        dict, the report: ``utterances``, ``kept``, ``skipped`` (counts by reason), ``mean_confidence``,
        ``hours_kept``, ``out``.

    Raises:
        ManifestError: the manifest is unreadable; ``ValueError`` for a bad ``min_confidence``.
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must lie in [0, 1], received: {min_confidence}")
    skipped = SkipReport()
    utterances = read_manifest(manifest, skip_report=skipped)
    if limit is not None:
        utterances = utterances[:limit]
    if not utterances:
        raise ManifestError(f"{manifest}: no usable utterances")
    step = frame_seconds(recognizer)
    hop_seconds = frontend.hop_length / frontend.sample_rate
    lines, confidences, seconds = [], [], 0.0
    bar = tqdm(total=len(utterances), desc="durations", unit="utt", disable=not progress)
    for first in range(0, len(utterances), batch_size):
        chunk, audios = [], []
        for utt in utterances[first:first + batch_size]:
            try:
                text = check_text(utt.text, recognizer.vocabulary, source=f"{manifest}: {utt.id}")
                audio = audio_io.load(utt.audio, sample_rate=frontend.sample_rate)
            except TextError as err:
                skipped.add("text", utt.id, err)
                continue
            except AudioError as err:
                skipped.add("audio", utt.id, err)
                continue
            chunk.append((utt, text))
            audios.append(audio)
        log_probs = recognizer.log_probs(audios) if audios else []
        for (utt, text), audio, lp in zip(chunk, audios, log_probs):
            try:
                alignment = align_log_probs(lp, text, vocabulary=recognizer.vocabulary, frame_seconds=step,
                                            source=utt.audio)
            except TextError as err:
                skipped.add("too_long_for_audio", utt.id, err)
                continue
            if alignment.confidence < min_confidence:
                skipped.add("low_confidence", utt.id, f"confidence {alignment.confidence:.3f} < {min_confidence}")
                continue
            mel_frames = int(num_frames(len(audio), frontend))
            durations = character_durations(alignment, mel_frames, hop_seconds=hop_seconds)
            lines.append(json.dumps({"id": utt.id, "audio": os.path.abspath(utt.audio), "text": text,
                                     "input": tts_text(text), "durations": durations.tolist(), "frames": mel_frames,
                                     "confidence": round(alignment.confidence, 4)}))
            confidences.append(alignment.confidence)
            seconds += len(audio) / frontend.sample_rate
        bar.update(len(utterances[first:first + batch_size]))
    bar.close()
    atomic_write_text(out_path, "".join(line + "\n" for line in lines))
    report = {"manifest": os.path.abspath(manifest), "out": os.path.abspath(out_path), "utterances": len(utterances),
              "kept": len(lines), "hours_kept": round(seconds / 3600, 4),
              "mean_confidence": round(float(np.mean(confidences)), 4) if confidences else None,
              "min_confidence": min_confidence, "frame_seconds_asr": step, "hop_seconds_tts": hop_seconds,
              "skipped": skipped.counts, "skipped_items": skipped.to_dict()}
    atomic_write_text(f"{out_path}.report.json", json.dumps(report, indent=1) + "\n")
    logger.info("%s: %d of %d utterances kept (%.2f h), skipped %s", out_path, len(lines), len(utterances),
                seconds / 3600, skipped.counts or "none")
    return report


def read_durations(path):
    """Read a durations file (``compute_durations``), checking every line.

    Returns:
        list of dict, one per utterance, ``durations`` as int64 arrays.

    Raises:
        ManifestError: naming the file and line: not JSON, a missing field, or durations that do not
            match the input's characters or sum to ``frames``.
    """
    items = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    item = json.loads(line)
                    durations = np.asarray(item["durations"], np.int64)
                    text, frames = item["input"], int(item["frames"])
                    item["audio"], item["id"]
                except (ValueError, KeyError, TypeError) as err:
                    raise ManifestError(f"{where}: not a durations line ({type(err).__name__}: {err})") from None
                if len(durations) != len(text) or durations.sum() != frames or durations.min(initial=0) < 0:
                    raise ManifestError(f"{where}: {len(durations)} durations summing to {durations.sum()} for "
                                        f"{len(text)} input characters and {frames} frames")
                item["durations"] = durations
                items.append(item)
    except OSError as err:
        raise ManifestError(f"{path}: cannot read the durations file ({err.strerror})") from None
    return items
