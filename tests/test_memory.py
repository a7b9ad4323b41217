"""Memory: transcription in one process stays flat over 1,000 files, and an hour-long file is read window by window."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from _tiny_asr import rss_mb, subprocess_env

RATE = 16000


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """An untrained tiny DS2 saved in the run layout that ``load_run`` reads."""
    from _tiny_asr import tiny_config
    from speechkit.asr.deepspeech2 import build_deepspeech2
    from speechkit.runs import RunDir
    from speechkit.text import Vocabulary

    run = RunDir(tmp_path_factory.mktemp("run"))
    config = tiny_config()
    run.save_model(build_deepspeech2(config.model, frontend=config.frontend))
    run.save_config(config)
    run.save_vocabulary(Vocabulary())
    return run.path


def _noise_file(path, seconds, *, block_seconds=60):
    """Low noise written block by block, so the test itself never holds the whole file."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=RATE, channels=1, subtype="PCM_16") as f:
        left = int(seconds * RATE)
        while left:
            n = min(left, block_seconds * RATE)
            f.write((rng.standard_normal(n) * 30).astype(np.int16))
            left -= n


def test_thousand_files_in_one_process_keep_rss_flat(run_dir, tmp_path):
    from speechkit.asr.inference import load_run

    source = tmp_path / "one.wav"
    t = np.arange(RATE) / RATE
    sf.write(source, (0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), RATE, subtype="PCM_16")
    links = tmp_path / "links"
    links.mkdir()
    paths = []
    for i in range(1000):
        path = links / f"f{i:04d}.wav"
        os.link(source, path)
        paths.append(str(path))
    recognizer = load_run(run_dir, batch_size=16)
    rss, count = {}, 0
    for _ in recognizer.transcribe_files(paths):
        count += 1
        if count in (32, 1000):  # after the second batch, and after the last
            rss[count] = rss_mb()
    assert count == 1000
    growth = rss[1000] - rss[32]
    assert growth < 20, f"RSS grew {growth:.1f} MiB over 968 files ({rss})"


_HOUR = """
import json, resource, sys
from speechkit.asr.inference import load_run

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

run, warmup, hour = sys.argv[1:4]
recognizer = load_run(run)
short = recognizer.log_probs_file(warmup)
before = peak_mb()
log_probs = recognizer.log_probs_file(hour)
after = peak_mb()
text = dict(recognizer.transcribe_files([hour]))[hour]
print(json.dumps({"peak_before": before, "peak_after": after, "frames": log_probs.shape[0],
                  "warmup_frames": short.shape[0], "windows": len(recognizer.windows(3600 * 16000)),
                  "text_chars": len(text), "finite": bool((log_probs == log_probs).all())}))
"""


@pytest.mark.slow
def test_hour_long_file_is_transcribed_in_bounded_memory(run_dir, tmp_path):
    warmup, hour = str(tmp_path / "six_minutes.wav"), str(tmp_path / "hour.wav")
    _noise_file(warmup, 360)
    _noise_file(hour, 3600)
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _HOUR, run_dir, warmup, hour], capture_output=True, text=True,
                            timeout=570, env=subprocess_env())
    assert result.returncode == 0, result.stderr[-4000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    # 1 + 57,600,000 // 160 frames, halved by the time stride of 2 (rounded up).
    assert figures["frames"] == 180_001 and figures["warmup_frames"] == 18_001 and figures["finite"]
    assert figures["windows"] == 139  # cores of 26 s (30 s windows less 2 s of context on each side)
    # Only the hour's log-probabilities (180,001 x 29 float32 = 21 MiB, briefly twice while joined) may add to
    # the peak of the six-minute file; the hour as float32 audio alone would add 220 MiB, its spectrogram GiBs.
    growth = figures["peak_after"] - figures["peak_before"]
    assert growth < 100, figures
