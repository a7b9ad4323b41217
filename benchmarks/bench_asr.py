"""ASR benchmark: greedy WER/CER of a trained Deep Speech 2 run, its training throughput and inference RTF.

Training figures come from ``RUN/train_summary.json`` (written by ``speechkit train asr``): steps,
seconds of audio trained per wall-clock second and per CPU second of the training process, and
the wall time. Each manifest is then scored with ``speechkit.asr.evaluate.evaluate`` (greedy),
which also times the front end + network over the audio duration (RTF, after one warm-up call).

Usage:
    python benchmarks/bench_asr.py --run exp/ds2-mini --manifest data/mini/dev.jsonl --manifest data/mini/test.jsonl

Prints a markdown table and one ``BENCHMARKS.md`` row (date, revision, machine, command, figures).
"""

import argparse
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _row import row  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", required=True, help="trained ASR run directory")
    parser.add_argument("--manifest", action="append", required=True, help="manifest to score (repeatable)")
    parser.add_argument("--out", default=None, help="report folder root; default RUN/bench")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from speechkit.asr.evaluate import evaluate
    from speechkit.asr.inference import load_run
    from speechkit.data.manifest import SkipReport, read_manifest

    summary_path = os.path.join(args.run, "train_summary.json")
    training = json.load(open(summary_path, encoding="utf-8")) if os.path.exists(summary_path) else {}
    recognizer = load_run(args.run)
    results = {}
    for manifest in args.manifest:
        name = os.path.splitext(os.path.basename(manifest))[0]
        skips = SkipReport()
        utterances = read_manifest(manifest, skip_report=skips)
        out = os.path.join(args.out or os.path.join(args.run, "bench"), name)
        results[name] = evaluate(recognizer, utterances, out_dir=out, source=manifest, skip_report=skips)

    print(f"run {args.run}: {training.get('parameters', '?')} parameters, {training.get('step', '?')} steps, "
          f"{training.get('epochs_done', 0):.2f} epochs, stopped by {training.get('stopped', '?')}")
    if training:
        print(f"training: {training['throughput_audio_s_per_s']:.1f} s of audio per wall second, "
              f"{training.get('audio_s_per_cpu_s') or 0:.1f} per CPU second, "
              f"{training['train_seconds'] / 60:.1f} min in training steps\n")
    print("| set | utterances | greedy WER (95% CI) | CER | RTF |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        lo, hi = r["wer_ci95"]
        print(f"| {name} | {r['utterances']} | {r['wer']:.2%} ({lo:.2%}-{hi:.2%}) | {r['cer']:.2%} | {r['rtf']:.4f} |")
    figures = "; ".join(f"{name} greedy WER {r['wer']:.2%} CER {r['cer']:.2%} RTF {r['rtf']:.4f}"
                        for name, r in results.items())
    if training:
        figures += (f"; training {training['throughput_audio_s_per_s']:.1f}x real time "
                    f"({training['step']} steps, {training['train_seconds'] / 60:.1f} min)")
    print()
    print(row(figures))


if __name__ == "__main__":
    main()
