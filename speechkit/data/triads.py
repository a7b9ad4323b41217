"""The piano-triads corpus: every major, minor, diminished and augmented triad rendered by a real synthesiser.

Music is the other classic WaveNet task (the unconditional piano experiments of the WaveNet paper, and
the public "piano-triads wavset" that tutorials train on). This module writes a corpus in that layout,
one chord per file, a few seconds each, by rendering MIDI (written with ``mido``) through the
``fluidsynth`` command-line synthesiser and a General MIDI SoundFont (Debian ``fluidsynth`` and
``timgm6mb-soundfont``; Acoustic Grand Piano, program 0).

The plan is 12 roots x 4 qualities x inversions x octaves x variants. Each item draws its velocity
and held duration from ``default_rng([seed, index])``, so the corpus is a pure function of the
config, and one item per chord label (chosen by the seed) goes to ``test``. Layout::

    OUT/triads.json                   the config, the SoundFont and counts
    OUT/{train,test}.jsonl            manifests: id, audio, duration, text = speaker = chord label, and
                                      chord, root, quality, inversion, octave, velocity, notes
    OUT/{train,test}/<C#_maj>/<id>.wav  16-bit mono wav at ``sample_rate``

``speaker`` carries the chord label, so WaveNet training with global conditioning learns one embedding
per chord with no change to the vocoder. A rerun skips every wav that exists (each is written
atomically) and refuses a folder built with another config.
"""

import concurrent.futures
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time

import mido
import numpy as np
import soundfile as sf
from tqdm import tqdm

from speechkit import audio as audio_io
from speechkit.config import Config, atomic_write_text
from speechkit.errors import ConfigError, SynthesisError
from speechkit.music.chords import LABELS, QUALITIES, parse_chord

__all__ = ["TriadsConfig", "TriadItem", "SOUNDFONTS", "find_soundfont", "plan_triads", "render_triad",
           "synth_triads"]

logger = logging.getLogger(__name__)

SOUNDFONTS = ("/usr/share/sounds/sf2/TimGM6mb.sf2", "/usr/share/sounds/sf2/FluidR3_GM.sf2",
              "/usr/share/sounds/sf2/default-GM.sf2", "/usr/share/soundfonts/default.sf2")
_TICKS = 480
_TEMPO = 500000  # microseconds per beat: 120 bpm, so one beat is 0.5 s
_FADE_SECONDS = 0.05
_ONSET_LEVEL = 1e-3  # -60 dB of the peak: where a file starts


