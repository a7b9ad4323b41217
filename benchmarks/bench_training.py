"""Training-step throughput, before and after: Deep Speech 2 (audio s / wall s) and WaveNet (samples / s).

Each measurement runs in its own process with ``PYTHONPATH`` pointing at one source tree, so a
baseline checkout (``git worktree add /tmp/h3/baseline d08cc79``) and the working tree run the same
driver with the same virtualenv, alternately, in one session: on a shared machine only ratios
measured side by side mean something.

The driver builds what training builds: the network from the preset, the ``CTCTrainer`` (or the
compiled WaveNet), the Adam optimiser with the preset's warm-up schedule and clipping, and the
dataset from the manifest with the preset's batch plan (SortaGrad epoch 0, then bucketed epochs),
and runs ``fit`` over the first ``--steps`` steps. It times every step at ``on_train_batch_end``.

- ``asr``: ``baseline`` does what d08cc79 training does (a fresh ``asr_dataset`` and ``fit`` per
  epoch, no XLA, features computed every epoch); ``fast`` uses the options of the new pipeline
  (features computed once, frames padded to a bucket grid, XLA-compiled step).
- ``wavenet``: ``baseline`` uses the preset as it is; ``fast`` uses the options the new vocoder
  training uses (see ``WAVENET_FAST``).

Usage:
    python benchmarks/bench_training.py compare --baseline /tmp/h3/baseline --repeats 2   # ("compare" may be left out)
    python benchmarks/bench_training.py asr --mode fast --steps 100        # one worker, prints JSON

Prints a markdown table of both trees' figures, the ratios, and the loss after N steps, and the
``BENCHMARKS.md`` rows (date, revision, machine, command, figures).
"""

import argparse
import dataclasses
import inspect
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ASR_PRESET = os.path.join(ROOT, "models", "ds2-mini.yaml")
WAVENET_PRESET = os.path.join(ROOT, "models", "wavenet-mini.yaml")
MANIFEST = os.path.join(ROOT, "data", "mini", "train.jsonl")
DEV_MANIFEST = os.path.join(ROOT, "data", "mini", "dev.jsonl")

# Options the fast paths pass where the tree supports them.
ASR_FAST = {"bucket_frames": None, "cache_features": True, "jit_compile": False}
WAVENET_FAST = {"jit_compile": True, "history": True}


# -- Workers (run inside one tree) -- #

def _quiet():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging
    import warnings

    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")


