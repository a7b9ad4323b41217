"""Objective scores for generated music: does it play the asked chord, sound like the data, sound at all.

Listening tests do not fit in a recipe, so generated clips are scored by three measurable proxies:

- **Requested-chord accuracy**: the share of clips that are music (below) and whose recognised triad
  (``recognize_chord`` on the clip's pitch-class profile) holds the requested chord's pitch classes
  (``same_chord``); template matching names some chord even for noise, which must not count. Chance is
  ``chance_accuracy`` (3.1% over all 48 labels; 1/48 for a non-augmented triad).
- **Pitch-class histogram distance**: the total-variation distance ``0.5 * sum |p - q|`` in [0, 1]
  between the mean pitch-class profile of the clips and that of the training data (the set as a
  whole), and, for requested chords, between each clip's profile and the training mean of its label.
- **Music share**: the share of clips that are neither silence (RMS below ``silence_db`` dBFS) nor noise
  (median spectral flatness of the sounding frames above ``max_flatness``). Spectral flatness, the
  geometric over the arithmetic mean of the power spectrum (Johnston 1988; ``librosa``), is near 1 for
  white noise and near 0 for a few harmonic partials. It is taken over 0-4 kHz (``FLATNESS_BAND_HZ``),
  the band an 8 kHz music model covers: over the whole band, such a model's noise, silent above 4 kHz,
  would measure near 0 and pass for music. There, the rendered piano triads' scored windows measure
  1.6e-4 (median) and at most 1.3e-3, and a music WaveNet's coloured noise 0.02 to 0.09: the threshold,
  0.01, lies between.

``check_recognizer`` measures the recogniser itself on a labelled corpus (the triads corpus, where it
names every chord: see BENCHMARKS.md).
"""

import json
import time

import librosa
import numpy as np

from speechkit import audio as audio_io
from speechkit.config import atomic_write_text
from speechkit.data.manifest import read_manifest
from speechkit.errors import ConfigError
from speechkit.music.chords import chord_profile, parse_chord, recognize_chord, same_chord

__all__ = ["SILENCE_DB", "MAX_FLATNESS", "FLATNESS_BAND_HZ", "level_db", "flatness", "is_music",
           "pitch_class_histogram", "histogram_distance", "score_clips", "check_recognizer"]

SILENCE_DB = -45.0
MAX_FLATNESS = 0.01
FLATNESS_BAND_HZ = 4000.0


def level_db(audio):
    """RMS level of a clip in dBFS (-inf dB is floored at -200)."""
    audio = np.asarray(audio, np.float64)
    rms = np.sqrt(np.mean(audio ** 2)) if audio.size else 0.0
    return float(20.0 * np.log10(max(rms, 1e-10)))


def flatness(audio, *, sample_rate, n_fft=1024, hop_length=256, active_db=40.0, band_hz=FLATNESS_BAND_HZ):
    """Median spectral flatness over the sounding frames of a clip, over 0 to ``band_hz``.

    Args:
        audio: float32 [samples] in [-1, 1].
        sample_rate: int, Hz.
        n_fft, hop_length: int, STFT size and hop.
        active_db: float, frames more than this far below the loudest frame are left out.
        band_hz: float, the highest frequency counted (the clip's Nyquist frequency where lower).

    Returns:
        float in [0, 1]; 1.0 for digital silence (nothing tonal in it).
    """
    audio = np.asarray(audio, np.float32)
    if len(audio) < n_fft:
        audio = np.pad(audio, (0, n_fft - len(audio)))
    bins = librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft) <= band_hz
    power = np.abs(librosa.stft(audio, n_fft=n_fft, hop_length=hop_length))[bins] ** 2
    energy = power.sum(axis=0)
    if energy.max() <= 0:
        return 1.0
    active = energy >= energy.max() * 10.0 ** (-active_db / 10.0)
    values = librosa.feature.spectral_flatness(S=power[:, active], power=1.0)[0]
    return float(np.median(values))


def is_music(audio, *, sample_rate, silence_db=SILENCE_DB, max_flatness=MAX_FLATNESS):
    """True when the clip is louder than ``silence_db`` dBFS and its flatness is at most ``max_flatness``."""
    return level_db(audio) > silence_db and flatness(audio, sample_rate=sample_rate) <= max_flatness


def pitch_class_histogram(profiles):
    """Mean of pitch-class profiles, float [n, 12] (or one [12]), as a distribution summing to 1."""
    profiles = np.atleast_2d(np.asarray(profiles, np.float64))
    if profiles.shape[-1] != 12 or profiles.shape[0] == 0:
        raise ConfigError(f"pitch-class profiles have shape [n >= 1, 12], received {profiles.shape}")
    mean = profiles.mean(axis=0)
    return mean / mean.sum() if mean.sum() > 0 else np.full(12, 1.0 / 12)


