"""Reliability figures: RSS over 1,000 files, an hour-long file, and kill -9 / resume exactness.

The scenarios are those of ``tests/test_memory.py`` and ``tests/test_kill_resume.py`` (tiny model,
synthetic audio), with the figures printed instead of only bounded. RELIABILITY.md quotes them.

Usage:
    python benchmarks/bench_reliability.py [--work DIR] [--skip-hour] [--skip-kill]

Prints the figures and one ``BENCHMARKS.md`` row (date, revision, machine, command, figures).
"""

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from _row import row  # noqa: E402
from _tiny_asr import (TEXTS, rss_mb, speechkit_command, subprocess_env, tiny_config, weights,  # noqa: E402
                       write_corpus, write_preset)


def _run_dir(root):
    from speechkit.asr.deepspeech2 import build_deepspeech2
    from speechkit.runs import RunDir
    from speechkit.text import Vocabulary

    run = RunDir(os.path.join(root, "run"), create=True)
    config = tiny_config()
    run.save_model(build_deepspeech2(config.model, frontend=config.frontend))
    run.save_config(config)
    run.save_vocabulary(Vocabulary())
    return run.path


def _noise(path, seconds):
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as f:
        left = int(seconds * 16000)
        while left:
            n = min(left, 960_000)
            f.write((rng.standard_normal(n) * 30).astype(np.int16))
            left -= n


def thousand_files(root, recognizer):
    t = np.arange(16000) / 16000
    source = os.path.join(root, "one.wav")
    sf.write(source, (0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000, subtype="PCM_16")
    os.makedirs(os.path.join(root, "links"), exist_ok=True)
    paths = []
    for i in range(1000):
        paths.append(os.path.join(root, "links", f"f{i:04d}.wav"))
        os.link(source, paths[-1])
    rss, count = {}, 0
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in recognizer.transcribe_files(paths):
        count += 1
        if count in (32, 1000):
            rss[count] = rss_mb()
    return {"rss_after_32_mib": rss[32], "rss_after_1000_mib": rss[1000], "growth_mib": rss[1000] - rss[32],
            "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def hour(root, recognizer):
    warmup, long = os.path.join(root, "six_minutes.wav"), os.path.join(root, "hour.wav")
    _noise(warmup, 360)
    _noise(long, 3600)
    recognizer.log_probs_file(warmup)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    wall, cpu = time.perf_counter(), time.process_time()
    frames = recognizer.log_probs_file(long).shape[0]
    return {"peak_before_mib": before, "peak_after_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "frames": frames, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def kill_resume(root):
    manifest = write_corpus(os.path.join(root, "data"), TEXTS[:8])
    preset = write_preset(os.path.join(root, "tiny.yaml"), tiny_config(batch_size=2, epochs=2, checkpoint_every=1))

    def command(out):
        return speechkit_command("train", "asr", "--config", preset, "--train", manifest, "--out", out, "--quiet")

    env = subprocess_env()
    run, reference = os.path.join(root, "killed"), os.path.join(root, "reference")
    uninterrupted = subprocess.Popen(command(reference), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim = subprocess.Popen(command(run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_path = os.path.join(run, "backup", "state.json")
    while victim.poll() is None:
        if os.path.exists(state_path) and json.load(open(state_path))["batch"] > 0:
            victim.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    victim.wait()
    killed = json.load(open(state_path))
    subprocess.run(command(run), env=env, check=True, capture_output=True)
    uninterrupted.wait()

    def final(path):
        state = json.load(open(os.path.join(path, "backup", "state.json")))
        return state, weights(os.path.join(path, "backup", state["weights"]))

    (state, got), (_, expected) = final(run), final(reference)
    return {"killed_exit": victim.returncode, "killed_at_step": killed["step"], "killed_epoch": killed["epoch"],
            "killed_batch": killed["batch"], "final_step": state["step"],
            "max_abs_weight_diff": max(float(np.abs(got[k] - expected[k]).max()) for k in expected)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed at the end)")
    parser.add_argument("--skip-hour", action="store_true")
    parser.add_argument("--skip-kill", action="store_true")
    args = parser.parse_args()
    root = args.work or tempfile.mkdtemp(prefix="bench-reliability-")
    os.makedirs(root, exist_ok=True)
    try:
        from speechkit.asr.inference import load_run

        recognizer = load_run(_run_dir(root))
        figures = {"thousand_files": thousand_files(root, recognizer)}
        if not args.skip_hour:
            figures["hour"] = hour(root, recognizer)
        if not args.skip_kill:
            figures["kill_resume"] = kill_resume(root)
    finally:
        if args.work is None:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(figures, indent=2))
    parts = [f"1,000 files: RSS +{figures['thousand_files']['growth_mib']:.1f} MiB"]
    if "hour" in figures:
        h = figures["hour"]
        parts.append(f"1 h file: peak RSS +{h['peak_after_mib'] - h['peak_before_mib']:.0f} MiB over a 6-min file, "
                     f"{h['wall_s']:.1f} s")
    if "kill_resume" in figures:
        k = figures["kill_resume"]
        parts.append(f"kill -9 at step {k['killed_at_step']}, resumed to {k['final_step']}: "
                     f"max |dw| {k['max_abs_weight_diff']:.1e}")
    print(row("; ".join(parts)))


if __name__ == "__main__":
    main()
