"""KenLM language models built with the real lmplz/build_binary, and the alpha/beta grid search (asr.tuning)."""

import json
import os
import sys

import numpy as np
import pytest

from speechkit.asr import lm as lm_mod
from speechkit.asr import tuning
from speechkit.asr.lm import build_lm, load_lm_info, perplexity, read_unigrams
from speechkit.asr.tuning import dev_log_probs, tune_alpha_beta, tune_run
from speechkit.errors import ConfigError, KenLMError, TextError
from speechkit.text import Vocabulary

SUBJECTS = ["THE CAT", "THE DOG", "A BIRD", "THE MAN", "MY SISTER"]
VERBS = ["SAT ON", "LOOKED AT", "RAN TO", "SLEPT UNDER"]
OBJECTS = ["THE MAT", "THE HOUSE", "A TREE", "THE OLD CHAIR"]
EXTRA = ["HE WORE A HAT", "THE HAT IS RED", "SHE BOUGHT A NEW HAT", "DON'T TOUCH THE HAT"]


def corpus_lines(n=400, seed=0):
    """Template sentences: "CAT SAT" is frequent, while "HAT" is known but never followed by "SAT"."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        if i % 8 == 7:
            lines.append(EXTRA[(i // 8) % len(EXTRA)])
        else:
            lines.append(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}")
    return lines


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    text = root / "text.txt"
    # Raw text with lowercase, punctuation and a digits-only line, to go through normalisation.
    lines = [s.lower().capitalize() + "." for s in corpus_lines()] + ["1234 5678"]
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = root / "lm"
    build_lm(str(text), str(out), order=3, heldout_fraction=0.05, seed=0)
    return str(out)


def test_build_writes_binary_unigrams_and_info(lm_dir):
    assert os.path.getsize(os.path.join(lm_dir, "lm.binary")) > 0
    unigrams = read_unigrams(lm_dir)
    expected = sorted({w for line in corpus_lines() for w in line.split()})
    assert unigrams == expected
    assert "DON'T" in unigrams and "<s>" not in unigrams and "<unk>" not in unigrams
    info = load_lm_info(lm_dir)
    assert info["order"] == 3
    assert info["lines_read"] == 401 and info["lines_dropped"] == 1
    assert info["heldout_sentences"] == 20
    assert info["sentences"] == 380
    assert info["vocabulary_size"] == len(unigrams)
    assert info["ngrams"]["1"] == len(unigrams) + 3
    assert info["words"] == sum(len(s.split()) for s in corpus_lines()) - info["heldout_words"]
    assert 1.0 < info["perplexity"] < 20.0


def test_heldout_sentences_are_excluded_from_training(tmp_path):
    # Every sentence carries a word of its own, so a held-out sentence's word cannot be in the LM.
    tags = ["".join("ABCDEFGHIJ"[int(d)] for d in f"{i:03d}") for i in range(300)]
    text = tmp_path / "text.txt"
    text.write_text("".join(f"{line} {tag}\n" for line, tag in zip(corpus_lines(300), tags)), encoding="utf-8")
    info = build_lm(str(text), str(tmp_path / "lm"), order=3, heldout_fraction=0.1, seed=3)
    unigrams = set(read_unigrams(str(tmp_path / "lm")))
    missing = [tag for tag in tags if tag not in unigrams]
    assert len(missing) == info["heldout_sentences"] == 30
    assert info["heldout_oov_rate"] == pytest.approx(30 / info["heldout_words"])


def test_perplexity_prefers_in_domain_text(lm_dir):
    model = os.path.join(lm_dir, "lm.binary")
    good = perplexity(model, ["THE CAT SAT ON THE MAT", "THE DOG RAN TO A TREE"])
    bad = perplexity(model, ["MAT THE ON SAT CAT THE", "TREE A TO RAN DOG THE"])
    assert good["perplexity"] < bad["perplexity"] / 5
    assert good["words"] == 12 and good["oov"] == 0


def test_small_corpus_uses_discount_fallback(tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text("THE CAT SAT\nTHE DOG SAT\nA CAT RAN\n", encoding="utf-8")
    with pytest.raises(KenLMError, match="lmplz failed"):
        build_lm(str(text), str(tmp_path / "never"), order=3, discount_fallback="never", heldout_fraction=0.0)
    info = build_lm(str(text), str(tmp_path / "auto"), order=3, heldout_fraction=0.0)
    assert info["discount_fallback"] is True
    assert info["perplexity"] is None and info["heldout_sentences"] == 0
    assert read_unigrams(str(tmp_path / "auto")) == ["A", "CAT", "DOG", "RAN", "SAT", "THE"]


def test_pruning_drops_singleton_ngrams(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(corpus_lines(40)) + "\n", encoding="utf-8")
    full = build_lm(str(text), str(tmp_path / "full"), order=3, heldout_fraction=0.0)
    pruned = build_lm(str(text), str(tmp_path / "pruned"), order=3, prune=(0, 1, 1), heldout_fraction=0.0)
    assert pruned["prune"] == [0, 1, 1]
    assert pruned["ngrams"]["1"] == full["ngrams"]["1"]
    assert pruned["ngrams"]["3"] < full["ngrams"]["3"]


@pytest.mark.parametrize("content", ["", "\n  \n", "1234 5678\n42\n", "Привет мир\n東京\n"])
def test_unusable_text_raises(tmp_path, content):
    text = tmp_path / "bad.txt"
    text.write_text(content, encoding="utf-8")
    with pytest.raises(TextError, match=str(text)):
        build_lm(str(text), str(tmp_path / "lm"))
    assert not os.path.exists(tmp_path / "lm" / "lm.json")


def test_missing_text_file_raises(tmp_path):
    with pytest.raises(TextError, match="does not exist"):
        build_lm(str(tmp_path / "nope.txt"), str(tmp_path / "lm"))


@pytest.mark.parametrize("kwargs", [{"order": 1}, {"order": 7}, {"prune": (1, 1)}, {"prune": (0, 2, 1)},
                                    {"prune": (0, 0, 0, 1, 1)}, {"binary_type": "hash"},
                                    {"discount_fallback": "maybe"}, {"heldout_fraction": 0.7}])
def test_invalid_build_options_raise(tmp_path, kwargs):
    text = tmp_path / "text.txt"
    text.write_text("THE CAT SAT\n", encoding="utf-8")
    options = {"order": 4, **kwargs}
    with pytest.raises(ConfigError):
        build_lm(str(text), str(tmp_path / "lm"), **options)


def test_missing_tool_says_make_kenlm(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(KenLMError, match="make kenlm"):
        lm_mod.find_kenlm_tool("lmplz")


def test_tools_are_found_next_to_python(monkeypatch):
    monkeypatch.setenv("PATH", "")
    path = lm_mod.find_kenlm_tool("build_binary")
    assert os.path.dirname(path) == os.path.dirname(sys.executable)


def test_incomplete_lm_dir_raises(tmp_path, lm_dir):
    os.makedirs(tmp_path / "partial")
    (tmp_path / "partial" / "lm.binary").write_bytes(open(os.path.join(lm_dir, "lm.binary"), "rb").read())
    with pytest.raises(KenLMError, match="unigrams.txt"):
        read_unigrams(str(tmp_path / "partial"))
    with pytest.raises(KenLMError, match="does not exist"):
        load_lm_info(str(tmp_path / "absent"))


def frames(spec, vocabulary, *, peak=0.9):
    """CTC log-probs for a character spec, with a blank frame after every character frame.

    Each item of ``spec`` is a character (probability ``peak``) or a dict {character: probability};
    the remaining mass of a frame is shared by the other classes.
    """
    rows = []
    for item in spec:
        for dist in (item if isinstance(item, dict) else {item: peak}, {"": peak}):
            row = np.full(vocabulary.size, (1.0 - sum(dist.values())) / (vocabulary.size - len(dist)))
            for ch, p in dist.items():
                row[vocabulary.labels.index(ch)] = p
            rows.append(row)
    return np.log(np.asarray(rows, dtype=np.float32))


def test_tune_picks_the_lm_weight_that_fixes_the_context(lm_dir):
    vocabulary = Vocabulary()
    # "H" is acoustically a little more likely than "C", but only "CAT SAT" occurs in the LM text.
    ambiguous = frames(["T", "H", "E", " ", {"H": 0.55, "C": 0.4}, "A", "T", " ", "S", "A", "T"], vocabulary)
    plain = frames(list("THE DOG RAN"), vocabulary)
    best, table = tune_alpha_beta([ambiguous, plain], ["THE CAT SAT", "THE DOG RAN"], vocabulary=vocabulary,
                                  lm_dir=lm_dir, alphas=[0.0, 1.0], betas=[0.0, 1.0], beam_width=16, progress=False)
    assert [(r["alpha"], r["beta"]) for r in table] == [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)]
    assert [r["wer"] for r in table] == pytest.approx([1 / 6, 1 / 6, 0.0, 0.0])
    assert best == table[2]
    assert table[0]["cer"] == pytest.approx(1 / 22)


def test_tune_rejects_mismatched_inputs(lm_dir):
    vocabulary = Vocabulary()
    with pytest.raises(ConfigError, match="one reference per utterance"):
        tune_alpha_beta([frames(list("THE"), vocabulary)], [], vocabulary=vocabulary, lm_dir=lm_dir)
    with pytest.raises(ConfigError, match="must not be empty"):
        tune_alpha_beta([frames(list("THE"), vocabulary)], ["THE"], vocabulary=vocabulary, lm_dir=lm_dir, alphas=[])


def test_cli_build(tmp_path, lm_dir, capsys):
    from speechkit.cli import main

    text = tmp_path / "text.txt"
    text.write_text("\n".join(corpus_lines(200)) + "\n", encoding="utf-8")
    out = tmp_path / "cli-lm"
    assert main(["lm", "build", "--text", str(text), "--out", str(out), "--order", "3", "--prune", "0", "0", "1"]) == 0
    printed = capsys.readouterr().out
    assert "order 3" in printed and "held-out perplexity" in printed
    info = json.loads((out / "lm.json").read_text())
    assert info["prune"] == [0, 0, 1] and info["order"] == 3
    bad = tmp_path / "digits.txt"
    bad.write_text("123\n", encoding="utf-8")
    assert main(["lm", "build", "--text", str(bad), "--out", str(tmp_path / "x")]) == 1
    assert "normalisation" in capsys.readouterr().err


class FakeRecognizer:
    """Stands in for a trained model: maps an utterance's sample count to fixed log-probs."""

    def __init__(self, specs):
        from speechkit.frontend import FrontendConfig

        self.vocabulary = Vocabulary()
        self.frontend = FrontendConfig()
        self.specs = specs
        self.calls = 0

    def log_probs(self, audios):
        self.calls += 1
        return [frames(self.specs[len(a)], self.vocabulary) for a in audios]


