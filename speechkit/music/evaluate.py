"""Evaluation of music WaveNets: the chord recogniser on real clips, and generated clips against real ones.

``evaluate_music`` generates clips from one or more WaveNet runs in
two modes and scores them with ``score_clips``:

- **unprimed**: free-running from silence. A chord-conditioned run (its ``speakers.json`` lists chord
  labels) is asked for the chords of the test clips, one clip each; an unconditional run cannot be
  asked for anything, so its clips have no requested chord (only music share and histogram distance).
- **primed**: each test clip's first ``prime_seconds`` seed the model, and the continuation alone is
  scored against the seed's chord (a conditioned run is also given the seed's chord).

The real test clips, cut to the window a continuation covers, are scored the same way as a reference
row. A model at another sample rate (an 8 kHz music WaveNet costs half as much per second) is seeded
at its own rate and its clips are scored at 16 kHz, both through soxr. ``report.md`` holds the table,
the goals (a conditioned run plays the requested chord in >= 50% of its clips, a primed continuation
keeps the seed's chord in >= 70%) and chromagrams and spectrograms of generated clips next to real
ones, with links to the wavs.
"""

import json
import logging
import os
import time

import librosa
import numpy as np
from matplotlib.figure import Figure

from speechkit import audio as audio_io
from speechkit.config import atomic_write_text
from speechkit.data.manifest import read_manifest
from speechkit.errors import ConfigError
from speechkit.music.chords import LABELS, chance_accuracy, chord_profile, chromagram, parse_chord
from speechkit.music.scores import pitch_class_histogram, score_clips
from speechkit.vocoder.generation import load_vocoder

__all__ = ["reference_histograms", "evaluate_music", "CHORD_GOAL", "PRIMED_GOAL"]

logger = logging.getLogger(__name__)

CHORD_GOAL = 0.5
PRIMED_GOAL = 0.7


def _label(utt):
    parse_chord(utt.speaker)
    return utt.speaker


def reference_histograms(manifest, *, per_label=2):
    """Pitch-class histograms of the training data: overall, and per chord label.

    Args:
        manifest: str, training manifest (``speaker`` = chord label).
        per_label: int, clips read per label (the histograms are means; a few clips suffice).

    Returns:
        (float [12] overall histogram, dict label -> float [12]).
    """
    by_label = {}
    for utt in read_manifest(manifest):
        if len(by_label.setdefault(_label(utt), [])) < per_label:
            by_label[utt.speaker].append(chord_profile(audio_io.load(utt.audio), sample_rate=audio_io.SAMPLE_RATE))
    labels = {label: pitch_class_histogram(profiles) for label, profiles in by_label.items()}
    if not labels:
        raise ConfigError(f"{manifest}: no clips to build reference histograms from")
    return pitch_class_histogram(list(labels.values())), labels


def _is_chord_model(vocoder):
    if vocoder.model.speaker_embedding is None:
        return False
    try:
        for name in vocoder.speakers:
            parse_chord(name)
    except ConfigError:
        return False
    return bool(vocoder.speakers)


def _generate(vocoder, seeds, labels, *, conditioned, num_samples, temperature, seed, backend):
    """One clip per seed (None: from silence); returns (clips, seconds spent)."""
    started = time.perf_counter()
    clips = []
    if seeds is None and not conditioned:
        clips = list(vocoder.generate(num_samples, batch_size=len(labels), temperature=temperature, seed=seed,
                                      backend=backend))
    else:
        for i, label in enumerate(labels):
            clips.append(vocoder.generate(num_samples, prime=None if seeds is None else seeds[i], batch_size=1,
                                          temperature=temperature, seed=seed + i,
                                          speaker=label if conditioned else None, backend=backend)[0])
    return clips, time.perf_counter() - started


def _fit(clip, length):
    """``clip`` cut or zero-padded to ``length`` samples (resampling may be off by one)."""
    return np.pad(clip[:length], (0, max(0, length - len(clip))))