def histogram_distance(p, q):
    """Total-variation distance in [0, 1] between two pitch-class histograms (each normalised first)."""
    p, q = pitch_class_histogram(p), pitch_class_histogram(q)
    return float(0.5 * np.abs(p - q).sum())


def score_clips(clips, *, sample_rate, requested=None, reference=None, label_reference=None,
                silence_db=SILENCE_DB, max_flatness=MAX_FLATNESS):
    """Score a set of clips.

    Args:
        clips: list of float32 [samples] in [-1, 1].
        sample_rate: int, Hz.
        requested: optional list of str chord labels, one per clip (the asked or the seed's chord).
        reference: optional float [12], the training data's pitch-class histogram.
        label_reference: optional dict label -> float [12], the training histogram of each label.
        silence_db, max_flatness: the music-share thresholds.

    Returns:
        dict with ``rows`` (per clip: chord, level_db, flatness, music, and with ``requested``: requested,
        correct, label_distance) and ``summary``: clips, music_share, mean_flatness, and when given
        chord_accuracy (over all clips; silence and noise count as wrong), histogram_distance,
        label_histogram_distance, recognised (count per recognised label).
    """
    if requested is not None and len(requested) != len(clips):
        raise ConfigError(f"{len(requested)} requested chords for {len(clips)} clips")
    if not clips:
        raise ConfigError("no clips to score")
    rows, profiles = [], []
    for i, clip in enumerate(clips):
        profile = chord_profile(clip, sample_rate=sample_rate)
        profiles.append(profile)
        chord, _ = recognize_chord(profile)
        row = {"chord": chord, "level_db": round(level_db(clip), 2),
               "flatness": round(flatness(clip, sample_rate=sample_rate), 5)}
        row["music"] = bool(row["level_db"] > silence_db and row["flatness"] <= max_flatness)
        if requested is not None:
            row["requested"] = requested[i]
            row["correct"] = bool(row["music"] and same_chord(chord, requested[i]))
            if label_reference is not None and requested[i] in label_reference:
                row["label_distance"] = round(histogram_distance(profile, label_reference[requested[i]]), 4)
        rows.append(row)
    summary = {"clips": len(clips), "music_share": float(np.mean([r["music"] for r in rows])),
               "mean_flatness": float(np.mean([r["flatness"] for r in rows]))}
    if requested is not None:
        summary["chord_accuracy"] = float(np.mean([r["correct"] for r in rows]))
        distances = [r["label_distance"] for r in rows if "label_distance" in r]
        if distances:
            summary["label_histogram_distance"] = float(np.mean(distances))
    if reference is not None:
        summary["histogram_distance"] = histogram_distance(pitch_class_histogram(profiles), reference)
    recognised = {}
    for r in rows:
        recognised[r["chord"]] = recognised.get(r["chord"], 0) + 1
    summary["recognised"] = dict(sorted(recognised.items(), key=lambda kv: -kv[1]))
    return {"rows": rows, "summary": summary, "profiles": np.stack(profiles)}


def check_recognizer(manifests, *, out=None, limit=None):
    """Accuracy of the chord recogniser on labelled clips (manifest ``speaker`` = chord label).

    Args:
        manifests: list of str, JSONL manifests of the triads corpus.
        out: optional str, a JSON file to write the result to.
        limit: optional int, every k-th clip so that about ``limit`` are scored.

    Returns:
        dict: clips, accuracy (same pitch classes), strict_accuracy (same label), by_quality (accuracy),
        errors (up to 20 ``[id, label, recognised]``), seconds.

    Raises:
        ManifestError, AudioError: an unreadable manifest or clip (named); ConfigError: a label that is
        not a triad.
    """
    started = time.perf_counter()
    utts = [u for path in manifests for u in read_manifest(path)]
    if limit is not None and len(utts) > limit:
        utts = utts[::int(np.ceil(len(utts) / limit))]
    labels = [u.speaker for u in utts]
    for label in labels:
        parse_chord(label)
    scored = score_clips([audio_io.load(u.audio) for u in utts], sample_rate=audio_io.SAMPLE_RATE, requested=labels)
    rows = scored["rows"]
    by_quality = {}
    for quality in ("maj", "min", "dim", "aug"):
        picked = [r["correct"] for r, label in zip(rows, labels) if parse_chord(label)[1] == quality]
        if picked:
            by_quality[quality] = float(np.mean(picked))
    result = {"manifests": list(manifests), "clips": len(rows), "accuracy": scored["summary"]["chord_accuracy"],
              "strict_accuracy": float(np.mean([r["chord"] == label for r, label in zip(rows, labels)])),
              "by_quality": by_quality, "music_share": scored["summary"]["music_share"],
              "errors": [[u.id, label, r["chord"]] for u, label, r in zip(utts, labels, rows) if not r["correct"]][:20],
              "seconds": round(time.perf_counter() - started, 2)}
    if out:
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    return result
