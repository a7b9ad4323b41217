"""Offline data augmentation: speed perturbation and additive noise, written once as new audio files.

The ASR trainer computes each utterance's features once and keeps them for the whole run
(``speechkit.data.pipeline.FeatureCache``), so waveform augmentation drawn afresh every epoch would
throw that cache away. Kaldi's recipes make the same trade: augmented copies are written to disk
once and listed in a new manifest, and the model sees them as more data.

- **Speed perturbation** (Ko et al., 2015): the waveform is resampled with soxr as if it had been
  recorded at ``rate * factor``, so tempo and pitch change together, like a tape played faster or
  slower. A copy is a new speaker, ``sp<factor>-<speaker>``, as in Kaldi.
- **Additive noise** (Amodei et al., 2016, section 3.4): noise is mixed in at a signal-to-noise
  ratio drawn uniformly from a range, measured against the power of the utterance. Noise comes from
  built-in generators (white, pink and brown noise, and babble: a few other utterances of the same
  set summed) or from the user's own recordings (MUSAN, room recordings).

Every copy is a pure function of ``(seed, utterance id, copy)``, so reruns and parallel workers agree,
and a rerun skips the copies that exist.
"""

import concurrent.futures
import dataclasses
import json
import logging
import os
import zlib

import numpy as np
import soxr
from tqdm import tqdm

from speechkit import audio as audio_io
from speechkit.config import Config, atomic_write_text
from speechkit.data.manifest import SkipReport, read_manifest, write_manifest
from speechkit.errors import AudioError, ConfigError, ManifestError

__all__ = ["AugmentConfig", "GENERATORS", "speed_perturb", "colored_noise", "mix_at_snr", "augment_manifest"]

logger = logging.getLogger(__name__)

GENERATORS = ("white", "pink", "brown", "babble")
_COLOR_EXPONENTS = {"white": 0.0, "pink": 0.5, "brown": 1.0}
_BABBLE_VOICES = (3, 6)
_AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


@dataclasses.dataclass(frozen=True)
class AugmentConfig(Config):
    """What ``augment_manifest`` writes.

    Args:
        speeds: tuple of float in [0.5, 2.0], one copy of every utterance per factor (1.0 is left out:
            the originals are always listed).
        noise: tuple of str from ``GENERATORS``, the built-in noise kinds to draw from.
        noise_files: optional str, a manifest (``.jsonl``) or a folder of audio files to draw noise from.
        snr_db: (low, high) float, the range the signal-to-noise ratio of each noisy copy is drawn from.
        noisy_copies: int >= 0, noisy copies of every original utterance (needs a noise source).
        seed: int.
    """

    speeds: tuple = (0.9, 1.1)
    noise: tuple = ()
    noise_files: str = None
    snr_db: tuple = (5.0, 25.0)
    noisy_copies: int = 0
    seed: int = 0

    def __post_init__(self):
        bad = [s for s in self.speeds if not 0.5 <= float(s) <= 2.0]
        if bad:
            raise ConfigError(f"speed factors must be in [0.5, 2.0], received: {bad}")
        unknown = [n for n in self.noise if n not in GENERATORS]
        if unknown:
            raise ConfigError(f"unknown noise kinds {unknown}; choose from {list(GENERATORS)}")
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise ConfigError(f"snr_db must be (low, high) with low <= high, received: {self.snr_db}")
        if int(self.noisy_copies) != self.noisy_copies or self.noisy_copies < 0:
            raise ConfigError(f"noisy_copies must be an int >= 0, received: {self.noisy_copies!r}")
        if self.noisy_copies and not (self.noise or self.noise_files):
            raise ConfigError("noisy copies need a noise source: built-in noise kinds or noise files")


def speed_perturb(audio, factor, sample_rate=audio_io.SAMPLE_RATE):
    """The waveform played ``factor`` times faster (tempo and pitch together), ``len / factor`` samples long."""
    if factor == 1.0:
        return np.asarray(audio, np.float32)
    return soxr.resample(np.asarray(audio, np.float32), sample_rate * factor, sample_rate,
                         quality="HQ").astype(np.float32)


