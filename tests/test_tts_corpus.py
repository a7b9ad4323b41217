"""synth-mini --single-speaker: one espeak-ng voice for every split, the corpus rules otherwise unchanged."""

import json

import pytest

from speechkit.cli import main
from speechkit.data import mini
from speechkit.errors import SynthesisError

_TINY = dict(train_hours=0.004, dev_minutes=0.15, test_minutes=0.15)


def test_single_speaker_plan_uses_one_voice_and_keeps_test_sentences_unseen(books):
    plan = mini.plan_mini(books, seed=0, single_speaker="en-gb+f2", **_TINY)
    assert [(s.id, s.split) for s in plan.speakers] == [(100, "train"), (101, "dev"), (102, "test")]
    assert {(s.engine, s.voice, s.variant, s.rate, s.pitch) for s in plan.speakers} == {
        ("espeak-ng", "en-gb", "f2", 175.0, 50)}
    train = {it.text for it in plan.candidates["train"]}
    assert not train & {it.text for split in ("dev", "test") for it in plan.candidates[split]}
    assert plan.settings["single_speaker"] == "en-gb+f2"
    # The sentence reserves are those of the multi-speaker plan of the same seed.
    base = mini.plan_mini(books, seed=0, **_TINY)
    assert [it.text for it in plan.candidates["test"]][:5] == [it.text for it in base.candidates["test"]][:5]


@pytest.mark.parametrize("voice", ["en-us", "xx+m3", "en-us+zz", ""])
def test_an_unknown_single_speaker_voice_is_refused(books, voice):
    with pytest.raises(SynthesisError, match="ACCENT\\+VARIANT"):
        mini.plan_mini(books, seed=0, single_speaker=voice, **_TINY)


def test_cli_single_speaker_corpus(books, tmp_path):
    out = tmp_path / "corpus"
    assert main(["data", "synth-mini", "--out", str(out), "--books", books, "--jobs", "2", "--single-speaker",
                 "--train-hours", "0.004", "--dev-minutes", "0.15", "--test-minutes", "0.15"]) == 0
    summary = json.loads((out / "corpus.json").read_text())
    assert summary["settings"]["single_speaker"] == "en-us+m3" and summary["failures"]["count"] == 0
    rows = (out / "speakers.tsv").read_text().splitlines()[1:]
    assert {tuple(r.split("\t")[2:5]) for r in rows} == {("espeak-ng", "en-us", "m3")}
    texts = {split: [json.loads(line)["text"] for line in open(out / f"{split}.jsonl")] for split in mini.SPLITS}
    assert all(texts.values()) and not set(texts["train"]) & set(texts["test"])
    lm = set((out / "lm_text.txt").read_text().splitlines())
    assert not lm & set(texts["test"])