def _asr_worker(args):
    import keras
    import numpy as np
    import yaml

    from speechkit.asr import deepspeech2 as ds2
    from speechkit.data import pipeline
    from speechkit.data.manifest import read_manifest
    from speechkit.frontend import FrontendConfig
    from speechkit.text import Vocabulary

    try:
        from speechkit.asr.ctc import CTCTrainer
    except ImportError:
        from speechkit.asr.train import CTCTrainer
    SpecAugmentConfig = ds2.SpecAugmentConfig

    preset = yaml.safe_load(open(args.preset, encoding="utf-8"))
    frontend = FrontendConfig(**preset["frontend"])
    model_section = dict(preset["model"])
    model_section["specaugment"] = SpecAugmentConfig(**model_section.get("specaugment", {}))
    model_config = ds2.DeepSpeech2Config(**model_section)
    opt = preset["optimizer"]
    vocabulary = Vocabulary()

    utterances = []
    frames = pipeline.frame_counts(read_manifest(args.manifest), frontend)
    for utt, n in zip(read_manifest(args.manifest), frames):
        if utt.duration > preset.get("max_duration", math.inf):
            continue
        label = vocabulary.encode(utt.text)
        repeats = sum(1 for a, b in zip(label, label[1:]) if a == b)
        if len(label) + repeats <= int(ds2.output_lengths(n, model_config.conv_strides)):
            utterances.append(utt)
    durations = [u.duration for u in utterances]

    keras.utils.set_random_seed(preset["seed"])
    if "frontend" in inspect.signature(ds2.build_deepspeech2).parameters:
        network = ds2.build_deepspeech2(model_config, frontend=frontend, vocab_size=vocabulary.size)
    else:
        network = ds2.build_deepspeech2(model_config, num_features=frontend.num_features, vocab_size=vocabulary.size)
    trainer = CTCTrainer(network)
    schedule = _WarmupExponential(opt["learning_rate"], opt["warmup_steps"], opt["decay_steps"], opt["decay_rate"],
                                  opt["min_learning_rate"])
    fast = args.mode == "fast"
    ASR_FAST.update(json.loads(args.options or "{}"))
    trainer.compile(optimizer=keras.optimizers.Adam(schedule, global_clipnorm=opt["clipnorm"]),
                    jit_compile=bool(fast and ASR_FAST["jit_compile"]))
    trainer([np.zeros((1, 8, frontend.num_features), np.float32), np.array([8], np.int32)])
    trainer.optimizer.build(trainer.trainable_variables)

    dataset_options = {}
    accepted = inspect.signature(pipeline.asr_dataset).parameters
    if fast:
        if ASR_FAST["cache_features"] and "feature_cache" in accepted:
            started = time.perf_counter()
            dataset_options["feature_cache"] = pipeline.FeatureCache(utterances, frontend)
            cache_seconds = time.perf_counter() - started
        if "bucket_frames" in accepted and ASR_FAST["bucket_frames"]:
            dataset_options["bucket_frames"] = ASR_FAST["bucket_frames"]
    recorder = _StepRecorder()
    batch_size = preset["batch_size"]
    done = 0
    epoch = 0
    started = time.perf_counter()
    while done < args.steps:
        plan = pipeline.plan_batches(durations, batch_size=batch_size, epoch=epoch, seed=preset["seed"],
                                     sortagrad=preset.get("sortagrad", True))
        plan = plan[:args.steps - done]
        recorder.audio += [sum(durations[i] for i in b) for b in plan]
        recorder.epochs += [epoch] * len(plan)
        ds = pipeline.asr_dataset(utterances, plan, vocabulary=vocabulary, frontend=frontend, **dataset_options)
        ds = ds.map(lambda f, fl, l, ll: ((f, fl), (l, ll)))
        trainer.fit(ds, initial_epoch=epoch, epochs=epoch + 1, callbacks=[recorder], verbose=0, shuffle=False)
        done += len(plan)
        epoch += 1
    total = time.perf_counter() - started
    result = recorder.summary(total)
    result["parameters"] = int(network.count_params())
    if "feature_cache" in dataset_options:
        result["feature_cache_seconds"] = cache_seconds
    print("RESULT " + json.dumps(result), flush=True)


def _model_sampler_options(vdata, config):
    """The ``WindowSampler`` options the model's inputs need (LPC residual, pulses, onset windows), where
    this tree's sampler has them: a baseline tree predates some."""
    accepted = inspect.signature(vdata.WindowSampler).parameters
    options = {"lpc_order": getattr(config.model, "lpc_order", 0),
               "lpc_normalize": getattr(config.model, "lpc_normalize", False),
               "pulses": getattr(config.model, "pulse_input", False),
               "start_share": getattr(config.train, "start_share", 0.0)}
    return {name: value for name, value in options.items() if name in accepted}


