"""Transcript files in the formats that ASR toolkits write: reading, writing and format detection.

Formats (``FORMATS``):

- ``jsonl``: one JSON object per line. speechkit manifests (``id``, ``text``, ``speaker``, ``audio``) and
  speechkit hypothesis files (``id``, ``hyp``, and ``ref``/``speaker``). As a reference the text is ``text``,
  else ``ref``; as a hypothesis ``hyp``, else ``text``.
- ``kaldi``: Kaldi ``text`` files, ``utt-id word word ...`` (an id alone is an empty transcript).
- ``tsv``: ``id<TAB>text`` or ``id<TAB>speaker<TAB>text``; a first row naming the columns (``id``, ``text``
  or ``hyp`` or ``ref`` or ``transcript``, optionally ``speaker``) is a header. ``speechkit transcribe``
  prints ``path<TAB>text``, which reads as a TSV keyed by the audio path.
- ``trn``: NIST sclite ``trn``, ``word word ... (utt-id)``.

Every reading error names the file and the line: a malformed line, a duplicate utterance id, or bytes
that are not UTF-8.
"""

import dataclasses
import json
import os

from speechkit.config import atomic_write_text
from speechkit.errors import TextError

__all__ = ["FORMATS", "Transcript", "TranscriptSet", "detect_format", "read_transcripts", "write_transcripts"]

FORMATS = ("jsonl", "kaldi", "tsv", "trn")
_TEXT_COLUMNS = ("text", "hyp", "ref", "transcript", "transcription", "sentence")


@dataclasses.dataclass(frozen=True)
class Transcript:
    """One utterance of a transcript file.

    Attributes:
        id: str, the utterance id.
        text: str, the transcript as written in the file (not normalised).
        speaker: str or None, when the file names one.
        audio: str or None, the audio path (manifests), absolute.
        line: int, 1-based line number in the file.
    """

    id: str
    text: str
    speaker: str | None = None
    audio: str | None = None
    line: int = 0


@dataclasses.dataclass
class TranscriptSet:
    """The utterances of one file, in file order, keyed by id.

    Attributes:
        path: str, the file read.
        format: str, one of ``FORMATS``.
        items: dict id -> Transcript (insertion order = file order).
    """

    path: str
    format: str
    items: dict

    def __len__(self):
        return len(self.items)

    def __contains__(self, utt_id):
        return utt_id in self.items

    def __getitem__(self, utt_id):
        return self.items[utt_id]

    @property
    def ids(self):
        return list(self.items)

    def texts(self):
        """dict id -> text."""
        return {k: t.text for k, t in self.items.items()}


def _read_lines(path):
    if not os.path.isfile(path):
        raise TextError(f"{path}: transcript file does not exist")
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = []
    for lineno, data in enumerate(raw.split(b"\n"), 1):
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise TextError(f"{path}:{lineno}: not valid UTF-8 (byte {data[err.start]:#04x} at column "
                            f"{err.start + 1}); re-encode the file as UTF-8") from None
        lines.append((lineno, line.rstrip("\r")))
    return lines


def detect_format(path):
    """Guess a transcript file's format from its name, then its first non-empty line.

    Args:
        path: str.

    Returns:
        str, one of ``FORMATS``.

    Raises:
        TextError: the file is missing or not UTF-8.
    """
    ext = os.path.splitext(path)[1].lower()
    by_ext = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".trn": "trn", ".tsv": "tsv"}
    if ext in by_ext:
        return by_ext[ext]
    for _, line in _read_lines(path):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("{"):
            return "jsonl"
        if stripped.endswith(")") and "(" in stripped:
            return "trn"
        if "\t" in line:
            return "tsv"
        return "kaldi"
    return "kaldi"


def read_transcripts(path, *, format=None, role="ref"):
    """Read a transcript file.

    Args:
        path: str.
        format: one of ``FORMATS``, or None to detect it (``detect_format``).
        role: ``"ref"`` or ``"hyp"``: which JSONL field holds the text (see the module docstring).

    Returns:
        TranscriptSet.

    Raises:
        TextError: naming ``path:line`` for a malformed line, a duplicate id, an encoding error; or an
            unknown format.
    """
    path = os.fspath(path)
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise TextError(f"{path}: unknown transcript format {fmt!r}; expected one of {FORMATS}")
    if role not in ("ref", "hyp"):
        raise TextError(f"{path}: role must be 'ref' or 'hyp', received: {role!r}")
    parse = {"jsonl": _parse_jsonl, "kaldi": _parse_kaldi, "tsv": _parse_tsv, "trn": _parse_trn}[fmt]
    items = {}
    base = os.path.dirname(os.path.abspath(path))
    header_seen = False
    for lineno, line in _read_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        if fmt == "tsv" and not header_seen:
            header_seen = True
            header = _tsv_header(line)
            if header is not None:
                parse = _tsv_with_header(header, where)
                continue
        item = parse(line, where, role=role, base=base)
        if item.id in items:
            raise TextError(f"{where}: duplicate utterance id {item.id!r} (first on line {items[item.id].line})")
        object.__setattr__(item, "line", lineno)
        items[item.id] = item
    return TranscriptSet(path=path, format=fmt, items=items)


