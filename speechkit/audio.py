"""Audio file I/O: load any soundfile-readable file as 16 kHz mono float32, and save audio."""

import os

import numpy as np
import soundfile as sf
import soxr

from speechkit.errors import AudioError

__all__ = ["SAMPLE_RATE", "load", "save", "info", "valid_audio"]

SAMPLE_RATE = 16000


def valid_audio(audio, *, source="audio"):
    """Check that ``audio`` is a finite 1-D float array; return it as float32.

    Raises:
        AudioError: naming ``source`` when the array is empty, not 1-D, or holds NaN or Inf.
    """
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise AudioError(f"{source}: expected mono audio of shape [samples], received shape {audio.shape}")
    if audio.size == 0:
        raise AudioError(f"{source}: audio is empty (zero samples)")
    if not np.issubdtype(audio.dtype, np.floating):
        raise AudioError(f"{source}: expected floating-point samples, received dtype {audio.dtype}")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{source}: audio contains NaN or Inf samples")
    return audio.astype(np.float32, copy=False)


def info(path):
    """Return ``(duration_seconds, sample_rate, channels)`` without decoding the samples."""
    _check_exists(path)
    try:
        meta = sf.info(os.fspath(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{path}: not readable as audio ({_reason(err)})") from None
    if meta.frames <= 0:
        raise AudioError(f"{path}: audio is empty (zero samples)")
    return meta.frames / meta.samplerate, meta.samplerate, meta.channels


def load(path, *, sample_rate=SAMPLE_RATE):
    """Load an audio file as mono float32 in [-1, 1] at ``sample_rate``.

    Integer PCM of any width is scaled to [-1, 1] by soundfile; several channels are averaged;
    other sample rates are converted with soxr (high quality).

    Args:
        path: str or PathLike, a wav, flac, ogg or other libsndfile-readable file.
        sample_rate: int > 0, the rate to return.

    Returns:
        np.ndarray float32 [samples].

    Raises:
        AudioError: the file is missing, unreadable or corrupt, empty, or not audio.
    """
    _check_exists(path)
    try:
        audio, rate = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{path}: not readable as audio ({_reason(err)})") from None
    if audio.shape[0] == 0:
        raise AudioError(f"{path}: audio is empty (zero samples)")
    audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if rate != sample_rate:
        audio = soxr.resample(audio, rate, sample_rate, quality="HQ").astype(np.float32)
    return valid_audio(np.clip(audio, -1.0, 1.0), source=os.fspath(path))


def save(path, audio, *, sample_rate=SAMPLE_RATE, subtype=None):
    """Atomically write float audio in [-1, 1] to ``path``; the format follows the extension.

    Samples outside [-1, 1] are clipped. ``subtype`` defaults to 16-bit PCM for wav and flac.
    """
    path = os.fspath(path)
    audio = np.clip(valid_audio(audio, source=path), -1.0, 1.0)
    ext = os.path.splitext(path)[1].lstrip(".").upper() or "WAV"
    if ext not in sf.available_formats():
        raise AudioError(f"{path}: unsupported audio extension {ext!r}")
    if subtype is None and ext in ("WAV", "FLAC"):
        subtype = "PCM_16"
    tmp = f"{path}.tmp.{os.getpid()}"
    sf.write(tmp, audio, sample_rate, format=ext, subtype=subtype)
    os.replace(tmp, path)


def _check_exists(path):
    if not os.path.exists(path):
        raise AudioError(f"{path}: file does not exist")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: file is empty (zero bytes)")


def _reason(err):
    text = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return text.split(": ", 1)[-1] if "Error opening" in text else text
