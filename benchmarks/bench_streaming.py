"""Streaming recognition: lookahead, compute per chunk (Keras, SavedModel, TFLite) and streaming vs offline WER.

Prints one ``BENCHMARKS.md`` row (date, revision, machine, command, figures). Usage::

    # a preset copy with the fixed normalisation statistics of the training set filled in
    python benchmarks/bench_streaming.py preset --config models/ds2-streaming.yaml --train data/mini/train.jsonl \\
        --out /tmp/stream/ds2-streaming.yaml
    nice -n 10 speechkit train asr --config /tmp/stream/ds2-streaming.yaml --train data/mini/train.jsonl \\
        --dev data/mini/dev.jsonl --out /tmp/stream/run --time-budget 9
    python benchmarks/bench_streaming.py measure --run /tmp/stream/run --manifest data/mini/test.jsonl

``measure`` exports the run (SavedModel and TFLite) into ``RUN/stream-export``, times ``stream_step`` on
160 ms chunks of test audio in Keras (``Recognizer.stream``), the SavedModel and TFLite, interleaved in one
process, and decodes the whole manifest both offline (``Recognizer.transcribe``) and streamed chunk by chunk.
"""

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from speechkit import audio as audio_io
from speechkit.asr.inference import load_run
from speechkit.asr.streaming import frontend_with_statistics, lookahead_ms
from speechkit.asr.train import load_train_config
from speechkit.data.manifest import read_manifest
from speechkit.export.asr import export_asr
from speechkit.export.streaming import ExportedStream, TFLiteStream
from speechkit.metrics import wer


def _revision():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _preset(args):
    config = load_train_config(args.config)
    frontend = frontend_with_statistics(config.frontend, read_manifest(args.train))
    out = config.__class__.from_dict({**config.to_dict(), "frontend": frontend.to_dict()})
    out.save(args.out)
    print(f"{args.out}: {args.config} with the fixed normalisation statistics of {args.train}")


def _time_chunks(make_stream, chunks, repeats):
    times = []
    for _ in range(repeats):
        stream = make_stream()
        for chunk in chunks:
            start = time.perf_counter()
            stream.feed(chunk)
            times.append(time.perf_counter() - start)
        stream.finish()
    return np.array(times) * 1000


def _measure(args):
    load_before = os.getloadavg()[0]
    recognizer = load_run(args.run)
    model = recognizer.streaming_model()
    rate = recognizer.frontend.sample_rate
    chunk = int(args.chunk_ms * rate / 1000)
    export_dir = os.path.join(args.run, "stream-export")
    export_asr(args.run, export_dir, tflite=True)
    loaded = tf.saved_model.load(export_dir)
    utterances = read_manifest(args.manifest)
    if args.limit:
        utterances = utterances[:args.limit]
    audios = [audio_io.load(u.audio, sample_rate=rate) for u in utterances]
    timing_audio = np.concatenate(audios[:args.timing_utterances])
    chunks = [timing_audio[i:i + chunk] for i in range(0, len(timing_audio) - chunk + 1, chunk)]
    engines = {"keras": lambda: recognizer.stream(),
               "saved_model": lambda: ExportedStream(export_dir, loaded=loaded),
               "tflite": lambda: TFLiteStream(export_dir, num_threads=args.threads)}
    for make in engines.values():  # warm-up: traces and allocations
        _time_chunks(make, chunks[:5], 1)
    times = {name: [] for name in engines}
    for _ in range(args.repeats):  # interleaved, so background load hits every engine alike
        for name, make in engines.items():
            times[name].append(_time_chunks(make, chunks, 1))
    times = {name: np.concatenate(t) for name, t in times.items()}
    refs = [u.text for u in utterances]
    offline = recognizer.transcribe(audios)
    streamed, max_diff = [], 0.0
    for audio in audios:
        stream = recognizer.stream()
        for i in range(0, len(audio), chunk):
            stream.feed(audio[i:i + chunk])
        streamed.append(stream.finish())
    for audio in audios[:args.timing_utterances]:
        stream = recognizer.stream()
        for i in range(0, len(audio), chunk):
            stream.feed(audio[i:i + chunk])
        stream.finish()
        reference = recognizer.log_probs([audio])[0]
        max_diff = max(max_diff, float(np.abs(stream.log_probs - reference).max()))
    look = lookahead_ms(model.config, model.frontend)
    figures = {
        "lookahead_ms": look,
        "algorithmic_latency_ms": look + args.chunk_ms,
        **{f"{name}_chunk_ms_median": float(np.median(t)) for name, t in times.items()},
        **{f"{name}_chunk_ms_p95": float(np.percentile(t, 95)) for name, t in times.items()},
        "chunks_timed": int(len(times["keras"])),
        "offline_wer": wer(refs, offline),
        "streaming_wer": wer(refs, streamed),
        "transcripts_differing": sum(a != b for a, b in zip(offline, streamed)),
        "max_abs_log_prob_diff": max_diff,
        "utterances": len(utterances),
    }
    figures["load_average"] = (load_before, os.getloadavg()[0])
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs ({args.machine_note}; load average "
               f"{figures['load_average'][0]:.1f} before, {figures['load_average'][1]:.1f} after)")
    command = "python benchmarks/bench_streaming.py " + " ".join(sys.argv[1:])
    engines_text = "; ".join(f"{name} {figures[f'{name}_chunk_ms_median']:.2f} / {figures[f'{name}_chunk_ms_p95']:.2f}"
                             for name in engines)
    print(f"| {date} | {_revision()} | {machine} | `{command}` | lookahead {look:.0f} ms, algorithmic latency "
          f"{look + args.chunk_ms:.0f} ms ({args.chunk_ms:.0f} ms chunks); compute per chunk median / p95 ms: "
          f"{engines_text} ({figures['chunks_timed']} chunks each); WER offline {figures['offline_wer'] * 100:.2f}% "
          f"= streaming {figures['streaming_wer'] * 100:.2f}% ({figures['utterances']} utterances, "
          f"{figures['transcripts_differing']} transcripts differ, max |log-prob diff| "
          f"{figures['max_abs_log_prob_diff']:.2g}) |")
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("preset", help="write a preset copy with the training set's normalisation statistics")
    p.add_argument("--config", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_preset)
    p = commands.add_parser("measure", help="lookahead, compute per chunk and streaming vs offline WER")
    p.add_argument("--run", required=True, help="trained streaming run")
    p.add_argument("--manifest", required=True, help="test manifest")
    p.add_argument("--limit", type=int, default=0, help="first N utterances only (0: all)")
    p.add_argument("--chunk-ms", type=float, default=160.0)
    p.add_argument("--timing-utterances", type=int, default=10, help="utterances streamed for the timings")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="TFLite interpreter threads")
    p.add_argument("--machine-note", default="shared with a background training job")
    p.set_defaults(func=_measure)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
