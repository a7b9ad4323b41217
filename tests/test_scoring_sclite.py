"""speechkit's S, D, I and N counts equal NIST sclite's (Debian sctk), utterance by utterance.

Skipped only when sctk is missing and the CI environment variable is unset; in CI a missing sctk fails.
"""

import json
import os

import pytest

from speechkit.cli import main
from speechkit.scoring import (NormalizerConfig, ScoreConfig, Transcript, adversarial_pairs, crosscheck, run_sclite,
                               sclite_command, score_files, write_transcripts)

if sclite_command() is None:
    if os.environ.get("CI"):
        pytest.fail("sclite is missing in CI: install Debian's sctk ('make install' does)", pytrace=False)
    pytestmark = pytest.mark.skip(reason="sclite (Debian sctk) is not installed; 'make install' installs it")


def test_adversarial_pairs_agree_with_sclite_through_files(tmp_path):
    ids, refs, hyps = adversarial_pairs(400, seed=0)
    assert any(h is None for h in hyps) and any(r == "" for r in refs) and max(len(r.split()) for r in refs) >= 500
    ref = write_transcripts(str(tmp_path / "ref.trn"), [Transcript(id=u, text=r) for u, r in zip(ids, refs)],
                            format="trn")
    hyp = write_transcripts(str(tmp_path / "hyp.trn"),
                            [Transcript(id=u, text=h) for u, h in zip(ids, hyps) if h is not None], format="trn")
    config = ScoreConfig(normalizer=NormalizerConfig(enabled=False), missing="empty", bootstrap=10)
    ours = score_files(ref, [hyp], config=config)["systems"][0]
    assert ours["missing"]["count"] == sum(h is None for h in hyps)
    theirs = run_sclite(refs, [h or "" for h in hyps], workdir=str(tmp_path / "sclite")).sum(axis=0)
    n_words = sum(len(r.split()) for r in refs)
    assert (ours["correct"], ours["substitutions"], ours["deletions"], ours["insertions"]) == tuple(theirs)
    assert ours["wer"] == pytest.approx(theirs[1:].sum() / n_words, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_utterance_agrees_with_sclite(tmp_path, seed):
    _, refs, hyps = adversarial_pairs(400, seed=seed)
    result = crosscheck(refs, [h or "" for h in hyps], workdir=str(tmp_path))
    assert result["agree"], result["mismatches"][:3]
    assert result["speechkit"] == result["sclite"]
    assert result["speechkit"] == result["sclite"]


def test_score_cli_with_sclite_cross_check(tmp_path):
    ref = write_transcripts(str(tmp_path / "ref.txt"), [("a-1", "Hello, world!"), ("a-2", "It's well-known"),
                                                        ("b-3", "Café au lait")], format="kaldi")
    hyp = write_transcripts(str(tmp_path / "hyp.trn"), [("a-1", "hello word"), ("a-2", "its well known known"),
                                                        ("b-3", "cafe au lait")], format="trn")
    assert main(["score", ref, hyp, "--sclite", "--out", str(tmp_path / "out"), "--bootstrap", "50"]) == 0
    report = json.loads((tmp_path / "out" / "score.json").read_text())
    system = report["systems"][0]
    assert system["sclite"]["agree"]
    assert system["sclite"]["counts"]["S"] == system["substitutions"] == 3



@pytest.mark.parametrize("decoder", ["greedy", "beam_lm"])
def test_released_model_hypotheses_agree_with_sclite(decoder):
    """A real model's output: ds2-mini's hypotheses on the mini test set (``speechkit eval``, committed)."""
    path = os.path.join(os.path.dirname(__file__), "data", f"ds2_mini_test_{decoder}_hypotheses.jsonl")
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    assert len(rows) == 187
    result = crosscheck([r["ref"] for r in rows], [r["hyp"] for r in rows])
    assert result["agree"], result["mismatches"][:3]
    assert result["speechkit"] == result["sclite"]
