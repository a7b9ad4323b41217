"""WaveNet generation benchmark: cached (numba and XLA loop) vs naive recomputation, batching, threads, SavedModel.

For a model (the wavenet-mini preset, r9y9/wavenet_vocoder's layout, or a trained run) at 16 kHz with
mel conditioning it measures, side by side in one process, interleaved over ``--repeats`` rounds
(best of the rounds):

- naive: every new sample recomputes the full network over its receptive field (one compiled
  TensorFlow call per sample on a receptive-field window), the algorithm without queues;
- cached, numba (``FastWaveNet``): batch 1, and batch 8 on one thread and on all threads;
- cached, TensorFlow (``TFGenerator``, the exported loop): batch 1, and batch 8 as one loop
  (``parallel=0``) and row by row, two rows at a time (``parallel=2``, the export's default);

and then the exported SavedModel's ``vocode_waveform`` in a fresh process that imports only
TensorFlow: the first call (XLA compilation included) and the best warm call, at batch 1 (and 8).

It reports samples per second (all streams), real-time factors, samples per CPU-second (process
time, all threads) and CPU/wall (about 2 when a run really uses both cores of a 2-core machine).
On a shared machine the wall-clock figures depend on the load, so compare the ratios measured in
the same run. With ``--report`` it adds the copy-synthesis figures of an ``eval-vocoder`` report.

Usage:
    python benchmarks/bench_wavenet.py [--layout mini|r9y9] [--run exp/wavenet-mini] [--report report.json]

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


# r9y9/wavenet_vocoder's layout: 16 layers, residual 64, gate 128 (our 2 x gate_channels), skip 64, mel.
R9Y9 = dict(layers_per_stack=8, stacks=2, residual_channels=64, gate_channels=64, skip_channels=64,
            head_channels=64, cond_channels=80)


def _model(run, preset, layout):
    import keras

    from speechkit.vocoder.config import load_vocoder_config
    from speechkit.vocoder.generation import load_vocoder
    from speechkit.vocoder.train import build_model
    from speechkit.vocoder.wavenet import WaveNet, WaveNetConfig

    if run:
        return load_vocoder(run).model, run
    config = load_vocoder_config(preset)
    if layout == "r9y9":
        keras.utils.set_random_seed(0)
        model = WaveNet(WaveNetConfig(**R9Y9), config.frontend, name="wavenet")
        model.build()
        return model, "r9y9 layout"
    return build_model(config, seed=0), os.path.relpath(preset)


def _conditioning(model, batch, n, rng):
    audio = (0.3 * rng.standard_normal((batch, n))).astype(np.float32)
    from speechkit.vocoder.wavenet import conditioning_mel

    mel = conditioning_mel(audio, frontend=model.frontend, context=model.config.cond_context)
    return model.upsample(mel, n).numpy()


class _Case:
    """One generator at one batch size, timed by ``time`` (best wall and CPU time over the calls)."""

    def __init__(self, engine, model, batch, n, rng):
        from speechkit.vocoder.wavenet import silence_class

        self.engine, self.batch, self.n = engine, batch, n
        self.kwargs = dict(noise=rng.random((batch, n), dtype=np.float32),
                           cond=_conditioning(model, batch, n, rng) if model.upsampler is not None else None)
        self.state = {k: v.numpy() for k, v in model.initial_state(batch).items()}
        self.x0 = np.full(batch, silence_class(model.frontend))
        self.wall = self.cpu = float("inf")
        engine.run(self.x0, self.state, n, **self.kwargs)

    def time(self):
        started, started_cpu = time.perf_counter(), time.process_time()
        self.engine.run(self.x0, self.state, self.n, **self.kwargs)
        wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        if wall < self.wall:
            self.wall, self.cpu = wall, cpu

    @property
    def figures(self):
        """(samples/s wall, samples per CPU-second, CPU/wall)."""
        samples = self.batch * self.n
        return samples / self.wall, samples / self.cpu, self.cpu / self.wall


def _baseline(rev, folder):
    """``FastWaveNet`` and ``TFGenerator`` as they were at git revision ``rev`` (modules loaded from ``git show``)."""
    import importlib.util
    import subprocess

    classes = []
    for name, cls in (("fast", "FastWaveNet"), ("generation", "TFGenerator")):
        source = subprocess.run(["git", "show", f"{rev}:speechkit/vocoder/{name}.py"], capture_output=True, text=True,
                                check=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout
        path = os.path.join(folder, f"baseline_{name}.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        spec = importlib.util.spec_from_file_location(f"baseline_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        classes.append(getattr(module, cls))
    return classes


_SAVED_MODEL_TIMER = """
import json, sys, time
import numpy as np
import tensorflow as tf
sig = tf.saved_model.load(sys.argv[1]).signatures["vocode_waveform"]
result = {}
for batch in [int(b) for b in sys.argv[3].split(",")]:
    audio = (0.3 * np.random.default_rng(batch).standard_normal((batch, int(sys.argv[2])))).astype(np.float32)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        sig(waveform=tf.constant(audio), lengths=tf.fill([batch], audio.shape[1]), temperature=tf.constant(1.0),
            seed=tf.constant(0))
        times.append(time.perf_counter() - started)
    result[batch] = {"first": times[0], "warm": min(times[1:])}
