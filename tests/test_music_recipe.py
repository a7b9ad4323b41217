"""The music recipe's FAST=1 smoke run: corpus, recogniser check, two tiny WaveNets, primed/unprimed scoring."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import soundfile as sf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.slow


def test_music_recipe_fast_writes_the_report(tmp_path):
    data, exp = tmp_path / "data", tmp_path / "exp"
    env = dict(os.environ, FAST="1", PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    proc = subprocess.run(["bash", "recipes/music/run.sh", "--data", str(data), "--exp", str(exp)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    for stage in range(1, 7):
        assert f"Stage {stage}:" in proc.stdout + proc.stderr
    assert json.loads((exp / "chords.json").read_text())["accuracy"] >= 0.95
    assert json.loads((exp / "uncond" / "DONE").read_text())["step"] >= 1
    assert json.loads((exp / "chords" / "speakers.json").read_text())[0] == "A#:aug"
    report = json.loads((exp / "eval" / "report.json").read_text())
    modes = [(r["source"], r["mode"], r["conditioned"]) for r in report["rows"]]
    assert modes == [("real", "window", None), ("uncond", "unprimed", False), ("uncond", "primed", False),
                     ("chords", "unprimed", True), ("chords", "primed", True)]
    assert report["rows"][0]["chord_accuracy"] == 1.0 and report["rows"][0]["music_share"] == 1.0
    assert "chord_accuracy" not in report["rows"][1] and "chord_accuracy" in report["rows"][3]
    markdown = (exp / "eval" / "report.md").read_text()
    for row in report["rows"][1:]:
        for clip in row["clips_detail"]:
            assert (exp / "eval" / clip["wav"]).is_file() and clip["wav"] in markdown
        assert (exp / "eval" / row["clips_detail"][0]["png"]).is_file()
    # The presets generate at 8 kHz; clips are scored and written at 16 kHz, as long as the real windows.
    assert json.loads((exp / "chords" / "DONE").read_text())["receptive_field_ms"] > 300
    for row in report["rows"]:
        wav = sf.info(str(exp / "eval" / row["clips_detail"][0]["wav"]))
        assert (wav.samplerate, wav.frames) == (16000, round(report["seconds"] * 16000))

    campaign = exp / "campaigns" / "wavenet-triads-chords"
    for name in ("speakers.json", "config.yaml", "backup/state.json"):
        assert (campaign / name).is_file(), name
    assert not (campaign / "model.keras").exists() and not (campaign / "DONE").exists()
    saved_step = json.loads((campaign / "backup" / "state.json").read_text())["step"]
    # Another machine: the committed campaigns are all there is, and stage 4 continues from them.
    other = tmp_path / "other"
    shutil.copytree(exp / "campaigns", other / "campaigns")
    proc = subprocess.run(["bash", "recipes/music/run.sh", "--data", str(data), "--exp", str(other), "--stage", "4",
                           "--stop-stage", "4"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "continuing the committed campaign checkpoint" in proc.stdout
    assert (other / "chords" / "model.keras").is_file()
    assert json.loads((other / "chords" / "DONE").read_text())["step"] > saved_step

    out = tmp_path / "c_min.wav"
    proc = subprocess.run([sys.executable, "-m", "speechkit", "generate", str(exp / "chords"), "--chord", "Db:min",
                           "--seconds", "0.05", "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-3000:]
    proc = subprocess.run([sys.executable, "-m", "speechkit", "generate", str(exp / "chords"), "--chord", "X:maj",
                           "--seconds", "0.05", "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "X:maj" in proc.stderr