def _parse_jsonl(line, where, *, role, base):
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as err:
        raise TextError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(entry, dict):
        raise TextError(f"{where}: expected a JSON object, received {type(entry).__name__}")
    if "id" not in entry:
        raise TextError(f"{where}: missing field 'id'")
    fields = ("text", "ref") if role == "ref" else ("hyp", "text")
    key = next((f for f in fields if f in entry), None)
    if key is None:
        raise TextError(f"{where}: missing the text field (one of {list(fields)} for a {role} file)")
    text = entry[key]
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise TextError(f"{where}: field {key!r} must be a string, received {type(text).__name__}")
    audio = entry.get("audio")
    if isinstance(audio, str) and audio:
        audio = os.path.normpath(audio if os.path.isabs(audio) else os.path.join(base, audio))
    else:
        audio = None
    speaker = entry.get("speaker")
    return Transcript(id=str(entry["id"]), text=text, speaker=None if speaker is None else str(speaker), audio=audio)


def _parse_kaldi(line, where, *, role, base):
    parts = line.strip().split(maxsplit=1)
    return Transcript(id=parts[0], text=parts[1] if len(parts) > 1 else "")


def _parse_trn(line, where, *, role, base):
    stripped = line.rstrip()
    if not stripped.endswith(")") or "(" not in stripped:
        raise TextError(f"{where}: a trn line must end with '(utterance-id)', received: {line[:80]!r}")
    open_at = stripped.rindex("(")
    utt_id = stripped[open_at + 1:-1].strip()
    if not utt_id or any(ch.isspace() for ch in utt_id):
        raise TextError(f"{where}: bad utterance id {stripped[open_at:]!r} (empty or with spaces)")
    return Transcript(id=utt_id, text=stripped[:open_at].strip())


def _parse_tsv(line, where, *, role, base):
    cells = line.split("\t")
    if len(cells) == 2:
        return Transcript(id=cells[0].strip(), text=cells[1].strip())
    if len(cells) == 3:
        return Transcript(id=cells[0].strip(), speaker=cells[1].strip(), text=cells[2].strip())
    raise TextError(f"{where}: expected 'id<TAB>text' or 'id<TAB>speaker<TAB>text', received {len(cells)} "
                    "tab-separated column(s)")


def _tsv_header(line):
    cells = [c.strip().lower() for c in line.split("\t")]
    if "id" in cells and any(c in cells for c in _TEXT_COLUMNS):
        return cells
    return None


def _tsv_with_header(header, header_where):
    id_col = header.index("id")
    speaker_col = header.index("speaker") if "speaker" in header else None

    def parse(line, where, *, role, base):
        order = ("text", "ref", "transcript", "transcription", "sentence", "hyp")
        if role == "hyp":
            order = ("hyp",) + order[:-1]
        text_col = header.index(next(c for c in order if c in header))
        cells = line.split("\t")
        if len(cells) != len(header):
            raise TextError(f"{where}: expected {len(header)} tab-separated columns as in the header "
                            f"({header_where}), received {len(cells)}")
        return Transcript(id=cells[id_col].strip(), text=cells[text_col].strip(),
                          speaker=None if speaker_col is None else cells[speaker_col].strip())

    return parse


def write_transcripts(path, transcripts, *, format):
    """Atomically write transcripts in one of ``FORMATS``.

    Args:
        path: str.
        transcripts: iterable of Transcript (or of ``(id, text)`` pairs).
        format: one of ``FORMATS``. ``jsonl`` writes ``id``, ``text`` and ``speaker`` when known.

    Raises:
        TextError: an id that the format cannot hold (empty, whitespace, or a tab or newline in the text).
    """
    if format not in FORMATS:
        raise TextError(f"{path}: unknown transcript format {format!r}; expected one of {FORMATS}")
    lines = []
    for item in transcripts:
        if not isinstance(item, Transcript):
            item = Transcript(id=item[0], text=item[1])
        text = " ".join(item.text.split())
        if not item.id or any(ch.isspace() for ch in item.id):
            raise TextError(f"{path}: utterance id {item.id!r} cannot be written (empty or with whitespace)")
        if format == "jsonl":
            entry = {"id": item.id, "text": item.text}
            if item.speaker is not None:
                entry["speaker"] = item.speaker
            lines.append(json.dumps(entry, ensure_ascii=False))
        elif format == "kaldi":
            lines.append(f"{item.id} {text}".rstrip())
        elif format == "tsv":
            lines.append(f"{item.id}\t{text}")
        else:
            lines.append(f"{text} ({item.id})".lstrip())
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return path
