"""The embedded mini corpus: book sentences spoken by many espeak-ng and flite speakers, in LibriSpeech layout.

Real speech corpora are too large to ship and too slow to train on with two CPU cores, so the default
recipe synthesises its own: sentences from public-domain books, spoken by synthetic speakers that each
combine an engine, a voice (or accent and variant), a speaking rate and a pitch. The tree it writes is
read by the same importer as real LibriSpeech (``speechkit.data.librispeech.import_librispeech``).

Guarantees that downstream measurements rely on:

* dev and test speakers are never heard in train (see ``heard_in_training``: no training speaker has a
  dev or test speaker's engine, voice and variant at a nearby rate and pitch), yet every engine, flite
  voice, espeak accent and espeak variant heard in dev or test is also heard in train (unseen speakers,
  not unseen engines);
* extra training speakers (the release corpus) leave the demo corpus of the same seed untouched: its
  speakers, dev and test sets are the same files, and only train grows;
* dev and test sentences never occur in train nor in ``lm_text.txt``, so an LM cannot memorise them;
* the corpus is a pure function of the settings (seed, sizes, books): the plan is a fixed sequence of
  utterances per split and each split is its shortest prefix whose measured audio reaches the target,
  whatever the number of workers or the order in which they finish;
* a rerun skips every FLAC that exists, and every FLAC is written atomically.
"""

import collections
import concurrent.futures
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time

import librosa
import numpy as np
import soundfile as sf
from tqdm import tqdm

from speechkit import audio as audio_io
from speechkit.config import atomic_write_text
from speechkit.data.books import DEFAULT_BOOKS_DIR, BookText, extract_sentences
from speechkit.data.librispeech import import_librispeech
from speechkit.errors import AudioError, SynthesisError

__all__ = [
    "DEFAULT_BOOKS_DIR",
    "ESPEAK_ACCENTS",
    "ESPEAK_VARIANTS",
    "ESPEAK_EXTRA_VARIANTS",
    "FLITE_VOICES",
    "FLITE_EXTRA_VOICES",
    "HEARD_TOLERANCE",
    "SPLITS",
    "Speaker",
    "PlannedUtterance",
    "MiniPlan",
    "make_speakers",
    "add_train_speakers",
    "heard_in_training",
    "plan_mini",
    "synth_mini",
    "single_speakers",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                  "en-us-nyc")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
# flite voice -> (gender, pitch range in Hz for int_f0_target_mean, or None where the voice ignores it).
# rms is a clustergen voice whose F0 model does not follow int_f0_target_mean (measured: the same
# median F0 of 103 Hz for targets 90, 130 and 200), so its speakers differ only in rate.
FLITE_VOICES = {"awb": ("M", (95, 145)), "kal16": ("M", (90, 140)), "rms": ("M", None), "slt": ("F", (150, 215))}
_ESPEAK_RATES = (145, 200)  # words per minute (espeak-ng default 175)
_ESPEAK_PITCHES = (25, 75)  # espeak-ng pitch 0..99 (default 50)
_FLITE_STRETCHES = (0.85, 1.15)  # duration_stretch: > 1 is slower
# Heard only by extra training speakers, never in dev or test: the espeak-ng variants (-> gender) whose
# output is ordinary voiced speech (robotic, whispered, echoing and shaking variants are left out), and
# kal, the 8 kHz recording of kal16 (the same speaker, so the split rule treats it as kal16).
ESPEAK_EXTRA_VARIANTS = {
    "m8": "M", "Alex": "M", "Andy": "M", "Denis": "M", "Diogo": "M", "Gene": "M", "Gene2": "M", "Henrique": "M",
    "Hugo": "M", "Jacky": "M", "Lee": "M", "Mario": "M", "Michael": "M", "Mike": "M", "Nguyen": "M", "antonio": "M",
    "boris": "M", "david": "M", "ed": "M", "edward": "M", "gustave": "M", "iven": "M", "klatt": "M", "klatt2": "M",
    "klatt3": "M", "adam": "M", "benjamin": "M", "marcelo": "M", "max": "M", "michel": "M", "miguel": "M",
    "paul": "M", "pedro": "M", "quincy": "M", "rob": "M", "robert": "M", "sandro": "M", "travis": "M", "victor": "M",
    "Alicia": "F", "Andrea": "F", "Annie": "F", "aunty": "F", "belinda": "F", "linda": "F", "steph": "F",
    "steph2": "F",
}
FLITE_EXTRA_VOICES = {"kal": ("M", (80, 160))}
_FLITE_SAME_SPEAKER = {"kal": "kal16"}
# Wider settings for extra training speakers (measured: flite follows int_f0_target_mean over 80-240 Hz).
_EXTRA_ESPEAK_RATES = (130, 230)
_EXTRA_ESPEAK_PITCHES = (15, 85)
_EXTRA_FLITE_STRETCHES = (0.80, 1.25)
_EXTRA_FLITE_PITCHES = {"awb": (85, 165), "kal16": (80, 160), "kal": (80, 160), "rms": None, "slt": (140, 250)}
# Two speakers of one engine, voice and variant are the same speaker when both their rate and their pitch
# differ by at most this much: (words per minute, pitch 0..99) for espeak-ng, (duration_stretch, Hz) for flite.
HEARD_TOLERANCE = {"espeak-ng": (10, 10), "flite": (0.05, 10)}
_DEV_TEST_MARGIN = 2.0  # extra training speakers keep this many tolerances away from dev and test speakers
_TRAIN_MARGIN = 1.5  # and this many from the other training speakers of their voice
_DRAW_TRIES = 200
_INSTALL_HINT = "install it with `sudo apt-get install espeak-ng flite` (or `make apt`)"

_SAMPLE_RATE = audio_io.SAMPLE_RATE
_MIN_SECONDS = 0.3
_SUBPROCESS_TIMEOUT = 60
_ATTEMPTS = 2
_FORMAT_VERSION = 1