@dataclasses.dataclass(frozen=True)
class TriadsConfig(Config):
    """What to render.

    Args:
        seed: int, drives velocities, durations and the test split.
        octaves: tuple of int, octaves of the root in scientific pitch (4: middle C = MIDI 60).
        inversions: tuple of int in {0, 1, 2}: root position, first and second inversion (the lowest
            tones move up an octave).
        variants: int >= 1, renders per (chord, inversion, octave), each with its own velocity and duration.
        min_seconds, max_seconds: float, range of the held duration (key down).
        release_seconds: float >= 0, audio kept after the key is released (the file is held + release long).
        min_velocity, max_velocity: int in [1, 127], MIDI velocity range.
        sample_rate: int, Hz of the synthesiser and the files.
        program: int in [0, 127], General MIDI program (0: Acoustic Grand Piano).
        gain: float in (0, 10], fluidsynth master gain.
        test_per_chord: int >= 0, items per chord label held out in ``test``.
    """

    seed: int = 0
    octaves: tuple = (3, 4, 5)
    inversions: tuple = (0, 1, 2)
    variants: int = 1
    min_seconds: float = 1.5
    max_seconds: float = 3.0
    release_seconds: float = 0.5
    min_velocity: int = 50
    max_velocity: int = 110
    sample_rate: int = 16000
    program: int = 0
    gain: float = 2.0
    test_per_chord: int = 1

    def __post_init__(self):
        bad = []
        if not self.octaves or any(not 1 <= int(o) <= 6 for o in self.octaves):
            bad.append(f"octaves must be non-empty, each in [1, 6], received {self.octaves}")
        if not self.inversions or any(i not in (0, 1, 2) for i in self.inversions):
            bad.append(f"inversions must be non-empty, each in {{0, 1, 2}}, received {self.inversions}")
        if self.variants < 1:
            bad.append(f"variants must be >= 1, received {self.variants}")
        if not 0 < self.min_seconds <= self.max_seconds:
            bad.append(f"need 0 < min_seconds <= max_seconds, received {self.min_seconds}, {self.max_seconds}")
        if self.release_seconds < 0:
            bad.append(f"release_seconds must be >= 0, received {self.release_seconds}")
        if not 1 <= self.min_velocity <= self.max_velocity <= 127:
            bad.append(f"need 1 <= min_velocity <= max_velocity <= 127, received {self.min_velocity}, "
                       f"{self.max_velocity}")
        if not 0 <= self.program <= 127 or not 0 < self.gain <= 10:
            bad.append(f"program must be in [0, 127] and gain in (0, 10], received {self.program}, {self.gain}")
        if self.sample_rate < 8000:
            bad.append(f"sample_rate must be >= 8000, received {self.sample_rate}")
        per_chord = len(self.octaves) * len(self.inversions) * self.variants
        if not 0 <= self.test_per_chord < per_chord:
            bad.append(f"test_per_chord must be in [0, {per_chord}) (renders per chord), "
                       f"received {self.test_per_chord}")
        if bad:
            raise ConfigError("; ".join(bad))


@dataclasses.dataclass(frozen=True)
class TriadItem:
    """One planned file: a voiced triad with its velocity and duration."""

    id: str
    split: str
    chord: str
    inversion: int
    octave: int
    variant: int
    notes: tuple
    velocity: int
    held_seconds: float
    seconds: float

    @property
    def relative_path(self):
        """Path of the wav below the corpus folder: ``<split>/<C#_maj>/<id>.wav``."""
        return os.path.join(self.split, self.chord.replace(":", "_"), f"{self.id}.wav")

    def manifest_entry(self):
        root, quality = parse_chord(self.chord)
        return {"id": self.id, "audio": self.relative_path, "duration": round(self.seconds, 4),
                "text": self.chord, "speaker": self.chord, "chord": self.chord, "root": root, "quality": quality,
                "inversion": self.inversion, "octave": self.octave, "velocity": self.velocity,
                "notes": list(self.notes)}


def _voicing(chord, octave, inversion):
    root, quality = parse_chord(chord)
    notes = [12 * (octave + 1) + root + step for step in QUALITIES[quality]]
    for i in range(inversion):
        notes[i] += 12
    return tuple(sorted(notes))


def plan_triads(config):
    """The corpus as a list of ``TriadItem``: a pure function of ``config``.

    Args:
        config: TriadsConfig.

    Returns:
        list of TriadItem, in label order (``LABELS``), then octave, inversion, variant.
    """
    items = []
    index = 0
    for chord in LABELS:
        combos = [(o, i, v) for o in config.octaves for i in config.inversions for v in range(config.variants)]
        held_out = set(np.random.default_rng([config.seed, len(items), 7919]).choice(
            len(combos), size=config.test_per_chord, replace=False).tolist())
        for k, (octave, inversion, variant) in enumerate(combos):
            rng = np.random.default_rng([config.seed, index])
            velocity = int(rng.integers(config.min_velocity, config.max_velocity + 1))
            held = float(np.round(rng.uniform(config.min_seconds, config.max_seconds), 2))
            name = chord.replace(":", "_").replace("#", "s")
            items.append(TriadItem(
                id=f"{name}_inv{inversion}_oct{octave}_v{variant}", split="test" if k in held_out else "train",
                chord=chord, inversion=inversion, octave=octave, variant=variant,
                notes=_voicing(chord, octave, inversion), velocity=velocity, held_seconds=held,
                seconds=round(held + config.release_seconds, 4)))
            index += 1
    return items