def _plot(path, real, generated, title):
    fig = Figure(figsize=(10, 6))
    axes = fig.subplots(2, 2, sharex="col")
    for col, (name, clip) in enumerate((("real", real), ("generated", generated))):
        chroma = chromagram(clip, sample_rate=audio_io.SAMPLE_RATE)
        seconds = len(clip) / audio_io.SAMPLE_RATE
        axes[0, col].imshow(chroma, origin="lower", aspect="auto", cmap="magma", extent=[0, seconds, -0.5, 11.5])
        axes[0, col].set_yticks(range(12), ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"],
                                fontsize=6)
        axes[0, col].set_title(name)
        spec = librosa.amplitude_to_db(np.abs(librosa.stft(np.asarray(clip, np.float32), n_fft=1024,
                                                           hop_length=256)), ref=1.0, top_db=80)
        axes[1, col].imshow(spec, origin="lower", aspect="auto", cmap="magma",
                            extent=[0, seconds, 0, audio_io.SAMPLE_RATE / 2000])
        axes[1, col].set_xlabel("time (s)")
    axes[0, 0].set_ylabel("chroma")
    axes[1, 0].set_ylabel("kHz")
    fig.suptitle(title)
    tmp = f"{path[:-4]}.tmp.{os.getpid()}.png"
    fig.savefig(tmp, dpi=72)
    os.replace(tmp, path)


def evaluate_music(runs, *, train_manifest, test_manifest, out_dir, clips=48, seconds=1.0, prime_seconds=0.25,
                   temperature=1.0, seed=0, backend="fast", plots=2, command=None):
    """Generate clips from WaveNet runs, primed and unprimed, score them and write a report.

    Args:
        runs: list of str, vocoder run directories (unconditional, or conditioned on chord labels).
        train_manifest: str, the training manifest (reference pitch-class histograms).
        test_manifest: str, held-out clips: the requested chords and the seeds.
        out_dir: str, report folder: report.json, report.md, wav/, png/.
        clips: int > 0, clips per run and mode (the first ``clips`` test clips, cycled if fewer).
        seconds: float > 0, generated seconds per clip (after the seed).
        prime_seconds: float > 0, seconds of each test clip that seed the primed mode.
        temperature, seed, backend: sampling, as for ``Vocoder.generate``.
        plots: int >= 0, clips per run and mode with chromagram and spectrogram PNGs.
        command: optional str, the command line, recorded in the report.

    Returns:
        dict, the content of report.json: ``rows`` (one per source and mode, with its summary), goals,
        chance, and the recogniser's accuracy on the real window.

    Raises:
        ConfigError: bad sizes, or a test clip shorter than ``prime_seconds + seconds``.
    """
    if clips < 1 or seconds <= 0 or prime_seconds <= 0 or plots < 0:
        raise ConfigError(f"need clips >= 1, seconds > 0, prime_seconds > 0 and plots >= 0, received {clips}, "
                          f"{seconds}, {prime_seconds}, {plots}")
    rate = audio_io.SAMPLE_RATE
    tests = read_manifest(test_manifest)
    if not tests:
        raise ConfigError(f"{test_manifest}: no test clips")
    tests = [tests[i % len(tests)] for i in range(clips)]
    labels = [_label(u) for u in tests]
    num_samples, prime_len = int(round(seconds * rate)), int(round(prime_seconds * rate))
    real = []
    for utt in tests:
        wave = audio_io.load(utt.audio, sample_rate=rate)
        if len(wave) < prime_len + num_samples:
            raise ConfigError(f"{utt.audio}: {len(wave) / rate:.2f} s, shorter than the seed plus the generated "
                              f"clip ({prime_seconds + seconds:.2f} s)")
        real.append(wave)
    seeds = [w[:prime_len] for w in real]
    windows = [w[prime_len:prime_len + num_samples] for w in real]
    reference, label_reference = reference_histograms(train_manifest)
    for sub in ("wav", "png"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)

    def score(name, mode, clip_list, requested, extra):
        scored = score_clips(clip_list, sample_rate=rate, requested=requested, reference=reference,
                             label_reference=label_reference)
        row = {"source": name, "mode": mode, **extra, **scored["summary"], "clips_detail": []}
        for i, (clip, detail) in enumerate(zip(clip_list, scored["rows"])):
            wav = f"wav/{name}_{mode}_{i:02d}.wav"
            audio_io.save(os.path.join(out_dir, wav), clip, sample_rate=rate)
            detail = {**detail, "wav": wav}
            if i < plots and name != "real":
                detail["png"] = f"png/{name}_{mode}_{i:02d}.png"
                asked = f"asked {requested[i]}, " if requested is not None else ""
                _plot(os.path.join(out_dir, detail["png"]), windows[i], clip,
                      f"{name} {mode} {i}: {asked}recognised {detail['chord']}")
            row["clips_detail"].append(detail)
        logger.info("%s %s: %s", name, mode, {k: v for k, v in scored["summary"].items() if k != "recognised"})
        return row

    rows = [score("real", "window", windows, labels, {"conditioned": None})]
    for run in runs:
        vocoder = load_vocoder(run)
        name = os.path.basename(os.path.normpath(run))
        conditioned = _is_chord_model(vocoder)
        if vocoder.model.speaker_embedding is not None and not conditioned:
            raise ConfigError(f"{run}: speaker-conditioned, but its speakers are not chord labels")
        model_rate = vocoder.frontend.sample_rate
        model_seeds = [audio_io.resample(s, rate, model_rate) for s in seeds]
        for mode, mode_seeds in (("unprimed", None), ("primed", model_seeds)):
            generated, spent = _generate(vocoder, mode_seeds, labels, conditioned=conditioned,
                                         num_samples=int(round(seconds * model_rate)), temperature=temperature,
                                         seed=seed, backend=backend)
            generated = [_fit(audio_io.resample(clip, model_rate, rate), num_samples) for clip in generated]
            requested = labels if (conditioned or mode == "primed") else None
            rows.append(score(name, mode, generated, requested,
                              {"run": run, "conditioned": conditioned, "rtf": round(spent / (clips * seconds), 3)}))
    report = {"command": command, "train_manifest": train_manifest, "test_manifest": test_manifest,
              "clips": clips, "seconds": seconds, "prime_seconds": prime_seconds, "temperature": temperature,
              "seed": seed, "chance": chance_accuracy(labels), "chance_uniform": 1 / len(LABELS),
              "goals": {"conditioned_unprimed_accuracy": CHORD_GOAL, "primed_accuracy": PRIMED_GOAL},
              "rows": rows}
    atomic_write_text(os.path.join(out_dir, "report.json"), json.dumps(report, indent=2) + "\n")
    atomic_write_text(os.path.join(out_dir, "report.md"), _markdown(report))
    return report


