"""speechkit.scoring: alignments with known answers, formats, the normaliser, significance tests, missing utterances."""

import json

import jiwer
import numpy as np
import pytest

from speechkit.errors import ConfigError, TextError
from speechkit.scoring import (UNIT_WEIGHTS, Normalizer, NormalizerConfig, ScoreConfig, Transcript, adversarial_pairs,
                               align_corpus, format_alignment, mapsswe, read_transcripts, score_files, sign_test,
                               write_transcripts)


# -- Alignment -- #

@pytest.mark.parametrize("ref, hyp, counts", [
    ("a b c d e", "a x c e f", (3, 1, 1, 1)),            # sclite: S D I, not three substitutions
    ("the cat sat", "", (0, 0, 3, 0)),
    ("", "hello there", (0, 0, 0, 2)),
    ("", "", (0, 0, 0, 0)),
    ("w1 w2 w3 c1 c2", "c1 c2 h1 h2 h3", (2, 0, 3, 3)),  # 3 D + 3 I (cost 18) beat 5 S (cost 20)
    ("a b", "a b", (2, 0, 0, 0)),
    ("the the the", "the", (1, 0, 2, 0)),
])
def test_known_answer_alignments(ref, hyp, counts):
    assert tuple(align_corpus([ref], [hyp]).counts[0]) == counts


def test_alignment_text_marks_errors_like_sclite():
    al = align_corpus(["a b c d e"], ["a x c e f"])
    assert al.pair(0) == [("C", "a", "a"), ("S", "b", "x"), ("C", "c", "c"), ("D", "d", None), ("C", "e", "e"),
                          ("I", None, "f")]
    assert format_alignment(al.pair(0)).splitlines() == ["REF:  a B c D e *", "HYP:  a X c * e F",
                                                         "Eval:   S   D   I"]


def test_unit_weights_total_equals_jiwer_and_sclite_weights_can_count_more():
    _, refs, hyps = adversarial_pairs(200, seed=3)
    hyps = [h or "" for h in hyps]
    keep = [i for i, r in enumerate(refs) if r]
    refs, hyps = [refs[i] for i in keep], [hyps[i] for i in keep]
    out = jiwer.process_words(refs, hyps)
    unit = align_corpus(refs, hyps, weights=UNIT_WEIGHTS).counts.sum(axis=0)
    assert unit[1:].sum() == out.substitutions + out.deletions + out.insertions
    sclite = align_corpus(refs, hyps).counts.sum(axis=0)
    assert sclite[1:].sum() >= unit[1:].sum()
    assert sclite[2] - sclite[3] == unit[2] - unit[3]  # D - I is fixed by the lengths


# -- Normaliser -- #

@pytest.mark.parametrize("config, text, expected", [
    ({}, "Well-known, isn't it? ‘U.S.A.’", "WELL KNOWN ISN'T IT USA"),
    ({}, "don’t  DON'T don't", "DON'T DON'T DON'T"),
    ({}, "It costs 3.5 dollars, 1,000 times", "IT COSTS 3.5 DOLLARS 1,000 TIMES"),
    ({}, "'Tis the 'quote' -- end.", "TIS THE QUOTE END"),
    ({}, "Café naïve 日本語!", "CAFÉ NAÏVE 日本語"),
    ({"numbers": "spell"}, "Born 1984 on the 21st, -7 and 50%", "BORN ONE THOUSAND NINE HUNDRED AND EIGHTY FOUR ON "
     "THE TWENTY FIRST MINUS SEVEN AND FIFTY PERCENT"),
    ({"numbers": "spell", "years": True}, "in 1984", "IN NINETEEN EIGHTY FOUR"),
    ({"case": "lower", "hyphens": "join", "apostrophes": "remove", "strip_accents": True}, "Well-known DON'T café",
     "wellknown dont cafe"),
    ({"replacements": {"ok": "okay"}, "remove_words": ["uh", "um"]}, "OK uh so um ok", "OKAY SO OKAY"),
    ({"enabled": False}, "  a  B, c ", "a B, c"),
])
def test_normalizer_cases(config, text, expected):
    assert Normalizer(NormalizerConfig.from_dict(config))(text) == expected


def test_normalizer_rejects_bad_settings():
    with pytest.raises(ConfigError, match="case"):
        NormalizerConfig(case="title")
    with pytest.raises(ConfigError, match="unknown key"):
        NormalizerConfig.from_dict({"lowercase": True})


# -- Formats -- #

ITEMS = [Transcript(id="s1-u1", text="HELLO WORLD", speaker="s1"), Transcript(id="s1-u2", text=""),
         Transcript(id="s2-u3", text="CAFÉ O'CLOCK")]


@pytest.mark.parametrize("fmt, name", [("jsonl", "x.jsonl"), ("kaldi", "text"), ("tsv", "x.tsv"), ("trn", "x.trn")])
def test_format_round_trip_and_detection(tmp_path, fmt, name):
    path = write_transcripts(str(tmp_path / name), ITEMS, format=fmt)
    got = read_transcripts(path)
    assert got.format == fmt
    assert got.texts() == {t.id: t.text for t in ITEMS}
    if fmt == "jsonl":
        assert got["s1-u1"].speaker == "s1"


def test_format_detected_from_content(tmp_path):
    for fmt, line in (("trn", "A B (u1)"), ("jsonl", '{"id": "u1", "text": "A B"}'), ("tsv", "u1\tA B"),
                      ("kaldi", "u1 A B")):
        path = tmp_path / f"{fmt}_file"
        path.write_text(line + "\n")
        got = read_transcripts(str(path))
        assert (got.format, got.texts()) == (fmt, {"u1": "A B"})


