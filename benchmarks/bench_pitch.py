"""How well the mel-implied pitch features carry the period: their strongest lag against pYIN, per speaker.

Usage: python benchmarks/bench_pitch.py [--manifest data/release/test.jsonl] [--per-speaker 3] [--count 48]

For each speaker, ``--per-speaker`` utterances evenly spread over its own: librosa's pYIN (50-400 Hz, the
front end's 50 ms window and 10 ms hop) gives the reference pitch and voicing of each frame; the pitch
estimate is the lag of the largest of ``speechkit.vocoder.pitch.pitch_features`` (``--count`` log-spaced
lags, as the vocoder gets them; ``--count 0``: every integer lag of the range, what the mel holds at best).
Figures: the share of pYIN-voiced frames within 50 cents, and the octave errors (within 100 cents of twice
or half the pitch).
"""

import argparse
import collections
import os
import sys

import librosa
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
from _row import row  # noqa: E402
from speechkit import audio as audio_io  # noqa: E402
from speechkit.data.manifest import even_spread, read_manifest  # noqa: E402
from speechkit.frontend import FrontendConfig, log_mel  # noqa: E402
from speechkit.vocoder.lpc import implied_autocorrelation  # noqa: E402
from speechkit.vocoder.pitch import MAX_PITCH_HZ, MIN_PITCH_HZ, pitch_features, pitch_lags  # noqa: E402

FRONTEND = FrontendConfig(kind="mel", normalize=False)


def _estimate_hz(mel, count):
    sr = FRONTEND.sample_rate
    if count:
        lags = pitch_lags(count, sr)
        features = pitch_features(mel, frontend=FRONTEND, count=count).numpy()
    else:
        lags = np.arange(round(sr / MAX_PITCH_HZ), round(sr / MIN_PITCH_HZ) + 1)
        r, _ = implied_autocorrelation(mel, frontend=FRONTEND)
        features = tf.gather(r, lags, axis=-1).numpy()
    return sr / lags[np.argmax(features, axis=-1)]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", default="data/release/test.jsonl")
    p.add_argument("--per-speaker", type=int, default=3)
    p.add_argument("--count", type=int, default=48)
    args = p.parse_args()
    by_speaker = collections.defaultdict(list)
    for utt in read_manifest(args.manifest):
        by_speaker[utt.speaker].append(utt)
    per_speaker, total = [], []
    for speaker, utts in sorted(by_speaker.items()):
        cents, octave, hz = [], [], []
        for utt in even_spread(utts, args.per_speaker):
            audio = audio_io.load(utt.audio)
            estimate = _estimate_hz(log_mel(audio, config=FRONTEND), args.count)
            f0, voiced, _ = librosa.pyin(audio.astype(np.float64), fmin=MIN_PITCH_HZ, fmax=MAX_PITCH_HZ,
                                         sr=FRONTEND.sample_rate, frame_length=FRONTEND.mel_frame_length,
                                         hop_length=FRONTEND.hop_length, center=True)
            n = min(len(f0), len(estimate))
            keep = voiced[:n]
            error = 1200 * np.abs(np.log2(estimate[:n][keep] / f0[:n][keep]))
            cents.append(error)
            octave.append(np.abs(error - 1200) < 100)
            hz.append(f0[:n][keep])
        cents, octave = np.concatenate(cents), np.concatenate(octave)
        total.append(cents)
        per_speaker.append(f"{speaker} ({np.median(np.concatenate(hz)):.0f} Hz) {np.mean(cents < 50):.0%}"
                           f"{f' ({np.mean(octave):.0%} octave)' if octave.mean() >= 0.01 else ''}")
    total = np.concatenate(total)
    lags = f"{args.count} lags" if args.count else "every integer lag"
    print(row(f"{lags}: {np.mean(total < 50):.1%} of {total.size} pYIN-voiced frames within 50 cents; per speaker: "
              + ", ".join(per_speaker)))


if __name__ == "__main__":
    main()
