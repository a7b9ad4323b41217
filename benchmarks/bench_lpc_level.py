"""Where an LPC vocoder's loudness should come from: the mel's own prediction error, or the network.

Usage: python benchmarks/bench_lpc_level.py [--manifest data/release/test.jsonl] [--limit 40] [--order 16]
                                            [--vocoded exp/release/vocoder_eval/wav] [--asr ds2-mini] [--work DIR]

On each utterance, the ``--order`` predictor and its ``gain`` come from the utterance's log-mel
(``speechkit.vocoder.lpc.source_filter``, as wavenet-mini takes them). Figures:

- gain error: 20 log10(gain / true residual RMS) per frame, over frames within 50 dB of the utterance's loudest:
  mean and standard deviation (a constant offset is harmless; the spread is what a model would have to fix);
- with ``--vocoded`` (``eval-vocoder``'s ``wav`` folder of ``ID_original.wav`` / ``ID_vocoded.wav`` pairs): the
  same for a vocoder's output, its residual under the original's predictor against the original's residual;
- with ``--asr``: the recogniser's greedy WER on the filter driven by white noise, at each frame's true residual
  level ("oracle level") and at the gain times the normalised residual's mean level ("implied level": what a
  gain-normalised vocoder whose network learned nothing but the mean level gives), next to the originals'. And
  "implied pitch": the classical mixed excitation at the implied level, a pulse train at the period the mel
  implies (the strongest lag of its normalised autocorrelation over 50-400 Hz, as ``pitch_features``) mixed with
  noise by that correlation's strength: what the mel's pitch adds to the filter, with no network at all.

Utterances are ``--limit`` evenly spread over the manifest (``even_spread``, as ``eval-vocoder --limit``).
"""

import argparse
import dataclasses
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _row import row  # noqa: E402
from speechkit import audio as audio_io  # noqa: E402
from speechkit.data.manifest import even_spread, read_manifest, write_manifest  # noqa: E402
from speechkit.frontend import FrontendConfig, log_mel  # noqa: E402
from speechkit.vocoder.lpc import excitation, frame_power, noise_excitation, source_filter, synthesize  # noqa: E402
from speechkit.vocoder.pulses import implied_pitch, sample_frames  # noqa: E402

FRONTEND = FrontendConfig(kind="mel", normalize=False)
HOP = FRONTEND.hop_length
LOUD_DB = 50.0


def _level_errors_db(audio, order, other=None):
    """dB per loud frame: the gain (or ``other``'s residual level) over ``audio``'s true residual level."""
    lpc, gain = source_filter(log_mel(audio, config=FRONTEND), frontend=FRONTEND, order=order, normalize=True)
    true = frame_power(excitation(audio, lpc, hop=HOP), hop=HOP, frames=len(lpc))
    loud = true > true.max() * 10 ** (-LOUD_DB / 10)
    estimate = gain.astype(np.float64) ** 2 if other is None else frame_power(excitation(other, lpc, hop=HOP),
                                                                             hop=HOP, frames=len(lpc))
    return 10 * np.log10(np.maximum(estimate[loud], 1e-20) / true[loud])


def _pitched_excitation(mel, samples, level, seed):
    """Pulses one implied period apart (phase accumulated per sample) mixed with noise by the voicing, RMS ``level``."""
    period, voicing = (x.numpy().astype(np.float64) for x in implied_pitch(mel, frontend=FRONTEND))
    frame = sample_frames(samples, hop=HOP, context=0, frames=len(period)).numpy()
    phase = np.cumsum(1.0 / period[frame])
    pulses = np.diff(np.floor(phase), prepend=0.0) * np.sqrt(period[frame])
    noise = np.random.default_rng(seed).standard_normal(samples)
    v = voicing[frame]
    return (level * (np.sqrt(v) * pulses + np.sqrt(1.0 - v) * noise)).astype(np.float32)


def _asr_wer(model, manifest, out):
    which = [model] if os.path.isdir(model) else ["--model", model]
    subprocess.run(["speechkit", "eval", *which, "--manifest", manifest, "--out", out, "--decoder", "greedy"],
                   check=True, capture_output=True)
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)["wer"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", default="data/release/test.jsonl")
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--order", type=int, default=16, help="LPC order of the filter (wavenet-mini's lpc_order)")
    p.add_argument("--vocoded", default=None, help="eval-vocoder's wav folder")
    p.add_argument("--asr", default=None, help="a recogniser (run or released name) for the WER figures")
    p.add_argument("--work", default=None)
    args = p.parse_args()
    utts = even_spread(read_manifest(args.manifest), args.limit)
    audios = [audio_io.load(u.audio) for u in utts]
    figures = []
    errors = np.concatenate([_level_errors_db(a, args.order) for a in audios])
    figures.append(f"gain error {errors.mean():+.2f} dB mean, {errors.std():.2f} dB std ({len(utts)} utterances, "
                   f"{errors.size} frames)")
    if args.vocoded:
        pairs = sorted(glob.glob(os.path.join(args.vocoded, "*_original.wav")))
        errors = []
        for original in pairs:
            x, y = audio_io.load(original), audio_io.load(original.replace("_original", "_vocoded"))
            n = min(len(x), len(y))
            errors.append(_level_errors_db(x[:n], args.order, y[:n]))
        errors = np.concatenate(errors)
        figures.append(f"{args.vocoded}: level error {errors.mean():+.2f} dB mean, {errors.std():.2f} dB std, "
                       f"{np.mean(np.abs(errors) > 6):.1%} of frames off by > 6 dB ({len(pairs)} utterances)")
    if args.asr:
        work = args.work or tempfile.mkdtemp(prefix="lpc-level-")
        filters = [source_filter(log_mel(a, config=FRONTEND), frontend=FRONTEND, order=args.order, normalize=True)
                   for a in audios]
        normalized = [excitation(a, lpc, hop=HOP, gain=gain) for a, (lpc, gain) in zip(audios, filters)]
        mean_level = float(np.sqrt(np.mean(np.concatenate(normalized).astype(np.float64) ** 2)))
        variants = {"oracle": [], "implied": [], "pitched": []}
        for i, (utt, audio, (lpc, gain), e) in enumerate(zip(utts, audios, filters, normalized)):
            noise = {"oracle": noise_excitation(e, hop=HOP, seed=i),
                     "implied": mean_level * np.random.default_rng(i).standard_normal(len(audio)),
                     "pitched": _pitched_excitation(log_mel(audio, config=FRONTEND), len(audio), mean_level, i)}
            for name, excitation_noise in noise.items():
                path = os.path.join(work, name, f"{utt.id}.wav")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                audio_io.save(path, np.clip(synthesize(excitation_noise, lpc, hop=HOP, gain=gain), -1.0, 1.0))
                variants[name].append(dataclasses.replace(utt, audio=path))
        wers = {}
        for name, items in [("original", utts)] + list(variants.items()):
            manifest = os.path.join(work, f"{name}.jsonl")
            write_manifest(manifest, items)
            wers[name] = _asr_wer(args.asr, manifest, os.path.join(work, f"eval-{name}"))
        figures.append(f"{args.asr} greedy WER, order {args.order}: originals {wers['original']:.1%}, filter alone "
                       f"at the oracle level "
                       f"{wers['oracle']:.1%}, at the implied level {wers['implied']:.1%}, with the implied pitch "
                       f"{wers['pitched']:.1%} (normalised residual mean level {mean_level:.3f})")
    print(row("; ".join(figures)))


if __name__ == "__main__":
    main()
