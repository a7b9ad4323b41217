"""``speechkit score`` and ``speechkit benchmark`` end to end on files."""

import json
import os
import sys

import pytest

from speechkit.cli import main
from speechkit.scoring import write_transcripts

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _tiny_asr import tiny_config, write_corpus, write_preset  # noqa: E402


def _manifest(tmp_path):
    rows = [{"id": f"spk{i % 3}-{i:03d}", "audio": f"a{i}.wav", "duration": 1.0, "speaker": f"spk{i % 3}",
             "text": "the quick brown fox jumps over the lazy dog"[: 12 + 3 * (i % 10)]} for i in range(30)]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path), rows


def test_score_cli_end_to_end(tmp_path, capsys):
    ref, rows = _manifest(tmp_path)
    good = write_transcripts(str(tmp_path / "good.trn"), [(r["id"], r["text"].upper()) for r in rows[:-1]],
                             format="trn")
    bad = tmp_path / "bad.tsv"
    bad.write_text("".join(f"{r['id']}\t{' '.join(r['text'].split()[1:])} extra\n" for r in rows))
    out = tmp_path / "out"
    code = main(["score", ref, good, str(bad), "--name", "good", "--name", "bad", "--missing", "empty",
                 "--out", str(out), "--bootstrap", "200"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "good: WER" in printed and "good vs bad" in printed
    report = json.loads((out / "score.json").read_text())
    good_s, bad_s = report["systems"]
    assert good_s["missing"]["missing_hypotheses"] == [rows[-1]["id"]]
    assert good_s["deletions"] == len(rows[-1]["text"].split()) and good_s["substitutions"] == 0
    assert bad_s["wer"] > good_s["wer"] and report["comparisons"][0]["paired_bootstrap"]["significant"]
    assert set(good_s["per_speaker"]) == {"spk0", "spk1", "spk2"}
    assert bad_s["worst"][0]["alignment"].startswith("REF:")
    assert bad_s["confusions"]["insertions"][0] == {"hyp": "EXTRA", "count": 30}
    md = (out / "score.md").read_text()
    assert "| good |" in md and "Missing utterances" in md and "Per speaker" in md
    page = (out / "score.html").read_text()
    assert page.count("<svg") == 2 and "<script" not in page and "src=" not in page and "href=" not in page


def test_score_cli_errors(tmp_path, capsys):
    ref, rows = _manifest(tmp_path)
    hyp = write_transcripts(str(tmp_path / "h.trn"), [(r["id"], r["text"]) for r in rows[:-1]], format="trn")
    assert main(["score", ref, hyp]) == 1
    assert "have no hypothesis" in capsys.readouterr().err
    dup = tmp_path / "dup.txt"
    dup.write_text("u1 A\nu1 B\n")
    assert main(["score", str(dup), str(dup)]) == 1
    assert "dup.txt:2: duplicate utterance id" in capsys.readouterr().err


@pytest.mark.slow
def test_benchmark_cli_end_to_end_and_cache(tmp_path):
    manifest = write_corpus(str(tmp_path / "corpus"))
    preset = write_preset(str(tmp_path / "preset.yaml"), tiny_config(epochs=1))
    run = str(tmp_path / "run")
    assert main(["train", "asr", "--config", preset, "--train", manifest, "--out", run, "--quiet"]) == 0
    other = tmp_path / "other.txt"
    other.write_text("u00 AB\nu01 CAB\n")
    config = tmp_path / "bench.yaml"
    config.write_text(f"""
out: {tmp_path / 'out'}
test_sets: [{{name: tiny, manifest: {manifest}}}]
systems:
  - {{name: greedy, run: {run}}}
  - {{name: beam, run: {run}, decode: {{decoder: beam, beam_width: 4}}}}
  - {{name: other, hypotheses: {{tiny: {other}}}}}
score: {{bootstrap: 100}}
""")
    assert main(["benchmark", str(config)]) == 0
    first = json.loads((tmp_path / "out" / "benchmark.json").read_text())["results"][0]["report"]["systems"]
    assert [s["cached"] for s in first] == [False, False, None]
    assert first[0]["rtf"] > 0 and first[2]["missing"]["count"] == 10
    assert main(["benchmark", str(config)]) == 0
    second = json.loads((tmp_path / "out" / "benchmark.json").read_text())["results"][0]["report"]["systems"]
    assert [s["cached"] for s in second] == [True, True, None]
    assert [s["wer"] for s in second] == [s["wer"] for s in first]
    assert [s["rtf"] for s in second] == [s["rtf"] for s in first]
    md = (tmp_path / "out" / "benchmark.md").read_text()
    assert "| greedy |" in md and "(cached)" in md
    assert (tmp_path / "out" / "tiny" / "score.html").is_file()
