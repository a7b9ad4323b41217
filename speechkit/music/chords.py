"""Triad labels and a chroma template-matching chord recogniser.

Labels follow the MIREX/Harte syntax ``<root>:<quality>`` with sharps (``C:maj``, ``F#:min``,
``A#:dim``, ``G#:aug``): 12 roots times four qualities give the 48 labels of ``LABELS``, in
quality-major order (index ``12 * quality + root``), the order of the triads corpus.

Recognition follows the classic template approach (Fujishima 1999, "Realtime chord recognition of
musical sound"; Harte and Sandler 2005): a constant-Q chromagram (``librosa.feature.chroma_cqt``) is
averaged over the clip's sounding frames into one 12-bin pitch-class profile, and the chord whose
template has the highest cosine similarity wins. Templates carry the first harmonics of each chord
tone with geometrically decaying weights (Gomez 2006), since a piano note also lights the chroma bins
of its twelfth (third harmonic) and its major seventeenth (fifth harmonic). The decay is 0.3 per
harmonic: on the rendered triads corpus (192 training files), binary templates and s = 0.3 both name
every chord, while Gomez's s = 0.6 mistakes 13% of them (mostly a major triad for its relative minor).

An augmented triad divides the octave into equal thirds, so ``C:aug``, ``E:aug`` and ``G#:aug`` hold the
same pitch classes; once inverted, nothing in the sound tells their roots apart. ``same_chord``
therefore compares pitch-class sets: 36 distinguishable major/minor/diminished triads plus 4
augmented sets. Chance of naming a requested chord by a uniform guess over the 48 labels is then
1/48 for major, minor and diminished and 3/48 for augmented triads (3.1% on average over all 48).
"""

import warnings

import librosa
import numpy as np

from speechkit.errors import ConfigError

__all__ = ["ROOTS", "QUALITIES", "LABELS", "parse_chord", "chord_label", "chord_pitch_classes", "same_chord",
           "chord_templates", "chromagram", "chord_profile", "recognize_chord", "chance_accuracy"]

ROOTS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
QUALITIES = {"maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "aug": (0, 4, 8)}
LABELS = tuple(f"{root}:{quality}" for quality in QUALITIES for root in ROOTS)

_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B", "Fb": "E", "E#": "F", "B#": "C"}
_HARMONICS = ((0, 1.0), (7, 0.3), (4, 0.09))  # (semitones above the tone mod 12, weight): tone, 3rd, 5th harmonic
_SILENT_DB = 40.0


def parse_chord(chord):
    """Root index and quality of a chord label or label index.

    Args:
        chord: str label such as ``"C:maj"``, ``"Db:min"`` (flats are accepted) or ``"7"``, or int index
            into ``LABELS`` in [0, 48).

    Returns:
        (int root in [0, 12), str quality, one of ``QUALITIES``).

    Raises:
        ConfigError: not a triad label or index.
    """
    text = str(chord).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(LABELS):
            raise ConfigError(f"chord index {index} outside [0, {len(LABELS)})")
        text = LABELS[index]
    root, sep, quality = text.partition(":")
    root = _FLATS.get(root, root)
    if not sep or root not in ROOTS or quality not in QUALITIES:
        raise ConfigError(f"unknown chord {chord!r}: expected <root>:<quality> with a root in {list(ROOTS)} "
                          f"(or a flat) and a quality in {list(QUALITIES)}, or an index in [0, {len(LABELS)})")
    return ROOTS.index(root), quality


def chord_label(root, quality):
    """The canonical label of ``root`` (int pitch class, 0 = C) and ``quality`` (str)."""
    if quality not in QUALITIES:
        raise ConfigError(f"unknown chord quality {quality!r}; expected one of {list(QUALITIES)}")
    return f"{ROOTS[int(root) % 12]}:{quality}"


def chord_pitch_classes(chord):
    """frozenset of the chord's three pitch classes (0 = C) for a label or index."""
    root, quality = parse_chord(chord)
    return frozenset((root + step) % 12 for step in QUALITIES[quality])


def same_chord(a, b):
    """True when two labels hold the same pitch classes (equal labels, or enharmonic augmented triads)."""
    return chord_pitch_classes(a) == chord_pitch_classes(b)


def chance_accuracy(labels=LABELS):
    """Mean chance that a uniform guess over ``LABELS`` counts as ``same_chord`` for each requested label."""
    sets = [chord_pitch_classes(label) for label in LABELS]
    return float(np.mean([sum(s == chord_pitch_classes(label) for s in sets) / len(LABELS) for label in labels]))


def chord_templates():
    """float32 [48, 12] unit-norm chroma templates for ``LABELS`` (chord tones plus decaying harmonics)."""
    templates = np.zeros([len(LABELS), 12], np.float32)
    for i, label in enumerate(LABELS):
        root, quality = parse_chord(label)
        for step in QUALITIES[quality]:
            for offset, weight in _HARMONICS:
                templates[i, (root + step + offset) % 12] += weight
    return templates / np.linalg.norm(templates, axis=1, keepdims=True)


_TEMPLATES = chord_templates()


def chromagram(audio, *, sample_rate, hop_length=512):
    """Constant-Q chromagram.

    Args:
        audio: float32 [samples] in [-1, 1].
        sample_rate: int, Hz.
        hop_length: int > 0, samples between frames.

    Returns:
        float32 [12, frames], each frame scaled to a maximum of 1 (``librosa.feature.chroma_cqt``); row 0 is C.
    """
    audio = np.asarray(audio, np.float32)
    if len(audio) < hop_length:
        audio = np.pad(audio, (0, hop_length - len(audio)))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        return librosa.feature.chroma_cqt(y=audio, sr=sample_rate, hop_length=hop_length).astype(np.float32)


def chord_profile(audio, *, sample_rate, hop_length=512):
    """Pitch-class profile of a clip: the chromagram averaged over its sounding frames, weighted by energy.

    Frames more than 40 dB below the loudest one (silence, the release tail) are left out, so a
    clip's profile does not depend on how much silence surrounds the chord.

    Args:
        audio: float32 [samples] in [-1, 1].
        sample_rate: int, Hz.
        hop_length: int > 0.

    Returns:
        float32 [12] summing to 1 (uniform for digital silence).
    """
    chroma = chromagram(audio, sample_rate=sample_rate, hop_length=hop_length)
    audio = np.asarray(audio, np.float32)
    rms = librosa.feature.rms(y=np.pad(audio, (0, max(0, hop_length - len(audio)))), hop_length=hop_length)[0]
    frames = min(len(rms), chroma.shape[1])
    rms, chroma = rms[:frames], chroma[:, :frames]
    if frames == 0 or rms.max() <= 0:
        return np.full([12], 1.0 / 12, np.float32)
    weight = np.where(rms >= rms.max() * 10.0 ** (-_SILENT_DB / 20.0), rms, 0.0)
    profile = chroma @ weight
    total = profile.sum()
    return (profile / total if total > 0 else np.full([12], 1.0 / 12)).astype(np.float32)


def recognize_chord(profile):
    """Best-matching triad for a pitch-class profile.

    Args:
        profile: float [12] pitch-class profile (``chord_profile``), any non-negative scale.

    Returns:
        (str label from ``LABELS``, float32 [48] cosine similarity to every template).
    """
    profile = np.asarray(profile, np.float32)
    if profile.shape != (12,):
        raise ConfigError(f"a pitch-class profile has 12 bins, received shape {profile.shape}")
    norm = np.linalg.norm(profile)
    scores = _TEMPLATES @ (profile / norm if norm > 0 else profile)
    return LABELS[int(np.argmax(scores))], scores
