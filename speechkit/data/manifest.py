"""JSONL manifests: one utterance per line with id, audio path, duration, text and speaker.

Audio paths are stored relative to the manifest's folder when they lie under it, and resolved
against that folder on reading, so a corpus and its manifests can move together. A manifest is
data only: nothing in it is executed or unpickled.
"""

import collections
import dataclasses
import json
import os

import numpy as np

from speechkit.config import atomic_write_text
from speechkit.errors import ManifestError

__all__ = ["Utterance", "SkipReport", "read_manifest", "write_manifest", "even_spread", "combine_manifests",
           "write_transcripts"]

REQUIRED_FIELDS = ("id", "audio", "duration", "text", "speaker")


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One manifest entry. ``audio`` is an absolute path once read."""

    id: str
    audio: str
    duration: float
    text: str
    speaker: str


class SkipReport:
    """Counts and lists skipped items by reason, so nothing is ever dropped silently."""

    def __init__(self):
        self.items = collections.defaultdict(list)

    def add(self, reason, item, detail=""):
        self.items[reason].append({"item": str(item), "detail": str(detail)})

    @property
    def counts(self):
        return {reason: len(items) for reason, items in sorted(self.items.items())}

    @property
    def total(self):
        return sum(len(items) for items in self.items.values())

    def to_dict(self):
        return {"skipped": self.total, "by_reason": self.counts, "items": dict(self.items)}

    def summary(self):
        if not self.total:
            return "skipped 0"
        return f"skipped {self.total} (" + ", ".join(f"{k}: {v}" for k, v in self.counts.items()) + ")"

    def write(self, path):
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")


def read_manifest(path, *, skip_report=None):
    """Read a JSONL manifest into a list of ``Utterance``.

    Args:
        path: str, the manifest file.
        skip_report: optional SkipReport. When given, bad lines are counted there and skipped;
            otherwise the first bad line raises.

    Raises:
        ManifestError: naming ``path:line`` for a missing file, a line that is not JSON, or a
            line lacking required fields (unless ``skip_report`` is given).
    """
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: manifest does not exist")
    base = os.path.dirname(os.path.abspath(path))
    utterances = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                utterances.append(_parse_line(line, base, f"{path}:{lineno}"))
            except ManifestError as err:
                if skip_report is None:
                    raise
                reason = "not_json" if "not valid JSON" in str(err) else "bad_fields"
                skip_report.add(reason, f"{path}:{lineno}", err)
    return utterances


def _parse_line(line, base, where):
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{where}: not valid JSON ({err.msg})") from None
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: expected a JSON object, received {type(entry).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in entry]
    if missing:
        raise ManifestError(f"{where}: missing field(s) {missing}")
    if not isinstance(entry["audio"], str) or not entry["audio"]:
        raise ManifestError(f"{where}: 'audio' must be a non-empty path string")
    try:
        duration = float(entry["duration"])
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: 'duration' must be a number, received {entry['duration']!r}") from None
    audio = entry["audio"] if os.path.isabs(entry["audio"]) else os.path.join(base, entry["audio"])
    return Utterance(id=str(entry["id"]), audio=os.path.normpath(audio), duration=duration,
                     text=str(entry["text"]), speaker=str(entry["speaker"]))


def write_manifest(path, utterances):
    """Atomically write utterances as JSONL, with audio paths relative to the manifest when possible."""
    base = os.path.dirname(os.path.abspath(path))
    lines = []
    for utt in utterances:
        entry = dataclasses.asdict(utt)
        audio = os.path.abspath(utt.audio)
        rel = os.path.relpath(audio, base)
        entry["audio"] = audio if rel.startswith("..") else rel
        entry["duration"] = round(float(utt.duration), 4)
        lines.append(json.dumps(entry, ensure_ascii=False))
    os.makedirs(base, exist_ok=True)
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def even_spread(items, count):
    """At most ``count`` of ``items``, evenly spread over the list and in its order (all of them if fewer).

    A manifest lists each speaker's utterances together, so a spread reaches every speaker where the
    first ``count`` items would reach one or two.
    """
    if len(items) <= count:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def combine_manifests(paths, out, *, speakers=None, max_hours=None):
    """Concatenate manifests into ``out``, optionally keeping some speakers and at most some hours.

    Utterances keep their input order (the manifests in turn, each in file order); with
    ``max_hours`` the output is the longest prefix of the kept utterances within that much audio,
    so a smaller training set is always a prefix of a larger one.

    Args:
        paths: sequence of str, input JSONL manifests.
        out: str, the manifest to write (atomically).
        speakers: optional collection of str speaker ids to keep; None keeps all.
        max_hours: optional float > 0, the audio cap in hours.

    Returns:
        list of Utterance, what was written.

    Raises:
        ManifestError: an input manifest is missing or has a bad line.
    """
    keep = None if speakers is None else {str(s) for s in speakers}
    limit = float("inf") if max_hours is None else float(max_hours) * 3600.0
    utterances, seconds = [], 0.0
    for utt in (u for path in paths for u in read_manifest(path)):
        if keep is not None and utt.speaker not in keep:
            continue
        if seconds + utt.duration > limit:
            break
        utterances.append(utt)
        seconds += utt.duration
    write_manifest(out, utterances)
    return utterances


def write_transcripts(paths, out):
    """Write the transcripts of manifests to ``out``, one per line, in order (text for an LM).

    Args:
        paths: sequence of str, input JSONL manifests.
        out: str, the text file to write (atomically).

    Returns:
        int, the number of lines written.
    """
    lines = [utt.text for path in paths for utt in read_manifest(path)]
    atomic_write_text(out, "".join(line + "\n" for line in lines))
    return len(lines)
