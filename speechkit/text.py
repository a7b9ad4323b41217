"""LibriSpeech-style text normalisation and the character vocabulary used by CTC."""

import re
import unicodedata

from speechkit.errors import TextError

__all__ = ["ALPHABET", "BLANK_INDEX", "normalize", "Vocabulary"]

ALPHABET = " 'ABCDEFGHIJKLMNOPQRSTUVWXYZ"
BLANK_INDEX = 0

_NOT_ALLOWED = re.compile(r"[^A-Z' ]+")
_SPACES = re.compile(r" +")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})


def normalize(text, *, source=None, allow_empty=False):
    """Normalise text to uppercase A-Z, apostrophe and single spaces, as in LibriSpeech transcripts.

    Accents are folded to ASCII (``café`` -> ``CAFE``); hyphens and other punctuation become word
    breaks; digits and other symbols are dropped. Apostrophes survive only inside words
    (``DON'T``), not as quotation marks.

    Args:
        text: str, the raw text.
        source: optional str naming where the text came from, used in the error message.
        allow_empty: bool, return ``""`` instead of raising when nothing is left.

    Returns:
        str, the normalised text.

    Raises:
        TextError: the text normalises to nothing and ``allow_empty`` is false.
    """
    folded = unicodedata.normalize("NFKD", text.translate(_QUOTES))
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).upper()
    folded = re.sub(r"[-\u2013\u2014_/]", " ", folded)
    words = []
    for word in _NOT_ALLOWED.sub(" ", folded).split(" "):
        word = word.strip("'")
        if word:
            words.append(re.sub(r"'+", "'", word))
    normalized = _SPACES.sub(" ", " ".join(words)).strip()
    if not normalized and not allow_empty:
        where = f" in {source}" if source else ""
        raise TextError(f"text{where} normalises to nothing: {text!r}")
    return normalized


class Vocabulary:
    """Character vocabulary with the CTC blank at index 0.

    Index 0 is the blank, followed by space, apostrophe and A-Z, so ``size`` is 29 for the default
    alphabet. ``encode`` and ``decode`` round-trip any normalised text.

    Args:
        characters: str, the non-blank symbols in index order (starting at 1).
    """

    def __init__(self, characters=ALPHABET):
        if len(set(characters)) != len(characters):
            raise TextError(f"vocabulary characters must be unique, received: {characters!r}")
        self.characters = characters
        self._index = {ch: i + 1 for i, ch in enumerate(characters)}

    @property
    def size(self):
        """int, number of output classes including the blank."""
        return len(self.characters) + 1

    @property
    def labels(self):
        """list of str, one label per class, blank first as ``""`` (the pyctcdecode convention)."""
        return [""] + list(self.characters)

    def encode(self, text):
        """Map normalised text to a list of int class indices (never the blank)."""
        try:
            return [self._index[ch] for ch in text]
        except KeyError as err:
            raise TextError(
                f"character {err.args[0]!r} is not in the vocabulary; normalise the text first: {text!r}") from None

    def decode(self, indices):
        """Map class indices back to text; blanks (0) and out-of-range indices are skipped."""
        n = len(self.characters)
        return "".join(self.characters[i - 1] for i in indices if 0 < i <= n)

    def to_dict(self):
        return {"characters": self.characters, "blank_index": BLANK_INDEX}

    @classmethod
    def from_dict(cls, data):
        return cls(data["characters"])

    def __eq__(self, other):
        return isinstance(other, Vocabulary) and other.characters == self.characters