def colored_noise(kind, samples, rng):
    """Unit-variance noise whose power spectrum falls as ``1 / f ** (2 * exponent)``: white, pink or brown."""
    white = rng.standard_normal(samples)
    exponent = _COLOR_EXPONENTS[kind]
    if exponent and samples > 2:
        freqs = np.fft.rfftfreq(samples)
        freqs[0] = freqs[1]
        white = np.fft.irfft(np.fft.rfft(white) / freqs ** exponent, n=samples)
    return (white / max(float(np.std(white)), 1e-12)).astype(np.float32)


def mix_at_snr(speech, noise, snr_db):
    """``speech + g * noise`` with ``g`` chosen so that the power ratio is ``snr_db``; peaks kept within [-1, 1].

    Args:
        speech: float32 [samples].
        noise: float32 [samples], the same length.
        snr_db: float.
    """
    speech_power = float(np.mean(np.square(speech, dtype=np.float64)))
    noise_power = float(np.mean(np.square(noise, dtype=np.float64)))
    if speech_power == 0.0 or noise_power == 0.0:
        return np.asarray(speech, np.float32)
    gain = np.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    mixed = speech + gain * noise
    peak = float(np.max(np.abs(mixed)))
    return (mixed / peak * 0.99 if peak > 0.99 else mixed).astype(np.float32)


