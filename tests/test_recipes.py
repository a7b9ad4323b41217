"""End-to-end recipe runs on tiny data: the mini recipe in FAST mode, and the LibriSpeech recipe on a
LibriSpeech-layout fixture made by the mini synthesiser. Nothing is downloaded."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from speechkit.metrics import wer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOKS = os.path.join(REPO, "..", "shared", "corpus", "books")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.isdir(BOOKS), reason="needs ../shared/corpus/books")]


def _run(cmd, cwd, env_extra=None, timeout=900):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"], **(env_extra or {}))
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope="module")
def mini_fast(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    data, exp = root / "data", root / "exp"
    proc = _run(["bash", "recipes/mini/run.sh", "--data", str(data), "--exp", str(exp)], REPO, {"FAST": "1"})
    return data, exp, proc


def test_mini_recipe_fast_writes_the_report(mini_fast):
    data, exp, proc = mini_fast
    for stage in range(1, 12):
        assert f"Stage {stage}:" in proc.stdout + proc.stderr
    test_ids = sorted(json.loads(line)["id"] for line in (data / "test.jsonl").read_text().splitlines())
    for decoder in ("greedy", "beam", "beam_lm"):
        out = exp / "eval" / "test" / decoder
        report = json.loads((out / "report.json").read_text())
        hyps = [json.loads(line) for line in (out / "hypotheses.jsonl").read_text().splitlines()]
        # FAST trains for a minute, so its WER means nothing; what must hold is that every test
        # utterance was decoded once and that the report's WER is the one its hypotheses give.
        assert sorted(h["id"] for h in hyps) == test_ids and report["utterances"] == len(test_ids) > 0
        assert report["wer"] == pytest.approx(wer([h["ref"] for h in hyps], [h["hyp"] for h in hyps]))
        assert 0.0 <= report["wer"] <= 1.5
    tuned = yaml.safe_load((exp / "asr" / "decode.yaml").read_text())
    assert tuned["decoder"] == "beam" and tuned["alpha"] in (0.5, 1.0) and tuned["beta"] in (0.0, 1.0)
    # The released model is evaluated on the same (unseen-speaker) test set and recognises the round trip.
    released = {d: json.loads((exp / "eval_released" / "test" / d / "report.json").read_text())
                for d in ("greedy", "beam", "beam_lm")}
    assert all(r["utterances"] == len(test_ids) for r in released.values())
    assert released["greedy"]["wer"] < 0.75 and released["beam_lm"]["wer"] < 0.6
    assert "round trip (models/ds2-mini)" in proc.stdout + proc.stderr
    vocoder = json.loads((exp / "vocoder_eval" / "report.json").read_text())["summary"]
    assert "wer_vocoded" in vocoder and "wer_original" in vocoder
    assert (exp / "export" / "asr" / "saved_model.pb").is_file()
    assert (exp / "export" / "vocoder" / "saved_model.pb").is_file()
    md = (exp / "report.md").read_text()
    assert "| beam + LM |" in md and "receptive field" in md and "Round trip" in md
    assert "Next to the released model `ds2-mini`" in md
    tts = json.loads((exp / "tts_eval" / "report.json").read_text())["summary"]
    # The released tts-mini speaks the held-out sentences; no TTS model is trained.
    assert tts["utterances"] == 3 and "wer_synthesized" in tts and not (exp / "tts").exists()
    assert os.path.samefile(tts["tts_run"], os.path.join(REPO, "models", "tts-mini"))
    assert "## Text to speech (tts-mini)" in md and "The released model `tts-mini`" in md and "tts_eval/wav/" in md
    assert "export/asr" in md and "training_curves.png" in md
    html = (exp / "report.html").read_text()
    assert "data:image/png;base64," in html


def test_mini_recipe_skips_finished_stages(mini_fast):
    data, exp, _ = mini_fast
    before = (exp / "asr" / "model.keras").stat().st_mtime
    proc = _run(["bash", "recipes/mini/run.sh", "--data", str(data), "--exp", str(exp), "--stage", "2",
                 "--stop-stage", "6"], REPO, {"FAST": "1"}, timeout=300)
    assert "Stage 4:" in proc.stdout + proc.stderr
    assert (exp / "asr" / "model.keras").stat().st_mtime == before


def test_librispeech_recipe_on_a_synthetic_fixture(mini_fast, tmp_path):
    data, _, _ = mini_fast
    corpus = tmp_path / "LibriSpeech"
    corpus.mkdir()
    for split, name in (("train", "train-clean-100"), ("dev", "dev-clean"), ("test", "test-clean")):
        os.symlink(data / split, corpus / name)
    exp = tmp_path / "exp"
    _run(["bash", "recipes/librispeech/run.sh", "--data", str(corpus), "--exp", str(exp),
          "--config", "models/ds2-mini.yaml", "--vocoder-config", "models/wavenet-mini.yaml",
          "--asr-budget", "0.5", "--vocoder-budget", "0.3", "--vocode-limit", "1", "--lm-order", "3"], REPO)
    assert len((exp / "data" / "train-clean-100.jsonl").read_text().splitlines()) > 0
    assert (exp / "data" / "lm_text.txt").read_text().strip()
    for test_set in ("test-clean", "dev-clean"):
        assert json.loads((exp / "eval" / test_set / "beam_lm" / "report.json").read_text())["utterances"] > 0
    assert "| beam + LM |" in (exp / "report.md").read_text()


def test_librispeech_recipe_requires_data(tmp_path):
    proc = subprocess.run(["bash", "recipes/librispeech/run.sh", "--exp", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "--data" in proc.stderr


def test_release_recipe_fast_packs_and_saves_a_campaign_that_the_next_call_continues(tmp_path):
    data, exp = tmp_path / "data", tmp_path / "exp"
    args = ["bash", "recipes/release/run.sh", "--data", str(data), "--exp", str(exp)]
    _run(args, REPO, {"FAST": "1"})
    card = json.loads((exp / "models" / "ds2-mini" / "card.json").read_text())
    assert card["family"] == "asr" and {"test_greedy_wer", "test_beam_lm_wer"} <= set(card["figures"])
    state = json.loads((exp / "campaign" / "backup" / "state.json").read_text())
    assert state["step"] >= 1 and state["best"] is None
    (exp / "asr").rename(tmp_path / "elsewhere")  # a fresh machine: only the saved campaign is left
    proc = _run(args + ["--stage", "4", "--stop-stage", "4"], REPO, {"FAST": "1"})
    assert "continuing the committed campaign checkpoint" in proc.stdout + proc.stderr
    assert f"resuming {exp / 'asr'} at step {state['step']}" in proc.stdout + proc.stderr
    # The vocoder campaign on the same corpus: train, evaluate, save, continue on a fresh machine, pack.
    vocoder = ["bash", "recipes/release/vocoder.sh", "--data", str(data), "--exp", str(exp), "--stage", "2"]
    _run(vocoder + ["--stop-stage", "4"], REPO, {"FAST": "1", "VOCODER_BUDGET": "0.2"})
    summary = json.loads((exp / "vocoder_eval" / "report.json").read_text())["summary"]
    assert summary["utterances"] == 2 and "wer_vocoded" in summary and "lsd_db" in summary
    # The preset's mel post-filter runs, and the report keeps the network's own figure beside it.
    assert summary["postfilter"] == 2 and "wer_vocoded_without_postfilter" in summary
    state = json.loads((exp / "campaign-vocoder" / "backup" / "state.json").read_text())
    assert state["step"] >= 1 and state["best"] is None
    (exp / "vocoder").rename(tmp_path / "elsewhere-vocoder")
    proc = _run(vocoder + ["--stop-stage", "2"], REPO, {"FAST": "1", "VOCODER_BUDGET": "0.1"})
    assert "continuing the committed campaign checkpoint" in proc.stdout + proc.stderr
    assert f"resuming {exp / 'vocoder'} at step {state['step']}" in proc.stdout + proc.stderr
    _run(vocoder[:-1] + ["5", "--stop-stage", "5"], REPO, {"FAST": "1"})
    assert json.loads((exp / "models" / "wavenet-mini" / "card.json").read_text())["family"] == "vocoder"


@pytest.mark.parametrize("recipe", ["mini/run.sh", "music/run.sh", "release/run.sh", "release/vocoder.sh",
                                    "release/tts.sh", "librispeech/run.sh"])
def test_recipes_share_their_options(recipe):
    """--help prints the whole header comment, up to its last line; an unknown option is refused, naming it."""
    script = os.path.join(REPO, "recipes", recipe)
    header = []
    for line in open(script).read().splitlines()[1:]:
        if not line.startswith("#"):
            break
        header.append(line[2:] if line.startswith("# ") else line[1:])
    shown = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and shown.stdout.splitlines() == header and "Usage:" in shown.stdout
    refused = subprocess.run(["bash", script, "--no-such-option"], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "unknown option: --no-such-option" in refused.stderr