def find_soundfont(path=None):
    """A General MIDI SoundFont: ``path`` if given, else the first of ``SOUNDFONTS`` that exists.

    Raises:
        SynthesisError: none exists.
    """
    candidates = [path] if path else list(SOUNDFONTS)
    for candidate in candidates:
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise SynthesisError(f"no General MIDI SoundFont at {candidates}; install the Debian package "
                         "timgm6mb-soundfont (make install) or name a .sf2 file")


def _midi_file(item, config, path):
    midi = mido.MidiFile(ticks_per_beat=_TICKS)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=_TEMPO, time=0))
    track.append(mido.Message("program_change", program=config.program, time=0))
    for note in item.notes:
        track.append(mido.Message("note_on", note=note, velocity=item.velocity, time=0))
    held = int(round(mido.second2tick(item.held_seconds, _TICKS, _TEMPO)))
    for k, note in enumerate(item.notes):
        track.append(mido.Message("note_off", note=note, velocity=64, time=held if k == 0 else 0))
    tail = int(round(mido.second2tick(config.release_seconds, _TICKS, _TEMPO)))
    track.append(mido.MetaMessage("end_of_track", time=tail))
    midi.save(path)


def render_triad(item, config, *, out_path, soundfont, fluidsynth="fluidsynth"):
    """Render one triad to a mono 16-bit wav of exactly ``item.seconds`` (atomically).

    The synthesiser renders with reverb and chorus off. The file starts at the attack: the few
    milliseconds of near-silence that the synthesiser renders first (below ``_ONSET_LEVEL`` of the peak)
    are cut. A WaveNet that generates from silence must go straight into the attack, and it learns to
    do so only if silence precedes the attack in its training data and nothing else: a chords model
    trained with the lead-in put 95% of its probability on more silence after silence, and its unprimed
    clips stayed silent. The audio is then cut at ``item.seconds`` with a 50 ms fade-out, so every
    file ends in silence.

    Args:
        item: TriadItem.
        config: TriadsConfig.
        out_path: str, the wav to write.
        soundfont: str, .sf2 path.
        fluidsynth: str, the fluidsynth executable.

    Returns:
        float, the peak absolute sample.

    Raises:
        SynthesisError: fluidsynth failed or produced no sound; the message names ``out_path``.
    """
    with tempfile.TemporaryDirectory(prefix="triad-") as tmp:
        midi_path = os.path.join(tmp, "chord.mid")
        raw_path = os.path.join(tmp, "raw.wav")
        _midi_file(item, config, midi_path)
        command = [fluidsynth, "-ni", "-q", "-R", "0", "-C", "0", "-g", str(config.gain),
                   "-r", str(config.sample_rate), "-O", "float", "-T", "wav", "-F", raw_path, soundfont, midi_path]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SynthesisError(f"{out_path}: fluidsynth failed to run: {err}") from None
        if done.returncode != 0 or not os.path.isfile(raw_path):
            raise SynthesisError(f"{out_path}: fluidsynth exited with {done.returncode}: "
                                 f"{(done.stderr or done.stdout).strip()[-300:]}")
        raw, rate = sf.read(raw_path, dtype="float32", always_2d=True)
    if rate != config.sample_rate:
        raise SynthesisError(f"{out_path}: fluidsynth wrote {rate} Hz instead of {config.sample_rate} Hz")
    length = int(round(item.seconds * config.sample_rate))
    mono = raw.mean(axis=1)
    loud = np.flatnonzero(np.abs(mono) > _ONSET_LEVEL * np.abs(mono).max())
    audio = mono[loud[0] if len(loud) else 0:][:length]
    audio = np.pad(audio, (0, length - len(audio)))
    fade = min(length, int(_FADE_SECONDS * config.sample_rate))
    audio[length - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = float(np.abs(audio).max())
    if peak < 1e-4:
        raise SynthesisError(f"{out_path}: the synthesiser produced silence (peak {peak:.1e}); "
                             "check the SoundFont")
    if peak > 0.99:
        audio *= 0.99 / peak
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    audio_io.save(out_path, audio, sample_rate=config.sample_rate)
    return peak


def _done(path):
    try:
        audio_io.info(path)
    except Exception:  # noqa: BLE001 - any unreadable file is rendered again
        return False
    return True


def synth_triads(out_dir, config=None, *, soundfont=None, jobs=None, progress=True):
    """Render the triads corpus into ``out_dir`` (resumable) and write its manifests.

    Args:
        out_dir: str, the corpus folder (created).
        config: TriadsConfig or None for the defaults (432 files, about 20 minutes of audio).
        soundfont: str .sf2 path, or None for the first of ``SOUNDFONTS``.
        jobs: int, parallel fluidsynth processes (default: CPU count).
        progress: bool, show a tqdm bar.

    Returns:
        dict, the summary also written to ``OUT/triads.json``: config, soundfont, splits (files, seconds,
        chords), rendered (this call), skipped (already there), seconds (wall time).

    Raises:
        ConfigError: ``out_dir`` holds a corpus built with another config.
        SynthesisError: fluidsynth or the SoundFont is missing, or a file failed to render (named).
    """
    config = config or TriadsConfig()
    fluidsynth = shutil.which("fluidsynth")
    if fluidsynth is None:
        raise SynthesisError("fluidsynth is not installed; install the Debian package fluidsynth (make install)")
    soundfont = find_soundfont(soundfont)
    os.makedirs(out_dir, exist_ok=True)
    summary_path = os.path.join(out_dir, "triads.json")
    if os.path.exists(summary_path):
        try:
            with open(summary_path, encoding="utf-8") as f:
                previous = json.load(f)["config"]
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"{summary_path}: unreadable corpus summary ({err}); remove the folder") from None
        if previous != config.to_dict():
            changed = sorted(k for k in config.to_dict() if previous.get(k) != config.to_dict()[k])
            raise ConfigError(f"{summary_path}: this folder holds a triads corpus built with other settings "
                              f"(differences: {changed}); use another folder")
    else:
        atomic_write_text(summary_path, json.dumps({"config": config.to_dict(), "complete": False}, indent=2) + "\n")
    started = time.perf_counter()
    items = plan_triads(config)
    todo = [item for item in items if not _done(os.path.join(out_dir, item.relative_path))]
    logger.info("%s: %d triads planned, %d to render with %s", out_dir, len(items), len(todo), soundfont)
    peaks = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        futures = [pool.submit(render_triad, item, config, out_path=os.path.join(out_dir, item.relative_path),
                               soundfont=soundfont, fluidsynth=fluidsynth) for item in todo]
        for future in tqdm(concurrent.futures.as_completed(futures), total=len(futures), desc="render triads",
                           unit="file", disable=not progress):
            peaks.append(future.result())
    splits = {}
    for split in ("train", "test"):
        chosen = [item for item in items if item.split == split]
        lines = [json.dumps(item.manifest_entry()) + "\n" for item in chosen]
        atomic_write_text(os.path.join(out_dir, f"{split}.jsonl"), "".join(lines))
        splits[split] = {"files": len(chosen), "seconds": round(sum(i.seconds for i in chosen), 2),
                         "chords": len({i.chord for i in chosen})}
    summary = {"config": config.to_dict(), "complete": True, "soundfont": soundfont,
               "fluidsynth": fluidsynth, "splits": splits, "rendered": len(todo),
               "skipped": len(items) - len(todo), "clipped_peaks": sum(p > 0.99 for p in peaks),
               "seconds": round(time.perf_counter() - started, 2)}
    atomic_write_text(summary_path, json.dumps(summary, indent=2) + "\n")
    return summary