def _fit_length(noise, samples, rng):
    """``noise`` looped from a random offset to exactly ``samples`` samples."""
    if len(noise) == 0:
        return np.zeros(samples, np.float32)
    start = int(rng.integers(len(noise)))
    reps = -(-(start + samples) // len(noise))
    return np.tile(noise, reps)[start:start + samples]


def _noise_files(source):
    """Audio paths of a noise manifest (``.jsonl``) or folder."""
    if os.path.isdir(source):
        paths = sorted(os.path.join(root, name) for root, _, names in os.walk(source) for name in names
                       if name.lower().endswith(_AUDIO_EXTENSIONS))
    elif os.path.isfile(source):
        paths = [u.audio for u in read_manifest(source)]
    else:
        raise ManifestError(f"{source}: no such noise manifest or folder")
    if not paths:
        raise ManifestError(f"{source}: holds no audio files to draw noise from")
    return paths


def _rng(seed, utt_id, copy):
    return np.random.default_rng([int(seed), zlib.crc32(utt_id.encode("utf-8")), copy])


class _Augmenter:
    """Makes the copies of one utterance; shared read-only by the worker threads."""

    def __init__(self, utterances, config, out_dir, sample_rate):
        self.utterances = utterances
        self.config = config
        self.out_dir = out_dir
        self.rate = sample_rate
        self.kinds = list(config.noise) + (["files"] if config.noise_files else [])
        self.files = _noise_files(config.noise_files) if config.noise_files else []

    def _path(self, utt, new_id):
        return os.path.join(self.out_dir, "audio", utt.speaker or "unknown", f"{new_id}.flac")

    def _noise(self, kind, samples, rng, utt):
        if kind == "babble":
            others = [u for u in (self.utterances[int(i)] for i in rng.integers(len(self.utterances), size=8))
                      if u.id != utt.id][:int(rng.integers(_BABBLE_VOICES[0], _BABBLE_VOICES[1] + 1))]
            voices = [_fit_length(audio_io.load(u.audio, sample_rate=self.rate), samples, rng) for u in others]
            voices = [v / max(float(np.std(v)), 1e-6) for v in voices]
            return np.sum(voices, axis=0) if voices else colored_noise("pink", samples, rng)
        if kind == "files":
            path = self.files[int(rng.integers(len(self.files)))]
            return _fit_length(audio_io.load(path, sample_rate=self.rate), samples, rng)
        return colored_noise(kind, samples, rng)

    def copies(self, utt):
        """Write (or find) every copy of ``utt``; returns ``[(Utterance, written), ...]``.

        Raises:
            AudioError: ``utt``'s audio (or a noise file) is missing or unreadable.
        """
        planned = [(f"sp{factor:g}-{utt.id}", f"sp{factor:g}-{utt.speaker}", factor, None)
                   for factor in self.config.speeds if factor != 1.0]
        planned += [(f"noise{k}-{utt.id}", utt.speaker, 1.0, k) for k in range(self.config.noisy_copies)]
        results, audio = [], None
        for new_id, speaker, factor, copy in planned:
            path = self._path(utt, new_id)
            if os.path.exists(path):
                try:
                    results.append((dataclasses.replace(utt, id=new_id, audio=path, speaker=speaker,
                                                        duration=audio_io.info(path)[0]), False))
                    continue
                except AudioError:
                    logger.info("%s: unreadable, writing it again", path)
            if audio is None:
                audio = audio_io.load(utt.audio, sample_rate=self.rate)
            if copy is None:
                out = speed_perturb(audio, factor, self.rate)
            else:
                rng = _rng(self.config.seed, utt.id, copy)
                kind = self.kinds[int(rng.integers(len(self.kinds)))]
                snr = float(rng.uniform(*self.config.snr_db))
                out = mix_at_snr(audio, self._noise(kind, len(audio), rng, utt), snr)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            audio_io.save(path, out, sample_rate=self.rate)
            results.append((dataclasses.replace(utt, id=new_id, audio=path, speaker=speaker,
                                                duration=len(out) / self.rate), True))
        return results


def augment_manifest(manifest, out_dir, config=AugmentConfig(), *, jobs=2, sample_rate=audio_io.SAMPLE_RATE,
                     progress=True):
    """Write augmented copies of a manifest's utterances and a manifest listing originals and copies.

    The output manifest, ``out_dir/<manifest's file name>``, lists the original utterances (their
    audio where it is) followed by their copies in ``out_dir/audio/<speaker>/``. ``augment.json``
    records the settings and counts. An utterance whose audio cannot be read is left out with its
    copies, counted and named in ``augment.json``, not silently dropped.

    Args:
        manifest: str, the input JSONL manifest.
        out_dir: str, created if needed; a rerun skips the copies that exist.
        config: AugmentConfig.
        jobs: int, worker threads.
        sample_rate: int, the rate of the written copies.
        progress: bool, show a progress bar.

    Returns:
        dict, the contents of ``augment.json``.

    Raises:
        ManifestError: the manifest or the noise source is missing or empty, or no utterance could be read.
    """
    report = SkipReport()
    utterances = read_manifest(manifest, skip_report=report)
    if not utterances:
        raise ManifestError(f"{manifest}: no usable utterances ({report.summary()})")
    os.makedirs(out_dir, exist_ok=True)
    augmenter = _Augmenter(utterances, config, out_dir, sample_rate)
    by_id, failed = {}, {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, int(jobs))) as pool:
        futures = {pool.submit(augmenter.copies, utt): utt for utt in utterances}
        for future in tqdm(concurrent.futures.as_completed(futures), total=len(futures), desc="augment",
                           unit="utt", disable=not progress):
            utt = futures[future]
            try:
                by_id[utt.id] = future.result()
            except AudioError as err:
                failed[utt.id] = str(err)
                logger.warning("augment: left out %s: %s", utt.id, err)
    kept = [u for u in utterances if u.id in by_id]
    if not kept:
        raise ManifestError(f"{manifest}: no utterance could be read ({len(failed)} failed)")
    copies = [copy for u in kept for copy, _ in by_id[u.id]]
    written = sum(flag for u in kept for _, flag in by_id[u.id])
    out_manifest = os.path.join(out_dir, os.path.basename(manifest))
    write_manifest(out_manifest, kept + copies)
    summary = {"source": os.path.abspath(manifest), "manifest": os.path.abspath(out_manifest),
               "settings": config.to_dict(), "originals": len(kept), "copies": len(copies),
               "written": written, "reused": len(copies) - written,
               "hours": round(sum(u.duration for u in kept + copies) / 3600.0, 3),
               "failed": {"count": len(failed), "items": failed}, "manifest_skips": report.to_dict()}
    atomic_write_text(os.path.join(out_dir, "augment.json"), json.dumps(summary, indent=2) + "\n")
    logger.info("%s: %d originals + %d copies (%d written), %.2f h", out_manifest, len(kept), len(copies),
                written, summary["hours"])
    return summary
