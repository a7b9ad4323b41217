"""Sentences from plain-text books (Project Gutenberg style), normalised as LibriSpeech transcripts.

The mini corpus speaks these sentences and its language model learns from them, so one extractor
serves both: what the engines say and what the LM reads are the same normalised text.
"""

import dataclasses
import os
import re

from speechkit.errors import TextError
from speechkit.text import normalize

__all__ = ["DEFAULT_BOOKS_DIR", "BookText", "split_sentences", "extract_sentences"]

DEFAULT_BOOKS_DIR = os.path.normpath(
    os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "corpus", "books"))

_START = re.compile(r"^\s*\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG", re.IGNORECASE)
_END = re.compile(r"^\s*(\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG|END OF (THE )?PROJECT GUTENBERG)", re.IGNORECASE)
_BOILERPLATE = re.compile(r"gutenberg|\be-?text|\be-?book|https?:|www\.|produced by|transcriber|proofread|copyright|"
                          r"first published|table of contents|^\s*(title|author|release date|language|illustrator|"
                          r"character set encoding|last updated|posting date):", re.IGNORECASE)
_BYLINE = re.compile(r"by(\s+\S+){0,5}", re.IGNORECASE)
_HEADING = re.compile(r"^\s*(chapter|volume|book|part|letter|stave|section|contents)\b[\s.:]*([ivxlcdm]+|\d+|[a-z-]+)?"
                      r"\b[.:]?\s*", re.IGNORECASE)
_ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "rev": "reverend", "hon": "honourable",
    "esq": "esquire", "messrs": "messieurs", "capt": "captain", "col": "colonel", "gen": "general",
    "lt": "lieutenant", "mme": "madame", "mlle": "mademoiselle", "sr": "senior", "jr": "junior",
}
_ABBREVIATION = re.compile(r"\b(" + "|".join(_ABBREVIATIONS) + r")\.?(?=[\s,;:]|$)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[_]*[A-Z])")
# Text whose spoken form differs from its normalised transcript: digits (normalize drops them),
# roman numerals (read as numbers), initials (read as letters), symbols and editorial brackets.
_UNSPEAKABLE = re.compile(r"\d|\b[IVXLCDM]{2,}\b|\b[A-HJ-Z]\.|[&@#$%*\[\]{}<>=+|\\/~^]")


@dataclasses.dataclass(frozen=True)
class BookText:
    """Sentences of a folder of books.

    Attributes:
        books: tuple of str, the book file names in chapter order (chapter ``i + 1`` is ``books[i]``).
        sentences: tuple of str, every non-empty normalised sentence in book order (the LM text source).
        eligible: tuple of (str, int), unique speakable sentences of the accepted length with the
            1-based chapter (book) they first occur in, in book order.
    """

    books: tuple
    sentences: tuple
    eligible: tuple


def _book_paragraphs(path):
    """Yield the prose paragraphs of one book, without Gutenberg boilerplate and headings."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        lines = re.sub(r"\r+\n?", "\n", f.read()).split("\n")
    starts = [i for i, line in enumerate(lines) if _START.search(line)]
    if starts:
        lines = lines[starts[-1] + 1:]
    end = next((i for i, line in enumerate(lines) if _END.search(line)), None)
    if end is not None:
        lines = lines[:end]
    paragraph = []
    for line in lines + [""]:
        stripped = line.strip()
        letters = [ch for ch in stripped if ch.isalpha()]
        heading = bool(_HEADING.fullmatch(stripped)) or (letters and not any(ch.islower() for ch in letters))
        if not stripped or heading or _BOILERPLATE.search(stripped):
            if paragraph and not _BYLINE.fullmatch(" ".join(paragraph)):
                yield " ".join(paragraph)
            paragraph = []
            continue
        paragraph.append(stripped)


def split_sentences(paragraph):
    """Split prose into sentences at ``.``, ``!`` or ``?`` followed by a capitalised word.

    Closing quotes stay with their sentence, and title abbreviations (``Mr.``, ``Mrs.``, ``Dr.``) and
    single-letter initials do not end a sentence.

    Args:
        paragraph: str, one paragraph of prose (line breaks already joined).

    Returns:
        list of str, the raw sentences.
    """
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(paragraph):
        before = paragraph[start:match.start() + 1]
        word = re.search(r"(\w+)[.!?]$", before)
        if word and (word.group(1).lower() in _ABBREVIATIONS or (len(word.group(1)) == 1 and word.group(1) != "I")):
            continue
        sentences.append(paragraph[start:match.end()].strip())
        start = match.end()
    tail = paragraph[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def _expand_abbreviations(sentence):
    return _ABBREVIATION.sub(lambda m: _ABBREVIATIONS[m.group(1).lower()], sentence)


def extract_sentences(books_dir, *, min_words=3, max_words=20):
    """Read ``books_dir/*.txt`` and return their normalised sentences.

    Boilerplate is dropped first: everything outside the Gutenberg START/END markers, paragraphs
    naming Gutenberg, e-texts or producers, chapter and volume headings, and all-capital lines
    (titles, dedications). Title abbreviations are spelled out (``Mr.`` becomes ``MISTER``, as in
    LibriSpeech transcripts) because both engines say them that way. A sentence is *eligible* for
    speech when it has ``min_words`` to ``max_words`` words after ``speechkit.text.normalize`` and
    holds nothing that an engine would read differently from its transcript (digits, roman numerals,
    initials, symbols).

    Args:
        books_dir: str, folder of UTF-8 ``.txt`` books.
        min_words, max_words: int, the accepted sentence length in words.

    Returns:
        BookText.

    Raises:
        TextError: the folder is missing or holds no ``.txt`` book.
    """
    if not 1 <= min_words <= max_words:
        raise TextError(f"need 1 <= min_words <= max_words, received min_words={min_words}, max_words={max_words}")
    if not os.path.isdir(books_dir):
        raise TextError(f"{books_dir}: books folder does not exist")
    books = sorted(name for name in os.listdir(books_dir) if name.endswith(".txt"))
    if not books:
        raise TextError(f"{books_dir}: no *.txt books found")
    sentences, eligible, seen = [], [], set()
    for chapter, name in enumerate(books, 1):
        for paragraph in _book_paragraphs(os.path.join(books_dir, name)):
            for raw in split_sentences(paragraph):
                raw = _expand_abbreviations(raw)
                text = normalize(raw, allow_empty=True)
                if not text:
                    continue
                sentences.append(text)
                if text in seen or _UNSPEAKABLE.search(raw) or not min_words <= text.count(" ") + 1 <= max_words:
                    continue
                seen.add(text)
                eligible.append((text, chapter))
    return BookText(books=tuple(books), sentences=tuple(sentences), eligible=tuple(eligible))