def test_tsv_header_and_hypothesis_fields(tmp_path):
    tsv = tmp_path / "h.tsv"
    tsv.write_text("id\tspeaker\thyp\nu1\tspk\tA B\n")
    got = read_transcripts(str(tsv), role="hyp")
    assert got["u1"].text == "A B" and got["u1"].speaker == "spk"
    hyp = tmp_path / "hypotheses.jsonl"
    hyp.write_text(json.dumps({"id": "u1", "ref": "R", "hyp": "H"}) + "\n")
    assert read_transcripts(str(hyp), role="hyp")["u1"].text == "H"
    assert read_transcripts(str(hyp), role="ref")["u1"].text == "R"


@pytest.mark.parametrize("name, content, match", [
    ("dup.trn", "A (u1)\nB (u1)\n", r"dup.trn:2: duplicate utterance id 'u1' \(first on line 1\)"),
    ("bad.trn", "A (u1)\nB C\n", r"bad.trn:2: a trn line must end"),
    ("bad.jsonl", '{"id": "u1", "text": "A"}\n{"id": \n', r"bad.jsonl:2: not valid JSON"),
    ("nofield.jsonl", '{"id": "u1"}\n', r"nofield.jsonl:1: missing the text field"),
    ("bad.tsv", "u1\tA\tB\tC\n", r"bad.tsv:1: expected 'id<TAB>text'"),
])
def test_bad_input_names_file_and_line(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TextError, match=match):
        read_transcripts(str(path))


def test_encoding_error_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("u1 OK\nu2 caf\xe9\n".encode("latin-1"))
    with pytest.raises(TextError, match=r"latin1.txt:2: not valid UTF-8"):
        read_transcripts(str(path))


# -- Missing utterances -- #

def _files(tmp_path):
    ref = write_transcripts(str(tmp_path / "ref.trn"), [("u1", "A B C"), ("u2", "D E"), ("u3", "F")], format="trn")
    hyp = write_transcripts(str(tmp_path / "hyp.trn"), [("u1", "A B C"), ("u3", "F"), ("u9", "X Y")], format="trn")
    return ref, hyp


def test_missing_utterances_error_lists_both_sides(tmp_path):
    ref, hyp = _files(tmp_path)
    with pytest.raises(TextError, match=r"1 reference utterance\(s\) have no hypothesis \(first: \['u2'\]\).*"
                                        r"1 hypothesis utterance\(s\) have no reference \(first: \['u9'\]\)"):
        score_files(ref, [hyp])


def test_missing_utterances_scored_as_empty(tmp_path):
    ref, hyp = _files(tmp_path)
    report = score_files(ref, [hyp], config=ScoreConfig(missing="empty", bootstrap=50))
    s = report["systems"][0]
    assert (s["deletions"], s["insertions"], s["substitutions"]) == (2, 2, 0)
    assert s["missing"] == {"missing_hypotheses": ["u2"], "extra_hypotheses": ["u9"], "count": 2}
    assert report["utterances"] == 4 and report["words"] == 6
    assert s["wer"] == pytest.approx(4 / 6)


# -- Significance -- #

def _systems(n=300, seed=0, error_b=0.25):
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(50)]
    refs, a, b = [], [], []
    for _ in range(n):
        words = list(rng.choice(vocab, size=rng.integers(5, 15)))
        refs.append(" ".join(words))
        a.append(" ".join(w if rng.random() > 0.1 else "zz" for w in words))
        b.append(" ".join(w if rng.random() > error_b else "zz" for w in words))
    return refs, a, b


def _score(tmp_path, refs, *systems):
    ids = [f"u{i}" for i in range(len(refs))]
    ref = write_transcripts(str(tmp_path / "ref.txt"), list(zip(ids, refs)), format="kaldi")
    paths = [write_transcripts(str(tmp_path / f"sys{k}.txt"), list(zip(ids, hyps)), format="kaldi")
             for k, hyps in enumerate(systems)]
    return score_files(ref, paths, names=[f"s{k}" for k in range(len(systems))], config=ScoreConfig(bootstrap=500))


def test_identical_systems_are_not_significant(tmp_path):
    refs, a, _ = _systems()
    comp = _score(tmp_path, refs, a, list(a))["comparisons"][0]
    assert comp["wer_difference"] == 0
    for test in ("paired_bootstrap", "mapsswe", "sign_test"):
        assert not comp[test]["significant"], test
        assert comp[test]["p_value"] == pytest.approx(1.0)


def test_clearly_different_systems_are_significant(tmp_path):
    refs, a, b = _systems()
    report = _score(tmp_path, refs, a, b)
    comp = report["comparisons"][0]
    assert comp["wer_difference"] < -0.1
    assert comp["paired_bootstrap"]["significant"] and comp["paired_bootstrap"]["prob_a_better"] > 0.99
    assert comp["mapsswe"]["significant"] and comp["mapsswe"]["p_value"] < 1e-6
    assert comp["sign_test"]["significant"] and comp["sign_test"]["a_better"] > comp["sign_test"]["b_better"]


def test_slightly_different_systems_on_few_utterances_are_not_significant(tmp_path):
    refs, a, b = _systems(n=12, seed=1, error_b=0.12)
    comp = _score(tmp_path, refs, a, b)["comparisons"][0]
    assert not comp["paired_bootstrap"]["significant"]
    assert not comp["sign_test"]["significant"]


def test_mapsswe_segments_known_answer():
    refs = ["a b c d e f g h"]
    a = align_corpus(refs, ["a x c d e f y h"])
    b = align_corpus(refs, ["a b c d e f g h"])
    result = mapsswe(a, b)
    assert result["segments"] == 2 and result["mean_difference"] == 1.0
    assert sign_test([3, 1, 2], [3, 0, 0]) == {"a_better": 0, "b_better": 2, "ties": 1, "p_value": 0.5,
                                               "significant": False}
