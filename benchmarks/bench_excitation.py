"""What must an LPC vocoder's excitation hold for its output to sound voiced? pYIN's voiced share, no network.

Usage: python benchmarks/bench_excitation.py RUN [--manifest data/release/test.jsonl] [--utterances 10] [--asr MODEL]

Each test utterance is resynthesised through the run's own LPC filter (the one generation uses) from
synthetic excitations at the true residual's frame levels, and pYIN (``eval-vocoder``'s pitch tracker)
counts the voiced frames of the result, without the post-filter:

- the true residual (the filter's ceiling: the original) and white noise (the floor);
- pulse trains carrying a share of each voiced sample's power as one impulse per implied period, at the
  free pulses of generation and at the aligned pulses of training, over noise for the rest;
- comb-filtered noise, ``e[t] = g e[t - T] + sqrt(1 - g^2) n[t]`` with ``T`` the implied period and ``g``
  the period-to-period correlation (times the implied voicing): a long-term predictor's excitation.

A network whose draws measure like white noise here cannot be voiced, whatever its spikes. With ``--asr``, the
ASR model's greedy WER of each resynthesis is reported too: how many words each kind of excitation keeps.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _row import row  # noqa: E402
from speechkit import audio as audio_io  # noqa: E402
from speechkit.asr.inference import load_run  # noqa: E402
from speechkit.data.manifest import even_spread, read_manifest  # noqa: E402
from speechkit.metrics import wer  # noqa: E402
from speechkit.models import resolve_model  # noqa: E402
from speechkit.vocoder.evaluate import pitch_track  # noqa: E402
from speechkit.vocoder.generation import load_vocoder  # noqa: E402
from speechkit.vocoder.lpc import _frame_index, frame_power, noise_excitation, synthesize  # noqa: E402
from speechkit.vocoder.pulses import aligned_pulses, free_pulses, implied_pitch, sample_frames  # noqa: E402
from speechkit.vocoder.wavenet import conditioning_mel  # noqa: E402

PULSE_SHARES = (0.25, 0.5, 0.9)
CORRELATIONS = (0.5, 0.8, 0.95)


def comb(noise, period, gain):
    """Noise through the long-term predictor ``1 / (1 - g z^-T)``, scaled so that a steady ``g`` keeps its power."""
    out = noise.astype(np.float64)
    for t in range(len(out)):
        lag = int(round(period[t]))
        if t >= lag:
            out[t] = gain[t] * out[t - lag] + np.sqrt(1.0 - gain[t] ** 2) * noise[t]
    return out


def excitations(vocoder, audio):
    """``(filter, {name: excitation})`` for one utterance."""
    frontend, context = vocoder.frontend, vocoder.config.cond_context
    hop = frontend.hop_length
    (predictors, gain), residual = vocoder._residual(audio)
    n = len(residual)
    mel = conditioning_mel(audio[np.newaxis], frontend=frontend, context=context)
    period, voicing = implied_pitch(mel, frontend=frontend)
    index = sample_frames(n, hop=hop, context=context, frames=mel.shape[1]).numpy()
    period, voicing = period.numpy()[0, index], voicing.numpy()[0, index]
    trains = {"free": free_pulses(mel, frontend=frontend, context=context, num_samples=n)[0].numpy()[:, 0] > 0.5,
              "aligned": aligned_pulses(residual, period, voicing)[:, 0] > 0.5}
    noise = noise_excitation(residual, hop=hop, seed=0)
    frames = 1 + n // hop
    level = np.sqrt(frame_power(residual, hop=hop, frames=frames))[_frame_index(0, n, frames, hop)]
    found = {"true residual": residual, "white noise": noise}
    for name, impulses in trains.items():
        for share in PULSE_SHARES:
            power = share * voicing
            found[f"{name} pulses, {share:.0%} of the power"] = (np.sqrt(1.0 - power) * noise
                                                                 + impulses * np.sqrt(power * period) * level)
    for correlation in CORRELATIONS:
        found[f"comb-filtered noise, g = {correlation}"] = comb(noise, period, correlation * voicing)
    return (predictors, gain), found


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="an lpc_order vocoder run or released model (only its filter and front end are used)")
    p.add_argument("--manifest", default="data/release/test.jsonl")
    p.add_argument("--utterances", type=int, default=10)
    p.add_argument("--asr", help="an ASR run or released model: also report its greedy WER of each resynthesis")
    args = p.parse_args()
    vocoder = load_vocoder(args.run)
    if not vocoder.config.lpc_order:
        sys.exit(f"{args.run}: not an lpc_order model")
    recognizer = load_run(resolve_model(args.asr)) if args.asr else None
    hop = vocoder.frontend.hop_length
    voiced, clips, texts = {"original": []}, {"original": []}, []
    for utterance in even_spread(read_manifest(args.manifest), args.utterances):
        audio = audio_io.load(utterance.audio, sample_rate=vocoder.frontend.sample_rate)
        voiced["original"].append(pitch_track(audio, frontend=vocoder.frontend)[1])
        clips["original"].append(audio)
        texts.append(utterance.text)
        (predictors, gain), found = excitations(vocoder, audio)
        for name, excitation in found.items():
            out = np.clip(synthesize(np.asarray(excitation, np.float32), predictors, hop=hop, gain=gain), -1, 1)
            voiced.setdefault(name, []).append(pitch_track(out, frontend=vocoder.frontend)[1])
            clips.setdefault(name, []).append(out)
    shares = {name: float(np.concatenate(flags).mean()) for name, flags in voiced.items()}
    wers = {name: wer(texts, recognizer.transcribe(c)) for name, c in clips.items()} if recognizer else {}
    for name, share in shares.items():
        print(f"{name:40s} {share:6.1%} voiced" + (f"   WER {wers[name]:6.1%}" if wers else ""))
    print(row(f"{args.utterances} test utterances through the run's LPC filter, no post-filter, pYIN voiced frames"
              + (f" and {args.asr} greedy WER: " if wers else ": ")
              + "; ".join(f"{name} {share:.1%}" + (f" (WER {wers[name]:.1%})" if wers else "")
                          for name, share in shares.items())))


if __name__ == "__main__":
    main()
