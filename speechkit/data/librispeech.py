"""Import a LibriSpeech-layout tree (``<spk>/<chapter>/<utt>.flac`` + ``<spk>-<chapter>.trans.txt``)."""

import glob
import logging
import os
import re

from tqdm import tqdm

from speechkit import audio as audio_io
from speechkit import text as text_norm
from speechkit.data.manifest import SkipReport, Utterance, write_manifest
from speechkit.errors import AudioError, SpeechkitError

__all__ = ["import_librispeech"]

logger = logging.getLogger(__name__)

_AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg")
_DIGITS = re.compile(r"[0-9]")


def import_librispeech(root, out, *, min_duration=0.1, max_duration=35.0, report_path=None, verify=True):
    """Write a JSONL manifest for every transcribed utterance under ``root``.

    Every transcript line becomes one manifest entry or one counted, listed skip: missing audio,
    unreadable, corrupt or truncated audio, empty text (after normalisation), digits in the text
    (a character model cannot learn "42" from speech that says "forty-two"), or duration outside
    ``[min_duration, max_duration]`` seconds. Audio files with no transcript line are listed too.
    The manifest and the report are written atomically.

    Args:
        root: str, folder holding ``<spk>/<chapter>/`` subfolders (searched recursively).
        out: str, the manifest to write.
        min_duration, max_duration: float seconds, the accepted duration range.
        report_path: str, where the JSON skip report goes; defaults to ``<out>.report.json``.
        verify: bool, decode every file (``speechkit.audio.verify``) rather than read its header
            only, so that corrupt or truncated audio is skipped here, not met mid-training.

    Returns:
        (list of Utterance, SkipReport).
    """
    if not os.path.isdir(root):
        raise SpeechkitError(f"{root}: LibriSpeech root is not a directory")
    transcripts = sorted(glob.glob(os.path.join(root, "**", "*.trans.txt"), recursive=True))
    if not transcripts:
        raise SpeechkitError(
            f"{root}: no *.trans.txt transcripts found (expected <spk>/<chapter>/<spk>-<chapter>.trans.txt)")
    report = SkipReport()
    entries = []
    for trans in transcripts:
        folder = os.path.dirname(trans)
        with open(trans, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    report.add("empty_line", f"{trans}:{lineno}")
                    continue
                utt_id, _, raw_text = line.partition(" ")
                entries.append((utt_id, raw_text, folder, f"{trans}:{lineno}"))
    utterances = []
    seen_audio = set()
    for utt_id, raw_text, folder, where in tqdm(entries, desc="import", unit="utt", mininterval=1.0):
        path = next((os.path.join(folder, utt_id + ext) for ext in _AUDIO_EXTENSIONS
                     if os.path.exists(os.path.join(folder, utt_id + ext))), None)
        if path is None:
            report.add("missing_audio", where, f"no {utt_id}.flac/.wav/.ogg in {folder}")
            continue
        seen_audio.add(os.path.abspath(path))
        text = text_norm.normalize(raw_text, allow_empty=True)
        if not text:
            report.add("empty_text", path, f"transcript {raw_text!r} normalises to nothing")
            continue
        if _DIGITS.search(raw_text):
            report.add("digits_in_text", path, f"transcript {raw_text!r} has digits; spell numbers out")
            continue
        try:
            duration, _, _ = (audio_io.verify if verify else audio_io.info)(path)
        except AudioError as err:
            report.add("unreadable", path, err)
            continue
        if not min_duration <= duration <= max_duration:
            report.add("duration_out_of_range", path, f"{duration:.2f} s not in [{min_duration}, {max_duration}]")
            continue
        speaker = utt_id.split("-")[0]
        utterances.append(Utterance(id=utt_id, audio=os.path.abspath(path), duration=duration, text=text,
                                    speaker=speaker))
    for ext in _AUDIO_EXTENSIONS:
        for path in glob.glob(os.path.join(root, "**", "*" + ext), recursive=True):
            if os.path.abspath(path) not in seen_audio:
                report.add("no_transcript", path)
    write_manifest(out, utterances)
    report.write(report_path or out + ".report.json")
    logger.info("%s: wrote %d utterances (%.1f h); %s", out, len(utterances),
                sum(u.duration for u in utterances) / 3600, report.summary())
    return utterances, report