def _wavenet_worker(args):
    import keras

    try:
        from speechkit.vocoder import config as vocoder_config_module
    except ImportError:
        vocoder_config_module = None
    from speechkit.vocoder import data as vdata
    from speechkit.vocoder import train as vtrain

    load = getattr(vocoder_config_module, "load_vocoder_config", None) or vtrain.load_vocoder_config
    config = load(args.preset)
    tc = config.train
    WAVENET_FAST.update(json.loads(args.options or "{}"))
    if args.mode == "fast":
        fields = {f.name for f in dataclasses.fields(tc)}
        tc = dataclasses.replace(tc, **{k: v for k, v in WAVENET_FAST.items() if k in fields})
        config = dataclasses.replace(config, train=tc)
    fast = args.mode == "fast"
    if fast and WAVENET_FAST.get("policy"):
        keras.config.set_dtype_policy(WAVENET_FAST["policy"])
    model = vtrain.build_model(config, seed=tc.seed)
    corpus = vdata.corpus_from_manifest(args.manifest, sample_rate=config.frontend.sample_rate,
                                        min_samples=tc.window_frames * config.frontend.hop_length)
    sampler_args = dict(frontend=config.frontend, window_frames=tc.window_frames, context=config.model.cond_context,
                        batch_size=tc.batch_size, seed=tc.seed, **_model_sampler_options(vdata, config))
    history = getattr(tc, "full_history", None)
    history = WAVENET_FAST.get("history", history) if fast else history
    if history and hasattr(vdata, "history_frames"):
        sampler_args["history"] = vdata.history_frames(model.receptive_field().samples, config.frontend.hop_length)
    sampler = vdata.WindowSampler(corpus, **sampler_args)
    dataset = vdata.window_dataset(sampler, model_config=config.model)
    recorder = _StepRecorder()
    window = tc.window_frames * config.frontend.hop_length
    recorder.audio = [float(tc.batch_size * window)] * args.steps
    recorder.epochs = [0] * args.steps
    started = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=args.steps, callbacks=[recorder], verbose=0)
    result = recorder.summary(time.perf_counter() - started, warmup=args.warmup)
    result["parameters"] = int(model.count_params())
    result["batch_size"], result["window"] = tc.batch_size, window
    result["history"] = sampler_args.get("history", 0)
    result["accuracy"] = recorder.logs.get("accuracy")
    print("RESULT " + json.dumps(result), flush=True)


def _history_worker(args):
    """Train the preset for ``--steps`` steps with and without window history; score both on dev windows."""
    import keras

    from speechkit.vocoder import data as vdata
    from speechkit.vocoder.config import load_vocoder_config
    from speechkit.vocoder.train import build_model

    config = load_vocoder_config(args.preset)
    tc = config.train
    hop, rate = config.frontend.hop_length, config.frontend.sample_rate
    train = vdata.corpus_from_manifest(args.manifest, sample_rate=rate, min_samples=tc.window_frames * hop)
    dev = vdata.corpus_from_manifest(args.dev, sample_rate=rate, min_samples=tc.window_frames * hop)
    results = {}
    for history_on in (False, True):
        model = build_model(config, seed=tc.seed)
        history = vdata.history_frames(model.receptive_field().samples, hop)
        sampler = vdata.WindowSampler(train, frontend=config.frontend, window_frames=tc.window_frames,
                                      context=config.model.cond_context, batch_size=tc.batch_size, seed=tc.seed,
                                      history=history if history_on else 0, **_model_sampler_options(vdata, config))
        started = time.perf_counter()
        model.fit(vdata.window_dataset(sampler, model_config=config.model), epochs=1, steps_per_epoch=args.steps,
                  verbose=0)
        seconds = time.perf_counter() - started
        scores = {}
        for dev_history in (history, 0):
            dev_sampler = vdata.WindowSampler(dev, frontend=config.frontend, window_frames=tc.window_frames,
                                              context=config.model.cond_context, batch_size=8, seed=12345,
                                              history=dev_history, **_model_sampler_options(vdata, config))
            dataset = vdata.window_dataset(dev_sampler, model_config=config.model).take(args.dev_batches)
            loss, accuracy = model.evaluate(dataset, verbose=0)[:2]
            scores["full_history" if dev_history else "zero_history"] = {"loss": loss, "accuracy": accuracy}
        results["history" if history_on else "no_history"] = {"train_seconds": seconds, "dev": scores,
                                                              "history_frames": history if history_on else 0}
        keras.backend.clear_session()
    print("RESULT " + json.dumps(results), flush=True)


