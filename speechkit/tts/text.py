"""Text normalisation for synthesis: numbers, abbreviations and symbols to words, and long text to pieces.

The acoustic model speaks only the characters of its vocabulary (``speechkit.text.ALPHABET``: A-Z,
apostrophe, space). ``normalize_for_tts`` turns written text into them:

- common abbreviations with their period are expanded (``Dr.`` -> DOCTOR, ``St.`` -> SAINT, ``No. 5``
  -> NUMBER FIVE, ``etc.``, ``e.g.``, ``i.e.``); ``&``, ``+``, ``=``, ``@`` and ``°`` are read as words;
- currency amounts move their unit after the number (``$42`` -> FORTY TWO DOLLARS, ``£``, ``€``);
- numbers are spelled with num2words (``speechkit.scoring.normalize.spell_numbers``): integers with
  thousands commas, decimals, ordinals (``3rd``), percentages, and 1100-2099 read as years;
- accents fold to their base letter; punctuation separates words (and, in ``split_text``, phrases);
- anything else (a letter outside the vocabulary such as ``ß``, a symbol such as ``€`` without an
  amount, an emoji) raises ``TextError`` naming the characters, and so does text with nothing to say.

``split_text`` cuts text longer than the model's limit at sentence ends, then at phrase marks
(comma, semicolon, colon, dash, brackets), then between words.
"""

import re
import unicodedata

from speechkit.errors import TextError
from speechkit.scoring.normalize import spell_numbers
from speechkit.text import ALPHABET
from speechkit.text import normalize as normalize_transcript

__all__ = ["ABBREVIATIONS", "SYMBOLS", "expand", "normalize_for_tts", "split_text"]

ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miz", "dr": "doctor", "st": "saint", "jr": "junior", "sr": "senior",
    "prof": "professor", "rev": "reverend", "hon": "honourable", "capt": "captain", "col": "colonel",
    "gen": "general", "lt": "lieutenant", "sgt": "sergeant", "gov": "governor", "mt": "mount", "ft": "fort",
    "co": "company", "ltd": "limited", "inc": "incorporated", "vs": "versus", "etc": "et cetera",
    "approx": "approximately", "dept": "department", "esq": "esquire",
}
"""Abbreviations expanded when written with their period (case-insensitive)."""

SYMBOLS = {"&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "\u00b0": " degrees ", "#": " number "}
"""Symbols read as words wherever they occur."""

_CURRENCIES = {"$": "dollars", "\u00a3": "pounds", "\u20ac": "euros", "\u00a5": "yen"}
_ABBREVIATION = re.compile(r"\b(" + "|".join(sorted(ABBREVIATIONS, key=len, reverse=True)) + r")\.", re.IGNORECASE)
_LATIN = [(re.compile(r"\be\.\s?g\.", re.IGNORECASE), " for example "),
          (re.compile(r"\bi\.\s?e\.", re.IGNORECASE), " that is "),
          (re.compile(r"\bno\.(?=\s*\d)", re.IGNORECASE), " number ")]
_CURRENCY = re.compile("([" + re.escape("".join(_CURRENCIES)) + r"])\s?(\d[\d,]*(?:\.\d+)?)")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'", "\u201c": '"', "\u201d": '"'})
_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n\s*\n")
_PHRASE = re.compile(r"(?<=[,;:])\s+|\s+[-\u2013\u2014]+\s+|\s*[()\[\]]\s*")


def expand(text):
    """Abbreviations, currency amounts, symbols and numbers as words; punctuation is kept.

    Args:
        text: str.

    Returns:
        str, still mixed case and punctuated (``normalize_for_tts`` finishes it).
    """
    text = text.translate(_QUOTES)
    for pattern, words in _LATIN:
        text = pattern.sub(words, text)
    text = _ABBREVIATION.sub(lambda m: " " + ABBREVIATIONS[m.group(1).lower()] + " ", text)
    text = _CURRENCY.sub(lambda m: f" {m.group(2)} {_CURRENCIES[m.group(1)]} ", text)
    for symbol, words in SYMBOLS.items():
        text = text.replace(symbol, words)
    return spell_numbers(text, years=True)


def _check_characters(text, characters, source):
    folded = unicodedata.normalize("NFKD", text)
    bad = sorted({ch for ch in folded if not unicodedata.combining(ch) and not ch.isspace()
                  and not unicodedata.category(ch).startswith("P") and ch.upper() not in characters})
    if bad:
        where = f"{source}: " if source else ""
        raise TextError(f"{where}cannot speak the character(s) " + ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in bad)
                        + f" in {text.strip()[:80]!r}; the model speaks only {characters.strip()!r}, numbers and "
                        f"the symbols {''.join(SYMBOLS)}{''.join(_CURRENCIES)} (before an amount)")