def _fmt(value, percent=True):
    if value is None:
        return "-"
    return f"{value * 100:.1f}%" if percent else f"{value:.3f}"


def _goal(row):
    if row["source"] == "real" or "chord_accuracy" not in row:
        return "-"
    goal = PRIMED_GOAL if row["mode"] == "primed" else CHORD_GOAL if row["conditioned"] else None
    if goal is None:
        return "-"
    return f"{'met' if row['chord_accuracy'] >= goal else 'not met'} (>= {goal * 100:.0f}%)"


def _markdown(report):
    lines = [
        "# Music evaluation", "",
        f"{report['clips']} clips per source and mode, {report['seconds']:g} s each; primed clips continue the "
        f"first {report['prime_seconds']:g} s of a test clip and only the continuation is scored. "
        f"Temperature {report['temperature']:g}, seed {report['seed']}.", "",
        f"Chord accuracy counts a clip as right when its recognised triad holds the requested pitch classes "
        f"(augmented triads are enharmonic): chance {report['chance'] * 100:.1f}% here "
        f"({report['chance_uniform'] * 100:.1f}% = 1/48 for a single label). Silence and noise count as wrong. "
        "Histogram distance: total variation to the training data's pitch-class histogram (set) and to each "
        "requested chord's (per clip). Music share: clips neither silent nor noise (spectral flatness).", "",
        "| source | mode | conditioned | chord accuracy | goal | music share | flatness | histogram distance "
        "| distance to the chord's | RTF |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(f"| {r['source']} | {r['mode']} | {'-' if r['conditioned'] is None else r['conditioned']} "
                     f"| {_fmt(r.get('chord_accuracy'))} | {_goal(r)} | {_fmt(r['music_share'])} "
                     f"| {r['mean_flatness']:.4f} | {_fmt(r.get('histogram_distance'), False)} "
                     f"| {_fmt(r.get('label_histogram_distance'), False)} | {r.get('rtf', '-')} |")
    lines += ["", "Command: `" + (report["command"] or "") + "`", ""]
    for r in report["rows"]:
        if r["source"] == "real":
            continue
        lines += [f"## {r['source']}, {r['mode']}", ""]
        for i, d in enumerate(r["clips_detail"]):
            asked = f"asked {d['requested']}, " if "requested" in d else ""
            link = f"[{d['wav']}]({d['wav']}) vs [real]({report['rows'][0]['clips_detail'][i]['wav']})"
            lines.append(f"- {i}: {asked}recognised {d['chord']}, {d['level_db']:.1f} dBFS, flatness "
                         f"{d['flatness']:.4f}: {link}")
            if "png" in d:
                lines += ["", f"![{r['source']} {r['mode']} {i}]({d['png']})", ""]
        lines.append("")
    return "\n".join(lines)