class _StepRecorder:
    """Keras callback: wall time at the end of every step and the step's loss."""

    def __new__(cls):
        import keras

        class Recorder(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.ends, self.losses, self.audio, self.epochs, self.logs = [], [], [], [], {}

            def on_train_batch_end(self, batch, logs=None):
                self.ends.append(time.perf_counter())
                logs = logs or {}
                self.logs = {k: float(v) for k, v in logs.items()}
                self.losses.append(float(logs.get("batch_loss", logs.get("loss", float("nan")))))

            def summary(self, total, warmup=None):
                start = time.perf_counter() - total
                ends = [start] + self.ends
                steps = len(self.ends)
                # Steady state: the steps of the last epoch run (bucketed order), or after ``warmup`` steps.
                first = warmup if warmup is not None else next(
                    (i for i, e in enumerate(self.epochs) if e == self.epochs[-1]), 0)
                first = max(1, min(first, steps - 1))
                steady_time = ends[steps] - ends[first]
                steady_audio = sum(self.audio[first:steps])
                return {"steps": steps, "total_seconds": total, "audio_total": sum(self.audio[:steps]),
                        "throughput_total": sum(self.audio[:steps]) / total,
                        "steady_steps": steps - first, "throughput_steady": steady_audio / steady_time,
                        "losses": self.losses, "step_seconds": [b - a for a, b in zip(ends, ends[1:])]}

        return Recorder()


def _warmup_exponential_class():
    import keras
    import tensorflow as tf

    class WarmupExponential(keras.optimizers.schedules.LearningRateSchedule):
        """The preset's schedule (linear warm-up, exponential decay, floor), as ``speechkit train asr`` builds it."""

        def __init__(self, peak, warmup, decay_steps, decay_rate, minimum):
            self.peak, self.warmup, self.decay_steps = float(peak), int(warmup), int(decay_steps)
            self.decay_rate, self.minimum = float(decay_rate), float(minimum)

        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            ramp = tf.minimum(1.0, (step + 1.0) / max(float(self.warmup), 1.0))
            after = tf.maximum(step - float(self.warmup), 0.0) / float(self.decay_steps)
            return tf.maximum(self.peak * ramp * tf.pow(self.decay_rate, after), self.minimum)

        def get_config(self):
            return dict(peak=self.peak, warmup=self.warmup, decay_steps=self.decay_steps,
                        decay_rate=self.decay_rate, minimum=self.minimum)

    return WarmupExponential


def _WarmupExponential(*args):
    return _warmup_exponential_class()(*args)


# -- Orchestrator -- #

def _run_worker(tree, kind, mode, steps, extra=()):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), TF_CPP_MIN_LOG_LEVEL="2")
    preset = os.path.join(os.path.abspath(tree), "models",
                          os.path.basename(ASR_PRESET if kind == "asr" else WAVENET_PRESET))
    command = [sys.executable, os.path.abspath(__file__), kind, "--mode", mode, "--steps", str(steps),
               "--preset", preset, *extra]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} {mode} in {tree} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["process_seconds"] = time.perf_counter() - started
    return result


def _median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def _mean(values):
    values = list(values)
    return sum(values) / len(values)


