"""Decoding benchmark: greedy vs beam search vs beam search with a KenLM model, on one manifest.

For each decoder it reports WER and CER, and the decoding time per second of audio; then the
whole-pipeline real-time factor: front end and acoustic model (``Recognizer.log_probs``) plus the
beam search with the LM, over the audio duration. Audio file reading is not timed. The acoustic
model runs once (after one warm-up call that traces the graph), and every decoder reads the same
log-probabilities, so the decoders differ in nothing else.

Usage:
    python benchmarks/bench_decoding.py --run exp/ds2-mini --lm exp/lm-mini --manifest data/mini/test.jsonl

The alpha/beta/beam width of the LM row come from ``RUN/decode.yaml`` (``speechkit lm tune``) when it
holds a beam configuration, otherwise from the options. Prints a markdown table and one
``BENCHMARKS.md`` row (date, revision, machine, command, figures).
"""

import argparse
import datetime
import logging
import os
import platform
import shlex
import subprocess
import sys
import time


def _revision():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", required=True, help="trained ASR run directory")
    parser.add_argument("--lm", required=True, help="LM directory from 'speechkit lm build'")
    parser.add_argument("--manifest", required=True, help="test manifest (JSONL)")
    parser.add_argument("--beam-width", type=int, default=64, help="beam width unless RUN/decode.yaml says otherwise")
    parser.add_argument("--alpha", type=float, default=0.5, help="LM weight unless RUN/decode.yaml says otherwise")
    parser.add_argument("--beta", type=float, default=1.0, help="word bonus unless RUN/decode.yaml says otherwise")
    parser.add_argument("--limit", type=int, default=None, help="use the first N utterances only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from speechkit import audio as audio_io
    from speechkit.asr.beam import DecodeConfig, build_decoder, load_decode_config
    from speechkit.asr.inference import load_run
    from speechkit.data.manifest import read_manifest
    from speechkit.metrics import cer, wer

    utterances = read_manifest(args.manifest)[:args.limit]
    recognizer = load_run(args.run)
    rate = recognizer.frontend.sample_rate
    audios = [audio_io.load(u.audio, sample_rate=rate) for u in utterances]
    references = [u.text for u in utterances]
    seconds = sum(len(a) for a in audios) / rate

    recognizer.log_probs(audios[:1])
    start = time.perf_counter()
    log_probs = recognizer.log_probs(audios)
    model_time = time.perf_counter() - start

    tuned = load_decode_config(args.run)
    if tuned.decoder == "beam":
        lm_config = DecodeConfig(decoder="beam", lm=args.lm, beam_width=tuned.beam_width, alpha=tuned.alpha,
                                 beta=tuned.beta)
        source = f"{args.run}/decode.yaml"
    else:
        lm_config = DecodeConfig(decoder="beam", lm=args.lm, beam_width=args.beam_width, alpha=args.alpha,
                                 beta=args.beta)
        source = "options"
    rows = [("greedy", DecodeConfig()),
            (f"beam {lm_config.beam_width}, no LM", DecodeConfig(decoder="beam", beam_width=lm_config.beam_width)),
            (f"beam {lm_config.beam_width} + LM (alpha {lm_config.alpha:g}, beta {lm_config.beta:g})", lm_config)]
    results = []
    for name, config in rows:
        decoder = build_decoder(config, recognizer.vocabulary)
        start = time.perf_counter()
        hypotheses = decoder.decode_batch(log_probs)
        elapsed = time.perf_counter() - start
        decoder.close()
        results.append((name, float(wer(references, hypotheses)), float(cer(references, hypotheses)), elapsed))
    rtf = (model_time + results[-1][3]) / seconds

    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__)] + list(argv or sys.argv[1:]))
    print(f"{len(utterances)} utterances, {seconds / 60:.1f} min of audio from {args.manifest}; "
          f"LM weights from {source}")
    print(f"front end + model: {model_time:.2f} s ({model_time / seconds:.4f} s per second of audio)\n")
    print("| decoder | WER | CER | decode ms per audio s |")
    print("|---|---|---|---|")
    for name, w, c, elapsed in results:
        print(f"| {name} | {w:.2%} | {c:.2%} | {1000 * elapsed / seconds:.2f} |")
    print(f"\nwhole pipeline (front end + model + beam + LM) RTF: {rtf:.4f}\n")
    figures = "; ".join(f"{name}: WER {w:.2%}, CER {c:.2%}, decode {1000 * elapsed / seconds:.2f} ms/s"
                        for name, w, c, elapsed in results)
    print(f"| {datetime.date.today().isoformat()} | {_revision()} | {_machine()} | `{command}` | "
          f"{figures}; pipeline RTF {rtf:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