print(json.dumps(result))
"""


def _saved_model(model, samples, batches):
    """``vocode_waveform`` of the export of ``model`` in a fresh TensorFlow-only process: first, warm calls."""
    import subprocess
    import tempfile

    from speechkit.export.vocoder import export_vocoder
    from speechkit.runs import RunDir

    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(os.path.join(tmp, "run"), create=True)
        run.save_model(model)
        run.save_config({"frontend": model.frontend.to_dict(), "model": model.config.to_dict()})
        export_vocoder(run.path, os.path.join(tmp, "export"))
        done = subprocess.run([sys.executable, "-c", _SAVED_MODEL_TIMER, os.path.join(tmp, "export"), str(samples),
                               ",".join(str(b) for b in batches)], capture_output=True, text=True, check=True)
    return {int(k): v for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


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
    parser.add_argument("--run", default=None, help="trained vocoder run (default: a preset with random weights; "
                                                    "speed does not depend on the weights)")
    parser.add_argument("--preset", default=PRESET, help="preset used without --run (its front end for r9y9)")
    parser.add_argument("--layout", choices=("mini", "r9y9"), default="mini",
                        help="without --run: the preset's model, or r9y9/wavenet_vocoder's layout (16 layers, "
                             "residual 64, gate 128, skip 64, 80-bin mel conditioning)")
    parser.add_argument("--seconds", type=float, default=1.0, help="audio per stream per numba measurement")
    parser.add_argument("--tf-seconds", type=float, default=0.5, help="audio per stream per TF-loop measurement")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the best round counts")
    parser.add_argument("--naive-samples", type=int, default=200, help="samples timed for the naive path")
    parser.add_argument("--saved-model-seconds", type=float, default=2.0,
                        help="audio per SavedModel call (fresh TF-only process); 0 skips it")
    parser.add_argument("--saved-model-batches", default="1", help="comma-separated batch sizes for the SavedModel")
    parser.add_argument("--baseline", default=None, metavar="REV",
                        help="also time FastWaveNet and TFGenerator as they were at this git revision, interleaved")
    parser.add_argument("--report", default=None, help="eval-vocoder report.json to quote")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from speechkit.vocoder.fast import FastWaveNet
    from speechkit.vocoder.generation import TFGenerator

    model, source = _model(args.run, args.preset, args.layout)
    rate = model.frontend.sample_rate
    rng = np.random.default_rng(0)
    n, n_tf = int(args.seconds * rate), int(args.tf_seconds * rate)
    load = os.getloadavg()[0]
    threads = FastWaveNet(model).threads
    cases = {
        "numba_b1": ("cached, numba", 1, "1 thread", _Case(FastWaveNet(model, threads=1), model, 1, n, rng)),
        "numba_b8_t1": ("cached, numba", 8, "1 thread", _Case(FastWaveNet(model, threads=1), model, 8, n, rng)),
        "numba_b8": ("cached, numba", 8, f"{threads} threads", _Case(FastWaveNet(model), model, 8, n, rng)),
        "tf_b1": ("cached, TF XLA loop", 1, "one loop", _Case(TFGenerator(model), model, 1, n_tf, rng)),
        "tf_b8_p0": ("cached, TF XLA loop", 8, "one loop", _Case(TFGenerator(model), model, 8, n_tf, rng)),
        "tf_b8_p2": ("cached, TF XLA loop", 8, "rows, 2 at a time",
                     _Case(TFGenerator(model, parallel=2), model, 8, n_tf, rng)),
    }
    if args.baseline:
        import tempfile

        old_fast, old_tf = _baseline(args.baseline, tempfile.mkdtemp(prefix="bench_wavenet_"))
        rev = args.baseline
        cases.update({
            "old_numba_b1": (f"cached, numba at {rev}", 1, "1 thread", _Case(old_fast(model), model, 1, n, rng)),
            "old_numba_b8": (f"cached, numba at {rev}", 8, "1 thread", _Case(old_fast(model), model, 8, n, rng)),
            "old_tf_b1": (f"cached, TF XLA loop at {rev}", 1, "one loop", _Case(old_tf(model), model, 1, n_tf, rng)),
            "old_tf_b8": (f"cached, TF XLA loop at {rev}", 8, "one loop", _Case(old_tf(model), model, 8, n_tf, rng)),
        })
    for _ in range(args.repeats):
        for _, _, _, case in cases.values():
            case.time()
    naive = _naive(model, args.naive_samples, rng)
    figures = {key: case.figures for key, (_, _, _, case) in cases.items()}
    rf = model.receptive_field()
    lines = [
        f"model: {source}: {model.config.num_layers} layers, R{model.config.residual_channels}/"
        f"G{model.config.gate_channels}x2/S{model.config.skip_channels}, receptive field {rf.samples} samples "
        f"({rf.ms:.0f} ms), {model.config.macs_per_sample / 1e3:.0f}k MACs/sample; load average {load:.1f}",
        "",
        "| path | batch | how | samples/s (all streams) | x batch 1 | RTF (all streams) | samples per CPU-s "
        "| CPU/wall |",
        "|---|---|---|---|---|---|---|---|",
        f"| naive recomputation (TF, XLA) | 1 | – | {naive[0]:,.0f} | – | {rate / naive[0]:.1f} | "
        f"{naive[1]:,.0f} | – |",
    ]
    for key, (label, batch, how, _) in cases.items():
        sps, cpu, ratio = figures[key]
        base = figures[("old_" if key.startswith("old_") else "") + ("numba_b1" if "numba" in key else "tf_b1")][0]
        lines.append(f"| {label} | {batch} | {how} | {sps:,.0f} | {sps / base:.2f} | {rate / sps:.3f} | "
                     f"{cpu:,.0f} | {ratio:.2f} |")
    wall = {k: v[0] for k, v in figures.items()}
    summary = (f"{source} ({model.config.num_layers} layers, {model.config.macs_per_sample / 1e3:.0f}k MACs/sample), "
               f"load {load:.1f}, wall samples/s (all streams): numba b1 {wall['numba_b1']:,.0f}, b8 "
               f"{wall['numba_b8_t1']:,.0f} on 1 thread ({wall['numba_b8_t1'] / wall['numba_b1']:.2f}x b1), "
               f"{wall['numba_b8']:,.0f} on {threads} threads ({wall['numba_b8'] / wall['numba_b1']:.2f}x b1, "
               f"CPU/wall {figures['numba_b8'][2]:.2f}); TF loop b1 {wall['tf_b1']:,.0f} "
               f"(numba / TF {wall['numba_b1'] / wall['tf_b1']:.2f}), b8 one loop {wall['tf_b8_p0']:,.0f} "
               f"({wall['tf_b8_p0'] / wall['tf_b1']:.2f}x b1), b8 rows 2 at a time {wall['tf_b8_p2']:,.0f} "
               f"({wall['tf_b8_p2'] / wall['tf_b1']:.2f}x b1, CPU/wall {figures['tf_b8_p2'][2]:.2f}); "
               f"naive {naive[0]:,.1f} (numba b1 {wall['numba_b1'] / naive[0]:,.0f}x)")
    if args.baseline:
        summary += (f"; at {args.baseline}, same rounds: numba b1 {wall['old_numba_b1']:,.0f} (now "
                    f"{wall['numba_b1'] / wall['old_numba_b1']:.2f}x), b8 {wall['old_numba_b8']:,.0f} (now "
                    f"{wall['numba_b8'] / wall['old_numba_b8']:.2f}x on {threads} threads); TF loop b1 "
                    f"{wall['old_tf_b1']:,.0f} (now {wall['tf_b1'] / wall['old_tf_b1']:.2f}x), b8 "
                    f"{wall['old_tf_b8']:,.0f} (now {wall['tf_b8_p0'] / wall['old_tf_b8']:.2f}x one loop)")
    if args.saved_model_seconds > 0 and model.upsampler is not None:
        samples = int(args.saved_model_seconds * rate)
        batches = [int(b) for b in args.saved_model_batches.split(",")]
        timed = _saved_model(model, samples, batches)
        lines += ["", f"SavedModel `vocode_waveform`, fresh TF-only process, {args.saved_model_seconds:g} s "
                  "per stream:",
                  "", "| batch | first call (s, incl. XLA compile) | warm call (s) | warm RTF (all streams) |",
                  "|---|---|---|---|"]
        for batch, t in timed.items():
            lines.append(f"| {batch} | {t['first']:.2f} | {t['warm']:.2f} | "
                         f"{t['warm'] / (args.saved_model_seconds * batch):.2f} |")
            summary += (f"; SavedModel vocode_waveform b{batch}: {args.saved_model_seconds:g} s per stream in "
                        f"{t['warm']:.2f} s warm (RTF {t['warm'] / (args.saved_model_seconds * batch):.2f} over all "
                        f"streams), first call "
                        f"{t['first']:.2f} s incl. XLA compile")
    print("\n".join(lines))
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
