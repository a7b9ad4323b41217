"""WaveNet generation benchmark: cached (numba and XLA loop) vs naive recomputation, and real-time factors.

For the wavenet-mini preset (or a trained run) at 16 kHz it measures, with mel conditioning:

- naive: every new sample recomputes the full network over its receptive field (one compiled
  TensorFlow call per sample on a receptive-field window), the algorithm without queues;
- cached, TensorFlow: the XLA-compiled ``tf.while_loop`` over ``WaveNet.step`` (the exportable path);
- cached, numba: ``FastWaveNet`` on one thread (the CLI default);

each at batch 1, and the cached paths at batch 8 too. It reports samples per second, the speed-up of
the cached paths over the naive one, and real-time factors (wall time / seconds of audio
generated; at batch 8 over all 8 streams, and per stream). Compile and warm-up calls are not timed.
On a shared machine the wall-clock figures depend on the load, so samples per CPU-second (process
time, all threads) are given too: for the one-thread numba loop that is its speed on a dedicated core.
With ``--report`` it adds the copy-synthesis figures of an ``eval-vocoder`` report.

Usage:
    python benchmarks/bench_wavenet.py [--run exp/wavenet-mini] [--report exp/wavenet-mini/eval/report.json]

Prints a markdown table and one ``BENCHMARKS.md`` row (date, revision, machine, command, figures).
"""

import argparse
import json
import logging
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from _row import row  # noqa: E402

PRESET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "wavenet-mini.yaml")


def _model(run, preset):
    from speechkit.vocoder.config import load_vocoder_config
    from speechkit.vocoder.generation import load_vocoder
    from speechkit.vocoder.train import build_model

    if run:
        return load_vocoder(run).model, run
    return build_model(load_vocoder_config(preset), seed=0), os.path.relpath(preset)


def _conditioning(model, batch, n, rng):
    audio = (0.3 * rng.standard_normal((batch, n))).astype(np.float32)
    from speechkit.vocoder.wavenet import conditioning_mel

    mel = conditioning_mel(audio, frontend=model.frontend, context=model.config.cond_context)
    return model.upsample(mel, n).numpy()


def _cached(engine, model, batch, n, rng, repeats=1):
    from speechkit.vocoder.wavenet import silence_class

    cond = _conditioning(model, batch, n, rng) if model.upsampler is not None else None
    noise = rng.random((batch, n), dtype=np.float32)
    state = {k: v.numpy() for k, v in model.initial_state(batch).items()}
    x0 = np.full(batch, silence_class(model.frontend))
    engine.run(x0, state, n, noise=noise, cond=cond)
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        engine.run(x0, state, n, noise=noise, cond=cond)
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - started_cpu)
    return batch * n / best, batch * n / best_cpu