def normalize_for_tts(text, *, characters=ALPHABET, source=None):
    """Written text to the model's characters: one upper-case string without punctuation.

    Args:
        text: str, any written English text.
        characters: str, the model's vocabulary (must hold A-Z, the apostrophe and the space).
        source: optional str naming the text, for messages.

    Returns:
        str, non-empty, every character in ``characters``.

    Raises:
        TextError: the text holds characters that cannot be spoken (named in the message), or nothing
            is left to say.
    """
    if not isinstance(text, str):
        raise TextError(f"{source or 'text'}: expected a string, received {type(text).__name__}")
    expanded = expand(text)
    _check_characters(expanded, characters, source)
    normalized = normalize_transcript(expanded, allow_empty=True)
    if not normalized:
        raise TextError(f"{source + ': ' if source else ''}nothing to say in {text[:80]!r} (empty after normalisation)")
    return normalized


def _pieces_within(units, limit, join=" "):
    """Greedily merge consecutive ``units`` (normalised strings) into pieces of at most ``limit`` characters."""
    pieces, current = [], ""
    for unit in units:
        candidate = f"{current}{join}{unit}" if current else unit
        if len(candidate) <= limit:
            current = candidate
        else:
            if current:
                pieces.append(current)
            current = unit
    if current:
        pieces.append(current)
    return pieces


def split_text(text, *, max_characters, characters=ALPHABET, source=None):
    """Normalise ``text`` and cut it into pieces the model accepts, at the most natural boundaries.

    Each sentence (ended by ``. ! ?`` or a blank line) is its own piece. A sentence longer than
    ``max_characters`` is cut at phrase marks (``, ; :``, dashes, brackets), neighbouring phrases
    merged while they fit; a phrase still too long is cut between words.

    Args:
        text: str, written text of any length.
        max_characters: int > 0, the longest piece (the model's ``max_characters`` minus the two edge
            spaces its input adds).
        characters: str, the model's vocabulary.
        source: optional str naming the text.

    Returns:
        list of str, normalised pieces in order, each non-empty and at most ``max_characters`` long.

    Raises:
        TextError: unspeakable characters, nothing to say, or a single word longer than
            ``max_characters``.
    """
    expanded = expand(text)
    _check_characters(expanded, characters, source)
    pieces = []
    for sentence in _SENTENCE.split(expanded.strip()):
        normalized = normalize_transcript(sentence, allow_empty=True)
        if not normalized:
            continue
        if len(normalized) <= max_characters:
            pieces.append(normalized)
            continue
        phrases = [p for p in (normalize_transcript(x, allow_empty=True) for x in _PHRASE.split(sentence)) if p]
        for piece in _pieces_within(phrases, max_characters):
            if len(piece) <= max_characters:
                pieces.append(piece)
                continue
            words = piece.split(" ")
            longest = max(words, key=len)
            if len(longest) > max_characters:
                raise TextError(f"{source + ': ' if source else ''}the word {longest[:40]!r} ({len(longest)} "
                                f"characters) is longer than the model's limit of {max_characters}")
            pieces += _pieces_within(words, max_characters)
    if not pieces:
        raise TextError(f"{source + ': ' if source else ''}nothing to say in {text[:80]!r} (empty after normalisation)")
    return pieces