# -- Speakers -- #


@dataclasses.dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: an engine setting that stays fixed for all its utterances.

    Attributes:
        id: int, the LibriSpeech-style numeric speaker id.
        split: str, one of ``SPLITS``.
        engine: str, ``"espeak-ng"`` or ``"flite"``.
        voice: str, the espeak-ng accent (``en-gb-scotland``) or the flite voice (``slt``).
        variant: str, the espeak-ng variant (``m3``, ``f2``), or ``""`` for flite.
        rate: float, espeak-ng words per minute, or flite ``duration_stretch`` (> 1 is slower).
        pitch: int or None, espeak-ng pitch 0..99, or flite ``int_f0_target_mean`` in Hz; None where the
            voice ignores it (flite rms).
        gender: str, ``"M"`` or ``"F"``, from the voice or variant.
    """

    id: int
    split: str
    engine: str
    voice: str
    variant: str
    rate: float
    pitch: object
    gender: str

    def command(self, text, wav_path):
        """The argv that speaks lowercase ``text`` into ``wav_path``.

        Text goes to the engines in lowercase because both spell out short all-capital words
        (espeak-ng reads ``IT`` as "I T").
        """
        text = text.lower()
        if self.engine == "espeak-ng":
            return ["espeak-ng", "-v", f"{self.voice}+{self.variant}", "-s", str(int(self.rate)), "-p", str(self.pitch),
                    "-w", wav_path, text]
        cmd = ["flite", "-voice", self.voice, "--setf", f"duration_stretch={self.rate:.2f}"]
        if self.pitch is not None:
            cmd += ["--setf", f"int_f0_target_mean={self.pitch}"]
        return cmd + ["-t", text, "-o", wav_path]

    def estimate_seconds(self, text):
        """Rough spoken duration of ``text``, calibrated on both engines at their default rates."""
        if self.engine == "espeak-ng":
            return 0.057 * len(text) * 175.0 / self.rate
        return (0.069 if self.voice == "rms" else 0.060) * len(text) * self.rate


def make_speakers(rng, *, train=40, dev=8, test=8, flite_fraction=0.25):
    """Draw disjoint speaker sets for train, dev and test.

    An espeak-ng speaker's (accent, variant) pair belongs to one split only, and train covers every
    accent and every variant, so a dev or test speaker is a new combination of parts that train has
    heard. flite has only four voices, so all four are in train (when ``train`` allows) and a dev or
    test flite speaker is a seen voice at a (rate, pitch) that no training speaker of that voice comes
    near (``heard_in_training``). The voices take turns across the splits, so dev and test get
    different flite voices. ``add_train_speakers`` adds training speakers beyond these.

    Args:
        rng: np.random.Generator, the only source of randomness.
        train, dev, test: int >= 1, speakers per split.
        flite_fraction: float in [0, 1], the share of flite speakers in each split (at least one in
            any split of two or more speakers).

    Returns:
        list of Speaker, train first, with ids 100, 101, ... in that order.
    """
    counts = {"train": train, "dev": dev, "test": test}
    for split, n in counts.items():
        if int(n) != n or n < 1:
            raise SynthesisError(f"{split} speakers must be an integer >= 1, received {n!r}")
    if not 0.0 <= flite_fraction <= 1.0:
        raise SynthesisError(f"flite_fraction must lie in [0, 1], received {flite_fraction!r}")
    n_flite = {s: min(n, max(1 if n >= 2 and flite_fraction > 0 else 0, round(n * flite_fraction)))
               for s, n in counts.items()}
    n_espeak = {s: counts[s] - n_flite[s] for s in SPLITS}
    pairs = [(a, v) for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    pairs = [pairs[i] for i in rng.permutation(len(pairs))]
    if sum(n_espeak.values()) > len(pairs):
        raise SynthesisError(f"at most {len(pairs)} espeak-ng speakers exist (accent x variant); "
                             f"asked for {sum(n_espeak.values())}")
    # Train first takes pairs that add an unseen accent or variant, so dev/test parts are all heard in train.
    espeak = {s: [] for s in SPLITS}
    seen_accents, seen_variants = set(), set()
    for pair in list(pairs):
        if len(espeak["train"]) == n_espeak["train"]:
            break
        if pair[0] not in seen_accents or pair[1] not in seen_variants:
            espeak["train"].append(pair)
            pairs.remove(pair)
            seen_accents.add(pair[0])
            seen_variants.add(pair[1])
    for split in ("test", "dev", "train"):
        while len(espeak[split]) < n_espeak[split]:
            espeak[split].append(pairs.pop(0))
    voices = [list(FLITE_VOICES)[i] for i in rng.permutation(len(FLITE_VOICES))]
    flite_settings, used, turn, full = {s: [] for s in SPLITS}, set(), 0, set()
    for split in SPLITS:
        trained = [Speaker(0, "train", "flite", v, "", r, p, "") for v, r, p in flite_settings["train"]]
        for _ in range(n_flite[split]):
            setting = None
            while setting is None:
                if len(full) == len(voices):
                    raise SynthesisError(f"no flite voice has room for another {split} speaker that train has not "
                                         "heard; ask for fewer flite speakers")
                voice = voices[turn % len(voices)]
                turn += 1
                if voice not in full:
                    setting = _draw_flite(rng, voice, split, used, trained)
                    if setting is None:
                        full.add(voice)
            used.add(setting)
            flite_settings[split].append(setting)
    speakers = []
    for split in SPLITS:
        drafts = [("espeak-ng", accent, variant, float(rng.integers(_ESPEAK_RATES[0], _ESPEAK_RATES[1] + 1)),
                   int(rng.integers(_ESPEAK_PITCHES[0], _ESPEAK_PITCHES[1] + 1)), variant[0].upper())
                  for accent, variant in espeak[split]]
        drafts += [("flite", voice, "", stretch, pitch, FLITE_VOICES[voice][0])
                   for voice, stretch, pitch in flite_settings[split]]
        for i in rng.permutation(len(drafts)):
            speakers.append(Speaker(100 + len(speakers), split, *drafts[i]))
    return speakers


def single_speakers(voice):
    """One espeak-ng voice for every split, for a single-speaker (TTS) corpus.

    Each split gets its own speaker id (100 train, 101 dev, 102 test), so utterance ids stay unique
    across splits, but all three are the same engine setting at espeak-ng's default rate and pitch:
    unlike the multi-speaker corpus, the dev and test voice is the training voice on purpose.

    Args:
        voice: str, ``ACCENT+VARIANT`` with an accent of ``ESPEAK_ACCENTS`` and a variant of
            ``ESPEAK_VARIANTS`` or ``ESPEAK_EXTRA_VARIANTS`` (``en-us+m3``).

    Returns:
        list of three Speaker, one per split in ``SPLITS`` order.

    Raises:
        SynthesisError: an unknown accent or variant.
    """
    accent, _, variant = str(voice).partition("+")
    variants = ESPEAK_VARIANTS + tuple(ESPEAK_EXTRA_VARIANTS)
    if accent not in ESPEAK_ACCENTS or variant not in variants:
        raise SynthesisError(f"single speaker voice must be ACCENT+VARIANT with an accent of {ESPEAK_ACCENTS} and a "
                             f"variant of {variants}, received: {voice!r}")
    gender = ESPEAK_EXTRA_VARIANTS[variant] if variant in ESPEAK_EXTRA_VARIANTS else variant[0].upper()
    return [Speaker(100 + i, split, "espeak-ng", accent, variant, 175.0, 50, gender) for i, split in enumerate(SPLITS)]


def _draw_flite(rng, voice, split, used, trained):
    """A (voice, stretch, pitch) that no speaker uses and, outside train, that ``trained`` has not heard.

    Returns None when a dev or test speaker finds no room in ``_DRAW_TRIES`` draws (the training
    speakers of this voice cover its range).
    """
    pitch_range = FLITE_VOICES[voice][1]
    for tries in itertools.count(1):
        stretch = round(float(rng.uniform(*_FLITE_STRETCHES)), 2)
        pitch = None if pitch_range is None else int(rng.integers(pitch_range[0], pitch_range[1] + 1))
        if (voice, stretch, pitch) not in used and (split == "train" or not heard_in_training(
                Speaker(0, split, "flite", voice, "", stretch, pitch, ""), trained)):
            return voice, stretch, pitch
        if split != "train" and tries >= _DRAW_TRIES:
            return None


def _near(a, b, scale=1.0):
    """Whether speakers ``a`` and ``b`` sound like one speaker: same engine, voice (kal counts as kal16)
    and variant, with rates and pitches each within ``scale`` times ``HEARD_TOLERANCE``."""
    if (a.engine, _FLITE_SAME_SPEAKER.get(a.voice, a.voice), a.variant) != (
            b.engine, _FLITE_SAME_SPEAKER.get(b.voice, b.voice), b.variant):
        return False
    rate_tol, pitch_tol = HEARD_TOLERANCE[a.engine]
    if abs(a.rate - b.rate) > scale * rate_tol + 1e-9:
        return False
    return a.pitch is None or b.pitch is None or abs(a.pitch - b.pitch) <= scale * pitch_tol + 1e-9


def heard_in_training(speaker, train):
    """Whether ``speaker`` is heard in training: the rule that every dev and test speaker obeys.

    A speaker is heard when some training speaker has its engine, its voice (the espeak-ng accent or
    the flite voice, where kal is kal16 at 8 kHz) and its variant, at a rate and a pitch that each
    differ by at most ``HEARD_TOLERANCE`` (10 words per minute and 10 pitch units for espeak-ng,
    0.05 duration_stretch and 10 Hz for flite; the pitch is ignored where the voice ignores it).
    The speakers drawn here obey a stricter rule for espeak-ng (an accent and variant pair is never
    shared across splits), so only flite voices are shared, at distant settings.

    Args:
        speaker: Speaker, typically of dev or test.
        train: iterable of Speaker, the training speakers.

    Returns:
        bool.
    """
    return any(_near(speaker, other) for other in train)


def add_train_speakers(rng, speakers, n, *, flite_fraction=0.25):
    """Add ``n`` training speakers to ``speakers`` without changing any of them.

    Extra speakers widen the training set for speaker generalisation (the release corpus) while dev
    and test stay exactly those of ``make_speakers``. They draw from wider ranges than the base
    speakers (espeak-ng 130-230 words per minute and pitch 15-85, flite duration_stretch 0.80-1.25)
    and from more parts (``ESPEAK_EXTRA_VARIANTS``, ``FLITE_EXTRA_VOICES``), under two rules:

    * never near a dev or test speaker: an espeak-ng speaker never takes the accent and variant of
      one, and a flite speaker keeps ``_DEV_TEST_MARGIN`` (2) tolerances away in rate or pitch from
      every dev and test speaker of its voice, so they stay unheard with room to spare;
    * a distinct speaker: ``_TRAIN_MARGIN`` (1.5) tolerances away in rate or pitch from every other
      training speaker of its voice and variant. espeak-ng speakers first take accent and variant
      pairs that no speaker uses (female and male variants in turn), then several speakers share a
      pair.

    A flite voice that has no room left after ``_DRAW_TRIES`` draws is full; when every flite voice
    is full, the remaining flite places go to espeak-ng.

    Args:
        rng: np.random.Generator, its own stream (not the one of ``make_speakers``, so that the
            sentence shuffle that follows it is unchanged).
        speakers: list of Speaker from ``make_speakers``.
        n: int >= 0, extra training speakers.
        flite_fraction: float in [0, 1], the share of flite speakers among the extra ones.

    Returns:
        list of Speaker: ``speakers`` unchanged (same ids), then the new training speakers, numbered
        on from the largest id.

    Raises:
        SynthesisError: a bad ``n`` or ``flite_fraction``, or no room for ``n`` distinct speakers.
    """
    if int(n) != n or n < 0:
        raise SynthesisError(f"extra training speakers must be an integer >= 0, received {n!r}")
    if not 0.0 <= flite_fraction <= 1.0:
        raise SynthesisError(f"flite_fraction must lie in [0, 1], received {flite_fraction!r}")
    held = [s for s in speakers if s.split != "train"]
    train = [s for s in speakers if s.split == "train"]
    n_flite = round(n * flite_fraction)
    new = []

    def fits(draft):
        return (not any(_near(draft, other, _DEV_TEST_MARGIN) for other in held)
                and not any(_near(draft, other, _TRAIN_MARGIN) for other in train + new))

    voices = sorted(_EXTRA_FLITE_PITCHES)
    voices = [voices[i] for i in rng.permutation(len(voices))]
    full, turn = set(), 0
    while len(new) < n_flite and len(full) < len(voices):
        voice = voices[turn % len(voices)]
        turn += 1
        if voice in full:
            continue
        gender = {**FLITE_VOICES, **FLITE_EXTRA_VOICES}[voice][0]
        pitch_range = _EXTRA_FLITE_PITCHES[voice]
        for _ in range(_DRAW_TRIES):
            stretch = round(float(rng.uniform(*_EXTRA_FLITE_STRETCHES)), 2)
            pitch = None if pitch_range is None else int(rng.integers(pitch_range[0], pitch_range[1] + 1))
            draft = Speaker(0, "train", "flite", voice, "", stretch, pitch, gender)
            if fits(draft):
                new.append(draft)
                break
        else:
            full.add(voice)

    taken = {(s.voice, s.variant) for s in speakers if s.engine == "espeak-ng"}
    banned = {(s.voice, s.variant) for s in held if s.engine == "espeak-ng"}
    genders = {**{v: v[0].upper() for v in ESPEAK_VARIANTS}, **ESPEAK_EXTRA_VARIANTS}
    pools = {}
    for gender in ("F", "M"):
        pairs = [(a, v) for a in ESPEAK_ACCENTS for v in genders if genders[v] == gender and (a, v) not in banned]
        pairs = [pairs[i] for i in rng.permutation(len(pairs))]
        pools[gender] = [p for p in pairs if p not in taken] + [p for p in pairs if p in taken]
    order = [p for pair in zip(pools["F"], pools["M"]) for p in pair]
    longer = pools["F"] if len(pools["F"]) > len(pools["M"]) else pools["M"]
    order += longer[min(len(pools["F"]), len(pools["M"])):]
    rounds = 0
    while len(new) < n:
        placed = False
        for accent, variant in order:
            if len(new) == n:
                break
            for _ in range(_DRAW_TRIES):
                draft = Speaker(0, "train", "espeak-ng", accent, variant,
                                float(rng.integers(_EXTRA_ESPEAK_RATES[0], _EXTRA_ESPEAK_RATES[1] + 1)),
                                int(rng.integers(_EXTRA_ESPEAK_PITCHES[0], _EXTRA_ESPEAK_PITCHES[1] + 1)),
                                genders[variant])
                if fits(draft):
                    new.append(draft)
                    placed = True
                    break
        rounds += 1
        if not placed:
            raise SynthesisError(f"no room for {n} distinct extra training speakers (placed {len(new)} after "
                                 f"{rounds} rounds over {len(order)} accent and variant pairs)")
    first = max((s.id for s in speakers), default=99) + 1
    return list(speakers) + [dataclasses.replace(new[i], id=first + k) for k, i in enumerate(rng.permutation(len(new)))]


def _write_speakers_tsv(path, speakers, stats):
    header = "speaker\tsplit\tengine\tvoice\tvariant\trate\tpitch\tgender\tutterances\tseconds\n"
    rows = []
    for spk in speakers:
        count, seconds = stats.get(spk.id, (0, 0.0))
        rate = f"{spk.rate:.0f}" if spk.engine == "espeak-ng" else f"{spk.rate:.2f}"
        rows.append(f"{spk.id}\t{spk.split}\t{spk.engine}\t{spk.voice}\t{spk.variant or '-'}\t{rate}\t"
                    f"{'-' if spk.pitch is None else spk.pitch}\t{spk.gender}\t{count}\t{seconds:.2f}\n")
    atomic_write_text(path, header + "".join(rows))


# -- Plan -- #


@dataclasses.dataclass(frozen=True)
class PlannedUtterance:
    """One utterance of the plan: who says what, and where it goes.

    Attributes:
        split: str, one of ``SPLITS``.
        id: str, ``<speaker>-<chapter>-<nnnn>``.
        speaker: int, the speaker id.
        chapter: int, the 1-based book number the sentence comes from.
        text: str, the normalised transcript.
        path: str, the FLAC path relative to the corpus root.
        estimate: float, estimated seconds, used only to size synthesis rounds.
    """

    split: str
    id: str
    speaker: int
    chapter: int
    text: str
    path: str
    estimate: float


@dataclasses.dataclass(frozen=True)
class MiniPlan:
    """The full, deterministic plan of a mini corpus.

    Attributes:
        settings: dict, everything the plan depends on (seed, sizes, book digest); stored in
            ``corpus.json`` so a rerun into the same folder can refuse different settings.
        text: BookText, the sentences of the books.
        speakers: list of Speaker.
        candidates: dict split -> list of PlannedUtterance, in plan order. Each split of the corpus is
            the shortest prefix of its list whose measured audio reaches ``targets[split]``.
        targets: dict split -> float seconds.
    """

    settings: dict
    text: BookText
    speakers: list
    candidates: dict
    targets: dict


def _books_digest(books_dir, books):
    digest = hashlib.sha256()
    for name in books:
        digest.update(name.encode() + b"\0")
        with open(os.path.join(books_dir, name), "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()[:16]


class _TrainTurns:
    """Which speaker says utterance ``k`` of a split's plan.

    By default speakers take turns (``k mod n``). With a flite share ``s``, utterance ``k`` is a flite
    one when ``floor((k + 1) s) > floor(k s)``, so every prefix of the plan holds the share to within
    one utterance; flite speakers take turns among the flite utterances and espeak-ng speakers among
    the others, so each prefix stays balanced within an engine.
    """

    def __init__(self, speakers, flite_share=None):
        self.speakers = list(speakers)
        self.share = flite_share
        if flite_share is None:
            return
        if not 0.0 < flite_share < 1.0:
            raise SynthesisError(f"the training flite share must lie in (0, 1), received {flite_share!r}")
        self.flite = [s for s in self.speakers if s.engine == "flite"]
        self.espeak = [s for s in self.speakers if s.engine != "flite"]
        if not self.flite or not self.espeak:
            raise SynthesisError("a training flite share needs flite and espeak-ng training speakers; "
                                 f"the plan has {len(self.flite)} and {len(self.espeak)}")

    def speaker(self, k):
        if self.share is None:
            return self.speakers[k % len(self.speakers)]
        before = math.floor(k * self.share + 1e-9)
        if math.floor((k + 1) * self.share + 1e-9) > before:
            return self.flite[before % len(self.flite)]
        return self.espeak[(k - before) % len(self.espeak)]

    def mean_seconds(self, sentence):
        """The expected seconds of ``sentence`` for a speaker drawn as the turns draw them."""
        def mean(group):
            return float(np.mean([s.estimate_seconds(sentence) for s in group]))
        if self.share is None:
            return mean(self.speakers)
        return self.share * mean(self.flite) + (1.0 - self.share) * mean(self.espeak)


def plan_mini(books_dir=DEFAULT_BOOKS_DIR, *, seed=0, train_hours=1.0, dev_minutes=10.0, test_minutes=10.0,
              train_speakers=40, dev_speakers=8, test_speakers=8, flite_fraction=0.25, min_words=3, max_words=20,
              extra_train_speakers=0, single_speaker=None, train_flite_share=None):
    """Plan a mini corpus without synthesising anything.

    The eligible sentences are shuffled with ``seed`` and cut into three disjoint reserves (test,
    dev, then train), each about 2.5 times what its target needs at the estimated speaking rate, so
    that failed or short utterances never exhaust it. Utterance ``k`` of a split goes to speaker
    ``k mod n`` of that split (speakers take turns, so every prefix is balanced), and is numbered
    within its speaker and chapter in plan order, so ids never depend on where a split ends.

    Extra training speakers come from their own random stream after the base draw, so a plan with
    them has the same dev and test utterances as the plan of the same seed without them (the
    release corpus is measured on the demo's dev and test sets), and a longer train reserve.

    Args:
        books_dir: str, folder of ``*.txt`` books.
        seed: int, the seed of the sentence shuffle and the speaker draw.
        train_hours, dev_minutes, test_minutes: float > 0, the audio targets.
        train_speakers, dev_speakers, test_speakers: int >= 1, speakers per split.
        flite_fraction: float in [0, 1], the share of flite speakers per split (and among the extra ones).
        min_words, max_words: int, the accepted sentence length in words.
        extra_train_speakers: int >= 0, training speakers added by ``add_train_speakers``.
        single_speaker: optional str, an espeak-ng ``ACCENT+VARIANT`` that speaks every split
            (``single_speakers``); the speaker counts, ``flite_fraction`` and ``extra_train_speakers``
            are then unused. The sentence reserves are drawn from the same shuffle.
        train_flite_share: optional float in (0, 1), the share of training utterances spoken by flite
            speakers (``_TrainTurns``); None gives every training speaker the same number of turns.
            flite has few voices and little room for distinct settings, so its share of the audio is
            raised by giving its speakers more sentences, not by adding speakers. Dev and test are
            unchanged.

    Returns:
        MiniPlan.

    Raises:
        SynthesisError: a bad size, or books with too few eligible sentences for the targets.
        TextError: the books folder is missing or empty.
    """
    targets = {"train": train_hours * 3600.0, "dev": dev_minutes * 60.0, "test": test_minutes * 60.0}
    for split, seconds in targets.items():
        if not seconds > 0 or not math.isfinite(seconds):
            raise SynthesisError(
                f"the {split} audio target must be a positive number, received {seconds / 60:g} minutes")
    text = extract_sentences(books_dir, min_words=min_words, max_words=max_words)
    rng = np.random.default_rng(seed)
    speakers = make_speakers(rng, train=train_speakers, dev=dev_speakers, test=test_speakers,
                             flite_fraction=flite_fraction)
    if single_speaker is not None:
        speakers = single_speakers(single_speaker)
    elif extra_train_speakers:
        speakers = add_train_speakers(np.random.default_rng([int(seed), 1]), speakers, extra_train_speakers,
                                      flite_fraction=flite_fraction)
    order = rng.permutation(len(text.eligible))
    mean_chars = float(np.mean([len(t) for t, _ in text.eligible]))
    candidates, start = {}, 0
    for split in ("test", "dev", "train"):
        split_speakers = [s for s in speakers if s.split == split]
        turns = _TrainTurns(split_speakers, train_flite_share if split == "train" else None)
        mean_estimate = turns.mean_seconds("x" * round(mean_chars))
        size = int(2.5 * targets[split] / mean_estimate) + 20
        if start + size > len(order):
            raise SynthesisError(f"{books_dir}: {len(text.eligible)} eligible sentences of {min_words}-{max_words} "
                                 f"words are too few for these targets (need about {start + size}); add books or "
                                 "lower the targets")
        numbers = collections.Counter()
        items = []
        for k, index in enumerate(order[start:start + size]):
            sentence, chapter = text.eligible[index]
            spk = turns.speaker(k)
            number = numbers[spk.id, chapter]
            numbers[spk.id, chapter] += 1
            utt_id = f"{spk.id}-{chapter}-{number:04d}"
            items.append(PlannedUtterance(split=split, id=utt_id, speaker=spk.id, chapter=chapter, text=sentence,
                                          path=f"{split}/{spk.id}/{chapter}/{utt_id}.flac",
                                          estimate=spk.estimate_seconds(sentence)))
        candidates[split] = items
        start += size
    settings = {
        "format": _FORMAT_VERSION, "seed": int(seed), "train_hours": float(train_hours),
        "dev_minutes": float(dev_minutes),
        "test_minutes": float(test_minutes), "train_speakers": int(train_speakers), "dev_speakers": int(dev_speakers),
        "test_speakers": int(test_speakers), "flite_fraction": float(flite_fraction), "min_words": int(min_words),
        "max_words": int(max_words), "books_digest": _books_digest(books_dir, text.books),
    }
    if single_speaker is not None:
        settings["single_speaker"] = str(single_speaker)
    elif extra_train_speakers:
        settings["extra_train_speakers"] = int(extra_train_speakers)
    if train_flite_share is not None:
        settings["train_flite_share"] = float(train_flite_share)
    return MiniPlan(settings=settings, text=text, speakers=speakers, candidates={s: candidates[s] for s in SPLITS},
                    targets=targets)


# -- Synthesis -- #


def _trim_silence(audio, *, margin=0.15, floor_db=-45.0):
    """Cut leading and trailing silence down to ``margin`` seconds.

    Both engines pad their output with up to half a second of silence; keeping all of it would spend
    downstream training time on nothing. ``librosa.effects.trim`` finds the first and last 10 ms
    frames within ``-floor_db`` dB of the loudest one; audio that never rises above 1e-5 is all
    silence and comes back empty.
    """
    if audio.size == 0 or float(np.max(np.abs(audio))) < 1e-5:
        return audio[:0]
    hop = _SAMPLE_RATE // 100
    _, (start, end) = librosa.effects.trim(audio, top_db=-floor_db, ref=np.max, frame_length=hop, hop_length=hop)
    pad = int(margin * _SAMPLE_RATE)
    return audio[max(0, start - pad):min(len(audio), end + pad)]


def _synthesize(task):
    """Speak one planned utterance into its FLAC; runs in a worker process.

    Args:
        task: (Speaker, str text, str flac path).

    Returns:
        (float seconds, None, float cpu) on success, or (0.0, str reason, float cpu) after ``_ATTEMPTS``
        failed tries; ``cpu`` is the CPU time spent, engine runs included (the workers of a
        forkserver pool are not children of the caller, so it cannot measure them itself).
    """
    cpu_started = _cpu_seconds()
    seconds, reason = _synthesize_once(*task)
    return seconds, reason, _cpu_seconds() - cpu_started


def _synthesize_once(speaker, text, path):
    reason = "unknown"
    fd, wav = tempfile.mkstemp(suffix=".wav", prefix="speechkit-mini-")
    os.close(fd)
    try:
        for _ in range(_ATTEMPTS):
            try:
                subprocess.run(speaker.command(text, wav), check=True, capture_output=True, timeout=_SUBPROCESS_TIMEOUT)
                audio = _trim_silence(audio_io.load(wav))
            except subprocess.TimeoutExpired:
                reason = f"engine_timeout: {speaker.engine} ran over {_SUBPROCESS_TIMEOUT} s"
                continue
            except subprocess.CalledProcessError as err:
                stderr = err.stderr.decode(errors="replace").strip()[-200:]
                reason = f"engine_failed: {speaker.engine} exit {err.returncode}: {stderr}"
                continue
            except AudioError as err:
                reason = f"unreadable_output: {err}"
                continue
            if len(audio) < _MIN_SECONDS * _SAMPLE_RATE:
                reason = f"too_short: {len(audio) / _SAMPLE_RATE:.2f} s of speech after trimming silence"
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            audio_io.save(path, audio)
            return len(audio) / _SAMPLE_RATE, None
        return 0.0, reason
    finally:
        os.remove(wav)


def _check_engines(speakers):
    engines = sorted({s.engine for s in speakers})
    for engine in engines:
        if shutil.which(engine) is None:
            raise SynthesisError(f"the speech engine {engine!r} is not on PATH; {_INSTALL_HINT}")
    flite_voices = sorted({s.voice for s in speakers if s.engine == "flite"})
    if flite_voices:
        listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=False).stdout.split()
        missing = [v for v in flite_voices if v not in listed]
        if missing:
            raise SynthesisError(
                f"flite lacks the voice(s) {missing} (`flite -lv` lists {listed[2:]}); {_INSTALL_HINT}")


def _existing_duration(path):
    try:
        meta = sf.info(path)
    except (sf.LibsndfileError, RuntimeError):
        return None
    if meta.samplerate != _SAMPLE_RATE or meta.frames <= 0:
        return None
    return meta.frames / meta.samplerate


def _prefix(items, durations, failures, target):
    """The shortest prefix of ``items`` whose measured audio reaches ``target`` seconds.

    Returns:
        (int end or None, float seconds): ``end`` is None while an unsynthesised item lies before the
        target is reached; ``seconds`` is the audio in ``items[:end]`` (or what is measured so far).
    """
    total = 0.0
    for i, item in enumerate(items):
        if item.id in failures:
            continue
        if item.id not in durations:
            return None, total
        total += durations[item.id]
        if total >= target:
            return i + 1, total
    return len(items), total


def _next_round(items, durations, failures, target):
    """The next items to synthesise: the pending ones in the shortest prefix expected to reach ``target``.

    Done items count with their measured seconds and pending ones with their estimate, scaled by the
    measured-to-estimated ratio so far. The first round aims 3 % short, because an extra round costs
    less than synthesising audio that the prefix then leaves out; later rounds aim 2 % long.
    """
    done = [it for it in items if it.id in durations]
    ratio = sum(durations[it.id] for it in done) / sum(it.estimate for it in done) if done else 1.0
    scale = ratio * (1.03 if not done and not failures else 0.98)
    batch, total = [], 0.0
    for item in items:
        if total >= target:
            break
        if item.id in failures:
            continue
        if item.id in durations:
            total += durations[item.id]
        else:
            batch.append(item)
            total += item.estimate * scale
    return batch


_OUR_FLAC = re.compile(r"^\d+-\d+-\d{4}\.flac$")
_OUR_TRANS = re.compile(r"^\d+-\d+\.trans\.txt$")


def _clean_tree(out_dir, keep):
    """Delete partial writes, and corpus files that the plan no longer holds; return how many files went."""
    removed = 0
    for split in SPLITS:
        for root, _, files in os.walk(os.path.join(out_dir, split), topdown=False):
            for name in files:
                path = os.path.join(root, name)
                partial = ".tmp." in name and (name.startswith(tuple("0123456789")))
                if partial or ((_OUR_FLAC.match(name) or _OUR_TRANS.match(name)) and path not in keep):
                    os.remove(path)
                    removed += 1
            if root != os.path.join(out_dir, split) and not os.listdir(root):
                os.rmdir(root)
    return removed


def _open_corpus(out_dir, settings):
    """Refuse a folder synthesised with other settings, since its FLAC files would be reused as is."""
    path = os.path.join(out_dir, "corpus.json")
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                old = json.load(f).get("settings")
        except (OSError, ValueError, AttributeError) as err:
            raise SynthesisError(f"{path}: unreadable ({err}); delete it or choose another output folder") from None
        if old != settings:
            changed = sorted(k for k in set(old or {}) | set(settings) if (old or {}).get(k) != settings.get(k))
            raise SynthesisError(f"{out_dir}: holds a mini corpus made with other settings "
                                 f"(changed: {', '.join(changed)}); "
                                 "choose another output folder or delete this one")
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_text(path, json.dumps({"settings": settings, "complete": False}, indent=2) + "\n")


def _run_rounds(plan, out_dir, durations, failures, jobs, cpu_seconds):
    """Synthesise in rounds until each split's prefix reaches its target; return the count synthesised.

    ``cpu_seconds`` is a one-element list that accumulates the CPU time the syntheses took.
    """
    speakers = {s.id: s for s in plan.speakers}
    synthesized = 0
    pool = None
    if jobs > 1:
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=jobs,
                                                      mp_context=multiprocessing.get_context("forkserver"))
    try:
        with tqdm(total=0, desc="synth-mini", unit="utt", mininterval=1.0) as bar:
            while True:
                batch = []
                for split in SPLITS:
                    items, target = plan.candidates[split], plan.targets[split]
                    end, seconds = _prefix(items, durations, failures, target)
                    if end is not None and seconds >= target:
                        continue
                    more = _next_round(items, durations, failures, target)
                    if not more:
                        reasons = collections.Counter(r.split(":")[0] for r in failures.values())
                        raise SynthesisError(f"{out_dir}: ran out of {split} sentences at {seconds / 60:.1f} of "
                                             f"{target / 60:.1f} minutes; {len(failures)} synthesis failures "
                                             f"{dict(reasons)}")
                    batch += more
                if not batch:
                    return synthesized
                bar.total += len(batch)
                bar.refresh()
                tasks = [(speakers[it.speaker], it.text, os.path.join(out_dir, it.path)) for it in batch]
                if pool is not None:
                    futures = {pool.submit(_synthesize, task): item for task, item in zip(tasks, batch)}
                    results = ((futures[f], f.result()) for f in concurrent.futures.as_completed(futures))
                else:
                    results = ((item, _synthesize(task)) for task, item in zip(tasks, batch))
                for item, (seconds, reason, cpu) in results:
                    cpu_seconds[0] += cpu
                    if reason is None:
                        durations[item.id] = seconds
                        synthesized += 1
                    else:
                        failures[item.id] = reason
                        logger.warning("%s (%r): skipped after %d tries: %s", item.path, item.text, _ATTEMPTS, reason)
                    bar.update()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def synth_mini(out_dir, *, seed=0, books_dir=DEFAULT_BOOKS_DIR, train_hours=1.0, dev_minutes=10.0, test_minutes=10.0,
               jobs=None, train_speakers=40, dev_speakers=8, test_speakers=8, flite_fraction=0.25, min_words=3,
               max_words=20, extra_train_speakers=0, single_speaker=None, train_flite_share=None, manifests=True):
    """Synthesise the mini corpus into ``out_dir`` in LibriSpeech layout, resuming what exists.

    Writes ``{train,dev,test}/<spk>/<chapter>/<spk>-<chapter>-<nnnn>.flac`` (16 kHz, 16-bit) with one
    ``<spk>-<chapter>.trans.txt`` per folder, ``speakers.tsv``, ``lm_text.txt`` (every normalised book
    sentence except the dev and test ones), ``corpus.json`` (settings, counts, durations, failures)
    and, with ``manifests``, ``{train,dev,test}.jsonl`` through ``import_librispeech``. See
    ``plan_mini`` for how the plan is made; each split is the shortest prefix of its plan whose
    measured audio reaches the target, synthesised in parallel rounds.

    Args:
        out_dir: str, the corpus folder (created if needed). A folder made with other settings is refused.
        seed, books_dir, train_hours, dev_minutes, test_minutes, train_speakers, dev_speakers,
            test_speakers, flite_fraction, min_words, max_words, extra_train_speakers, single_speaker,
            train_flite_share: the plan settings, see ``plan_mini``.
        jobs: int >= 1, parallel synthesis processes; None uses every CPU.
        manifests: bool, also write the JSONL manifests.

    Returns:
        dict, the content of ``corpus.json``.

    Raises:
        SynthesisError: an engine or flite voice is missing, the folder holds other settings, or so
            many sentences fail that a split cannot reach its target. Single failures are retried,
            then skipped, logged and counted in ``corpus.json``.
    """
    started, cpu_started = time.time(), _cpu_seconds()
    jobs = (os.cpu_count() or 1) if jobs is None else int(jobs)
    if jobs < 1:
        raise SynthesisError(f"jobs must be >= 1, received {jobs}")
    plan = plan_mini(books_dir, seed=seed, train_hours=train_hours, dev_minutes=dev_minutes, test_minutes=test_minutes,
                     train_speakers=train_speakers, dev_speakers=dev_speakers, test_speakers=test_speakers,
                     flite_fraction=flite_fraction, min_words=min_words, max_words=max_words,
                     extra_train_speakers=extra_train_speakers, single_speaker=single_speaker,
                     train_flite_share=train_flite_share)
    _check_engines(plan.speakers)
    _open_corpus(out_dir, plan.settings)
    _clean_tree(out_dir, keep={os.path.join(out_dir, it.path) for items in plan.candidates.values() for it in items})
    durations, failures = {}, {}
    for items in plan.candidates.values():
        for item in items:
            path = os.path.join(out_dir, item.path)
            if os.path.exists(path):
                seconds = _existing_duration(path)
                if seconds is None:
                    logger.warning("%s: unreadable or not 16 kHz; synthesising it again", path)
                    os.remove(path)
                else:
                    durations[item.id] = seconds
    existing = len(durations)
    worker_cpu = [0.0]
    synthesized = _run_rounds(plan, out_dir, durations, failures, jobs, worker_cpu)

    final = {}
    for split in SPLITS:
        end, _ = _prefix(plan.candidates[split], durations, failures, plan.targets[split])
        final[split] = [it for it in plan.candidates[split][:end] if it.id in durations]
    keep = {os.path.join(out_dir, it.path) for items in final.values() for it in items}
    by_folder = collections.defaultdict(list)
    for items in final.values():
        for it in items:
            by_folder[os.path.dirname(it.path), f"{it.speaker}-{it.chapter}"].append(it)
    for (folder, name), items in by_folder.items():
        trans = os.path.join(out_dir, folder, f"{name}.trans.txt")
        keep.add(trans)
        atomic_write_text(trans, "".join(f"{it.id} {it.text}\n" for it in sorted(items, key=lambda it: it.id)))
    removed = _clean_tree(out_dir, keep)

    stats = collections.defaultdict(lambda: [0, 0.0])
    for items in final.values():
        for it in items:
            stats[it.speaker][0] += 1
            stats[it.speaker][1] += durations[it.id]
    _write_speakers_tsv(os.path.join(out_dir, "speakers.tsv"), plan.speakers, stats)
    held_out = {it.text for split in ("dev", "test") for it in final[split]}
    lm_lines = [s for s in plan.text.sentences if s not in held_out]
    atomic_write_text(os.path.join(out_dir, "lm_text.txt"), "".join(s + "\n" for s in lm_lines))

    summary = {
        "settings": plan.settings,
        "complete": True,
        "books": {str(i): name for i, name in enumerate(plan.text.books, 1)},
        "splits": {},
        "failures": {"count": len(failures),
                     "by_reason": dict(collections.Counter(r.split(":")[0] for r in failures.values())),
                     "items": {k: failures[k] for k in sorted(failures)}},
        "lm_text": {"sentences": len(lm_lines), "held_out_sentences": len(held_out)},
    }
    for split in SPLITS:
        seconds = [durations[it.id] for it in final[split]]
        summary["splits"][split] = {
            "utterances": len(seconds), "speakers": len({it.speaker for it in final[split]}),
            "seconds": round(sum(seconds), 2), "hours": round(sum(seconds) / 3600, 4),
            "mean_seconds": round(float(np.mean(seconds)), 3) if seconds else 0.0,
            "target_seconds": plan.targets[split],
        }
        logger.info("%s: %d utterances, %d speakers, %.1f min (mean %.2f s)", split, len(seconds),
                    summary["splits"][split]["speakers"], sum(seconds) / 60, summary["splits"][split]["mean_seconds"])
    if manifests:
        for split in SPLITS:
            _, report = import_librispeech(os.path.join(out_dir, split), os.path.join(out_dir, f"{split}.jsonl"))
            if report.total:
                logger.warning("%s: the importer skipped %s", split, report.summary())
    summary["last_run"] = {"synthesized": synthesized, "existing": existing, "removed_files": removed,
                           "failed": len(failures), "jobs": jobs, "wall_seconds": round(time.time() - started, 1),
                           "cpu_seconds": round(_cpu_seconds() - cpu_started + (worker_cpu[0] if jobs > 1 else 0.0), 1)}
    atomic_write_text(os.path.join(out_dir, "corpus.json"), json.dumps(summary, indent=2) + "\n")
    logger.info("%s: synthesised %d, reused %d, removed %d, failed %d in %.0f s (%.0f s CPU)", out_dir, synthesized,
                existing, removed, len(failures), summary["last_run"]["wall_seconds"],
                summary["last_run"]["cpu_seconds"])
    return summary


def _cpu_seconds():
    """CPU time of this process and of its children that have finished (the engines it ran)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