def _naive(model, n, rng):
    """Samples/s when every sample recomputes the full network over its receptive field."""
    import tensorflow as tf

    from speechkit.vocoder.generation import sample_from_logits

    rf = model.receptive_field().samples
    has_cond = model.upsampler is not None
    cond = tf.constant(_conditioning(model, 1, rf + n, rng)) if has_cond else None

    @tf.function(jit_compile=True)
    def last_logits(window, cond_window):
        x = model.embed(model.input_from_classes(window))
        skips = None
        for layer in model.res_layers:
            x, skip = layer(x, cond_window, None)
            skips = skip if skips is None else skips + skip
        return model.head(skips[:, -1])

    history = np.full((1, rf + n), 128, np.int32)
    noise = tf.constant(rng.random((1, n), dtype=np.float32))

    def run(count):
        for t in range(count):
            window = tf.constant(history[:, t:t + rf])
            cond_window = cond[:, t:t + rf] if has_cond else None
            logits = last_logits(window, cond_window)
            history[0, t + rf] = int(sample_from_logits(logits, noise[:, t], tf.constant(1.0))[0])

    run(3)
    started, started_cpu = time.perf_counter(), time.process_time()
    run(n)
    return n / (time.perf_counter() - started), n / (time.process_time() - started_cpu)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", default=None, help="trained vocoder run (default: the wavenet-mini preset, "
                                                    "random weights; speed does not depend on the weights)")
    parser.add_argument("--preset", default=PRESET, help="preset used without --run")
    parser.add_argument("--seconds", type=float, default=2.0, help="audio generated per cached measurement")
    parser.add_argument("--tf-seconds", type=float, default=0.5, help="audio per XLA-loop measurement")
    parser.add_argument("--naive-samples", type=int, default=200, help="samples timed for the naive path")
    parser.add_argument("--report", default=None, help="eval-vocoder report.json to quote")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from speechkit.vocoder.fast import FastWaveNet
    from speechkit.vocoder.generation import TFGenerator

    model, source = _model(args.run, args.preset)
    rate = model.frontend.sample_rate
    rng = np.random.default_rng(0)
    fast, graph = FastWaveNet(model), TFGenerator(model)
    n, n_tf = int(args.seconds * rate), int(args.tf_seconds * rate)
    load = os.getloadavg()[0]
    figures = {
        "naive_b1": _naive(model, args.naive_samples, rng),
        "tf_b1": _cached(graph, model, 1, n_tf, rng),
        "tf_b8": _cached(graph, model, 8, n_tf, rng),
        "numba_b1": _cached(fast, model, 1, n, rng, repeats=2),
        "numba_b8": _cached(fast, model, 8, n, rng, repeats=2),
    }
    rf = model.receptive_field()
    lines = [
        f"model: {source}: {model.config.num_layers} layers, R{model.config.residual_channels}/"
        f"G{model.config.gate_channels}/S{model.config.skip_channels}, receptive field {rf.samples} samples "
        f"({rf.ms:.0f} ms), {model.config.macs_per_sample / 1e3:.0f}k MACs/sample; load average {load:.1f}",
        "",
        "| path | batch | samples/s (all streams) | x naive | RTF (all streams) | RTF per stream | samples per CPU-s |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label in (("naive_b1", "naive recomputation (TF, XLA)"), ("tf_b1", "cached, TF while_loop (XLA)"),
                       ("tf_b8", "cached, TF while_loop (XLA)"), ("numba_b1", "cached, numba (1 thread)"),
                       ("numba_b8", "cached, numba (1 thread)")):
        batch = 8 if key.endswith("b8") else 1
        sps, cpu = figures[key]
        lines.append(f"| {label} | {batch} | {sps:,.0f} | {sps / figures['naive_b1'][0]:.1f} | {rate / sps:.3f} | "
                     f"{rate * batch / sps:.3f} | {cpu:,.0f} |")
    print("\n".join(lines))
    wall = {k: v[0] for k, v in figures.items()}
    cpu = {k: v[1] for k, v in figures.items()}
    summary = (f"wavenet-mini ({model.config.num_layers} layers, {model.config.macs_per_sample / 1e3:.0f}k MACs/"
               f"sample), load {load:.1f}, wall-clock samples/s: naive {wall['naive_b1']:,.1f}; cached TF-XLA "
               f"{wall['tf_b1']:,.0f} (b1, {wall['tf_b1'] / wall['naive_b1']:.0f}x naive), "
               f"{wall['tf_b8']:,.0f} (b8); cached numba {wall['numba_b1']:,.0f} (b1, "
               f"{wall['numba_b1'] / wall['naive_b1']:.0f}x naive, RTF {rate / wall['numba_b1']:.2f}), "
               f"{wall['numba_b8']:,.0f} (b8, RTF {rate / wall['numba_b8']:.2f} over all streams); "
               f"numba per CPU-second {cpu['numba_b1']:,.0f} (b1, RTF {rate / cpu['numba_b1']:.2f}), "
               f"{cpu['numba_b8']:,.0f} (b8)")
    if args.report:
        with open(args.report, encoding="utf-8") as f:
            s = json.load(f)["summary"]
        summary += (f"; copy synthesis ({s['utterances']} utts): LSD {s['lsd_db']:.2f} dB, MCD {s['mcd_db']:.2f} dB "
                    f"(mu-law floor {s['mulaw_lsd_db']:.2f} / {s['mulaw_mcd_db']:.2f})")
        if "wer_vocoded" in s:
            summary += f", ASR WER {s['wer_original'] * 100:.1f}% original vs {s['wer_vocoded'] * 100:.1f}% vocoded"
    print()
    print(row(summary))


if __name__ == "__main__":
    main()
