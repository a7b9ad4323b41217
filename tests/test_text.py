import pytest

from speechkit import text
from speechkit.errors import TextError


@pytest.mark.parametrize("raw,expected", [
    ("Hello, world!", "HELLO WORLD"),
    ("  don't   stop\n", "DON'T STOP"),
    ("Café déjà vu", "CAFE DEJA VU"),
    ("It\u2019s well-known", "IT'S WELL KNOWN"),
    ("'Quoted' words", "QUOTED WORDS"),
    ("chapter 12: the end", "CHAPTER THE END"),
])
def test_normalize(raw, expected):
    assert text.normalize(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "1234 5678", "--- !!!", "\u4e2d\u6587"])
def test_normalize_to_nothing_raises_naming_source(raw):
    with pytest.raises(TextError, match="corpus.txt:3"):
        text.normalize(raw, source="corpus.txt:3")
    assert text.normalize(raw, allow_empty=True) == ""


def test_vocabulary_round_trip():
    vocab = text.Vocabulary()
    assert vocab.size == 29 and vocab.labels[0] == "" and vocab.labels[1] == " " and vocab.labels[2] == "'"
    sentence = "IT'S A FINE DAY QUIZ JACK"
    ids = vocab.encode(sentence)
    assert text.BLANK_INDEX not in ids
    assert vocab.decode(ids) == sentence
    assert vocab.decode([0] + ids + [0]) == sentence
    assert text.Vocabulary.from_dict(vocab.to_dict()) == vocab


def test_vocabulary_rejects_unnormalised_text():
    with pytest.raises(TextError, match="'a'"):
        text.Vocabulary().encode("a b")