def _write_dev(tmp_path, texts_and_lengths):
    from speechkit.audio import save
    from speechkit.data.manifest import Utterance, write_manifest

    utterances = []
    for i, (text, samples) in enumerate(texts_and_lengths):
        path = tmp_path / f"u{i}.wav"
        save(path, np.full(samples, 0.01 * (i + 1), np.float32))
        utterances.append(Utterance(id=f"u{i}", audio=str(path), duration=samples / 16000, text=text, speaker="s"))
    manifest = tmp_path / "dev.jsonl"
    write_manifest(str(manifest), utterances)
    return str(manifest)


def test_tune_run_caches_log_probs_and_writes_decode_yaml(tmp_path, lm_dir):
    from speechkit.asr.beam import load_decode_config

    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"weights v1")
    fake = FakeRecognizer({1600: ["T", "H", "E", " ", {"H": 0.55, "C": 0.4}, "A", "T", " ", "S", "A", "T"],
                           2400: list("THE DOG RAN")})
    manifest = _write_dev(tmp_path, [("THE CAT SAT", 1600), ("THE DOG RAN", 2400)])
    report = tune_run(str(run), lm_dir=lm_dir, manifest=manifest, alphas=[0.0, 1.0], betas=[0.5],
                      beam_width=16, recognizer=fake)
    assert fake.calls == 1
    assert report["greedy"]["wer"] == pytest.approx(1 / 6)
    assert report["beam_no_lm"]["wer"] == pytest.approx(1 / 6)
    assert report["best"] == {"alpha": 1.0, "beta": 0.5, "wer": 0.0, "cer": 0.0}
    assert json.loads((run / "decode_tuning.json").read_text())["grid"] == report["grid"]
    config = load_decode_config(str(run))
    assert (config.decoder, config.alpha, config.beta, config.beam_width) == ("beam", 1.0, 0.5, 16)
    assert config.lm == os.path.abspath(lm_dir)

    cached, _ = dev_log_probs(str(run), manifest, recognizer=fake)
    assert fake.calls == 1
    np.testing.assert_array_equal(cached[1], frames(list("THE DOG RAN"), fake.vocabulary))
    (run / "model.keras").write_bytes(b"weights v2, retrained")
    dev_log_probs(str(run), manifest, recognizer=fake)
    assert fake.calls == 2
    manifest = _write_dev(tmp_path, [("THE DOG RAN", 2400)])
    again, utterances = dev_log_probs(str(run), manifest, recognizer=fake)
    assert fake.calls == 3 and len(again) == 1 and utterances[0].text == "THE DOG RAN"


def test_cli_tune(tmp_path, lm_dir, monkeypatch, capsys):
    from speechkit.cli import main

    fake = FakeRecognizer({1600: ["T", "H", "E", " ", {"H": 0.55, "C": 0.4}, "A", "T", " ", "S", "A", "T"]})
    monkeypatch.setattr(tuning, "load_run", lambda run_dir, **kwargs: fake)
    run = tmp_path / "run"
    run.mkdir()
    manifest = _write_dev(tmp_path, [("THE CAT SAT", 1600)])
    argv = ["lm", "tune", str(run), "--lm", lm_dir, "--dev", manifest, "--alphas", "0", "2", "--betas", "1",
            "--beam-width", "8"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| greedy | 33.33% |" in printed
    assert "| beam 8 + LM (alpha 2, beta 1) | 0.00% |" in printed
    assert "decode.yaml" in printed and (run / "decode.yaml").is_file()
