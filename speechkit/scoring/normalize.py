"""The scoring text normaliser: one configurable function applied identically to references and hypotheses.

Scoring compares words as strings, so "Don't", "DON'T" and "don’t" must become one token before alignment,
and the choice must be the same on both sides. The default (``NormalizerConfig()``) is:

1. Unicode NFKC; curly quotes and apostrophes become ``'``; en/em dashes and minus signs become ``-``.
2. Numbers are kept as written (``numbers="spell"`` writes them in words first: ``21`` -> ``TWENTY ONE``,
   ``3.5`` -> ``THREE POINT FIVE``, ``2nd`` -> ``SECOND``, ``50%`` -> ``FIFTY PERCENT``).
3. Upper case (sclite, by default, also ignores case).
4. Hyphens split words (``WELL-KNOWN`` -> ``WELL KNOWN``).
5. Apostrophes inside words are kept (``DON'T``); quotes at word edges are dropped.
6. Other punctuation and symbols are removed: between letters a dot joins (``U.S.A.`` -> ``USA``), between
   digits a dot or comma is kept (``3.5``, ``1,000``), anywhere else it separates words.
7. ``replacements`` map a whole word to words (``{"OK": "OKAY"}``), ``remove_words`` drop words (fillers);
   both are matched after the steps above.
"""

import dataclasses
import re
import unicodedata

from num2words import num2words

from speechkit.config import Config
from speechkit.errors import ConfigError

__all__ = ["NormalizerConfig", "Normalizer", "spell_numbers"]

_CASES = ("upper", "lower", "keep")
_APOSTROPHES = ("inner", "remove", "keep")
_HYPHENS = ("split", "join", "keep")
_NUMBERS = ("keep", "spell")

_CHAR_MAP = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u0060": "'", "\u00b4": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
})
_NUMBER = re.compile(r"(?:(?<![\w.,-])(-)|(?<![\w.,]))(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(st|nd|rd|th)?(%)?(?!\w)",
                     re.IGNORECASE)
_PUNCTUATION = {cp: " " for cp in range(0x20000)
                if unicodedata.category(chr(cp))[0] in "PS" and chr(cp) not in "'-"}
_ACRONYM_DOT = re.compile(r"\.(?<=[^\W\d_]\.)(?=[^\W\d_])|\.(?<=\b[^\W\d_]\.)(?=\s|$)")
_NUMERIC_SEP = re.compile(r"[.,](?<=\d[.,])(?=\d)")
_INNER_APOSTROPHE = re.compile(r"'(?<=\w')(?=\w)")