def _compare(args):
    sys.path.insert(0, HERE)
    from _row import row

    kinds = [k for k in ("asr", "wavenet") if getattr(args, f"{k}_steps")]
    results = {(k, side): [] for k in kinds for side in ("baseline", "new")}
    loads = []
    for repeat in range(args.repeats):
        for kind in kinds:
            steps = getattr(args, f"{kind}_steps")
            order = [("baseline", args.baseline, "baseline"), ("new", ROOT, "fast")]
            if repeat % 2:
                order.reverse()
            for side, tree, mode in order:
                loads.append(os.getloadavg()[0])
                r = _run_worker(tree, kind, mode, steps)
                results[(kind, side)].append(r)
                print(f"[{repeat}] {kind:7s} {side:8s}: steady {r['throughput_steady']:,.1f}/s, total "
                      f"{r['throughput_total']:,.1f}/s, {r['total_seconds']:.0f} s, loss at end "
                      f"{_mean(r['losses'][-10:]):.3f}", flush=True)
    print()
    unit = {"asr": "s of audio / s", "wavenet": "samples / s"}
    print("| model | figure | baseline d08cc79 | new | ratio (median of runs, same session) |")
    print("|---|---|---|---|---|")
    rows = []
    for kind in kinds:
        base, new = results[(kind, "baseline")], results[(kind, "new")]
        steps = getattr(args, f"{kind}_steps")
        figures = []
        for key, label in (("throughput_steady", "steady"), ("throughput_total", "incl. start-up/compile")):
            b = [r[key] for r in base]
            n = [r[key] for r in new]
            ratios = [x / y for x, y in zip(n, b)]
            print(f"| {kind} | {unit[kind]}, {label} | {_median(b):,.1f} | {_median(n):,.1f} | "
                  f"{_median(ratios):.2f}x ({', '.join(f'{x:.2f}' for x in ratios)}) |")
            figures.append(f"{label}: {_median(b):,.1f} -> {_median(n):,.1f} {unit[kind]} "
                           f"({_median(ratios):.2f}x; runs {', '.join(f'{x:.2f}' for x in ratios)})")
        tail = min(10, steps)
        lb = [_mean(r["losses"][-tail:]) for r in base]
        ln = [_mean(r["losses"][-tail:]) for r in new]
        print(f"| {kind} | mean loss of steps {steps - tail + 1}-{steps} | {_mean(lb):.3f} | {_mean(ln):.3f} | |")
        figures.append(f"loss over steps {steps - tail + 1}-{steps}: {_mean(lb):.3f} -> {_mean(ln):.3f}")
        rows.append(row(f"{kind}, {steps} steps x {args.repeats} runs each, interleaved, load {_mean(loads):.1f}: "
                        + "; ".join(figures)))
    print()
    print("\n".join(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({f"{k}/{s}": v for (k, s), v in results.items()}, f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for kind, preset, steps in (("asr", ASR_PRESET, 100), ("wavenet", WAVENET_PRESET, 60)):
        p = sub.add_parser(kind, help=f"one {kind} measurement in this process (prints RESULT json)")
        p.add_argument("--mode", choices=("baseline", "fast"), default="fast")
        p.add_argument("--steps", type=int, default=steps)
        p.add_argument("--preset", default=preset)
        p.add_argument("--manifest", default=MANIFEST)
        p.add_argument("--warmup", type=int, default=10 if kind == "wavenet" else None,
                       help="steps left out of the steady-state figure")
        p.add_argument("--options", default=None, help="JSON overrides of the fast options")
    p = sub.add_parser("wavenet-history", help="dev accuracy with full history after N steps, trained without "
                                               "and with window history (prints RESULT json)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--preset", default=WAVENET_PRESET)
    p.add_argument("--manifest", default=MANIFEST)
    p.add_argument("--dev", default=DEV_MANIFEST)
    p.add_argument("--dev-batches", type=int, default=25, help="dev batches of 8 windows")
    p = sub.add_parser("compare", help="baseline tree vs this tree, alternating processes")
    p.add_argument("--baseline", required=True, help="source tree of the baseline revision (a git worktree)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--asr-steps", type=int, default=100, help="0 skips the ASR measurement")
    p.add_argument("--wavenet-steps", type=int, default=60, help="0 skips the WaveNet measurement")
    p.add_argument("--json", default=None, help="also write every run's figures here")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0].startswith("--") and argv[0] != "--help":
        argv = ["compare", *argv]
    args = parser.parse_args(argv)
    if args.command == "compare":
        _compare(args)
        return
    _quiet()
    sys.path.insert(0, ROOT) if not os.environ.get("PYTHONPATH") else None
    {"asr": _asr_worker, "wavenet": _wavenet_worker, "wavenet-history": _history_worker}[args.command](args)


if __name__ == "__main__":
    main()