@dataclasses.dataclass(frozen=True)
class NormalizerConfig(Config):
    """How transcripts are normalised before scoring (see the module docstring for the default).

    Args:
        enabled: bool, False scores the tokens exactly as written (whitespace-split, as ``sclite -s``).
        case: ``"upper"``, ``"lower"`` or ``"keep"``.
        punctuation: bool, True removes punctuation and symbols (step 6).
        apostrophes: ``"inner"`` (keep inside words, drop at edges), ``"remove"`` (``DON'T`` -> ``DONT``) or
            ``"keep"``.
        hyphens: ``"split"`` (``WELL KNOWN``), ``"join"`` (``WELLKNOWN``) or ``"keep"`` (``WELL-KNOWN``).
        numbers: ``"keep"`` or ``"spell"`` (num2words, in ``language``).
        years: bool, with ``numbers="spell"``: integers 1100-2099 are read as years
            (``1984`` -> ``NINETEEN EIGHTY FOUR``) instead of cardinals.
        language: str, num2words language code (``"en"``, ``"de"``, ``"fr"``, ...).
        strip_accents: bool, True folds accented letters to their base letter (``CAFÉ`` -> ``CAFE``).
        replacements: dict str -> str, whole-word rewrites applied after the other steps; keys and values are
            normalised like the text, so ``{"ok": "okay"}`` works whatever the case setting.
        remove_words: tuple of str, words deleted after the other steps (for example fillers ``UH``, ``UM``).
    """

    enabled: bool = True
    case: str = "upper"
    punctuation: bool = True
    apostrophes: str = "inner"
    hyphens: str = "split"
    numbers: str = "keep"
    years: bool = False
    language: str = "en"
    strip_accents: bool = False
    replacements: dict = dataclasses.field(default_factory=dict)
    remove_words: tuple = ()

    def __post_init__(self):
        for name, allowed in (("case", _CASES), ("apostrophes", _APOSTROPHES), ("hyphens", _HYPHENS),
                              ("numbers", _NUMBERS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"normalizer {name} must be one of {allowed}, received: {getattr(self, name)!r}")
        for name in ("enabled", "punctuation", "years", "strip_accents"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"normalizer {name} must be true or false, received: {getattr(self, name)!r}")
        if not isinstance(self.replacements, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.replacements.items()):
            raise ConfigError(f"normalizer replacements must map words to words, received: {self.replacements!r}")
        if isinstance(self.remove_words, str) or not all(isinstance(w, str) for w in self.remove_words):
            raise ConfigError(f"normalizer remove_words must be a list of words, received: {self.remove_words!r}")
        object.__setattr__(self, "remove_words", tuple(self.remove_words))
        try:
            num2words(1, lang=self.language)
        except NotImplementedError:
            raise ConfigError(f"normalizer language {self.language!r} is not supported by num2words") from None


def spell_numbers(text, *, language="en", years=False):
    """Write the numbers in ``text`` as words with num2words.

    Handles integers (with thousands commas), decimals, signs, English ordinal suffixes and a trailing ``%``.
    Digits glued to letters (``MP3``, ``4x4``) are left alone, because no reading of them is safe.

    Args:
        text: str.
        language: str, num2words language code.
        years: bool, read integers 1100-2099 without separators as years.

    Returns:
        str, the spelled words carry num2words' own punctuation (``twenty-one``), which the normaliser's
        hyphen and punctuation steps then handle like any other text.
    """

    def spell(match):
        sign, whole, fraction, suffix, percent = match.groups()
        digits = whole.replace(",", "")
        negative = -1 if sign == "-" else 1
        words = []
        if suffix and not fraction:
            words.append(num2words(int(digits), lang=language, to="ordinal"))
        elif fraction:
            words.append(num2words(negative * float(digits + fraction), lang=language))
        elif years and not sign and "," not in whole and 1100 <= int(digits) <= 2099:
            words.append(num2words(int(digits), lang=language, to="year"))
        else:
            words.append(num2words(negative * int(digits), lang=language))
        if percent:
            words.append("percent")
        return " " + " ".join(words) + " "

    return _NUMBER.sub(spell, text)


class Normalizer:
    """Callable text normaliser built from a ``NormalizerConfig``.

    Args:
        config: NormalizerConfig or None (the default).

    Example:
        >>> Normalizer()("Well-known, isn't it? ‘U.S.A.’")
        "WELL KNOWN ISN'T IT USA"
    """

    def __init__(self, config=None):
        self.config = config or NormalizerConfig()
        c = self.config
        self._replacements = {}
        self._remove = frozenset()
        if c.enabled:
            for key, value in c.replacements.items():
                self._replacements[self._words(key, mapped=False)] = self._words(value, mapped=False)
            self._remove = frozenset(w for word in c.remove_words for w in self._words(word, mapped=False))
            self._replacements = {k[0]: v for k, v in self._replacements.items() if len(k) == 1}

    def __call__(self, text):
        """Normalise one transcript.

        Args:
            text: str.

        Returns:
            str, words separated by single spaces (empty when nothing is left).
        """
        if not self.config.enabled:
            return " ".join(text.split())
        return " ".join(self._words(text, mapped=True))

    def batch(self, texts):
        """Normalise many transcripts at once (the same result as calling the normaliser on each).

        The text steps run once over all transcripts joined by newlines, which is several times faster
        than one call per transcript on large test sets.

        Args:
            texts: sequence of str.

        Returns:
            list of str.
        """
        if not texts:
            return []
        if not self.config.enabled:
            return [" ".join(t.split()) for t in texts]
        joined = "\n".join(t.replace("\n", " ").replace("\r", " ") for t in texts)
        lines = self._text(joined).split("\n")
        out = []
        for line in lines:
            words = self._filter(line.split())
            out.append(" ".join(self._map(words)))
        return out

    def _map(self, words):
        if not (self._replacements or self._remove):
            return words
        out = []
        for word in words:
            if word in self._remove:
                continue
            out.extend(self._replacements.get(word, (word,)))
        return out

    def _filter(self, words):
        return [w for w in words if w.strip("'-")] if self.config.punctuation else words

    def _words(self, text, *, mapped):
        words = self._filter(self._text(text).split())
        return tuple(self._map(words) if mapped else words)

    def _text(self, text):
        c = self.config
        text = unicodedata.normalize("NFKC", text).translate(_CHAR_MAP)
        if c.numbers == "spell":
            text = spell_numbers(text, language=c.language, years=c.years)
        if c.strip_accents:
            text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
        if c.case == "upper":
            text = text.upper()
        elif c.case == "lower":
            text = text.lower()
        if c.hyphens == "split":
            text = text.replace("-", " ")
        elif c.hyphens == "join":
            text = re.sub(r"(?<=\w)-(?=\w)", "", text).replace("-", " ")
        if c.apostrophes == "remove":
            text = text.replace("'", "")
        elif c.apostrophes == "inner":
            text = _INNER_APOSTROPHE.sub("\x00", text).replace("'", " ").replace("\x00", "'")
        if c.punctuation:
            text = _ACRONYM_DOT.sub("", text)
            text = _NUMERIC_SEP.sub(lambda m: "\x01" if m.group() == "." else "\x02", text)
            text = text.translate(_PUNCTUATION).replace("\x01", ".").replace("\x02", ",")
        return text
