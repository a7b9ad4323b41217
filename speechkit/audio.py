"""Audio file I/O: load any soundfile-readable file as 16 kHz mono float32, and save audio."""

import os
import struct

import numpy as np
import soundfile as sf
import soxr

from speechkit.errors import AudioError

__all__ = ["SAMPLE_RATE", "load", "save", "resample", "info", "verify", "valid_audio"]

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


def verify(path, *, block_seconds=30.0):
    """Decode a whole file, block by block, and return ``(duration_seconds, sample_rate, channels)``.

    ``info`` reads only the header, so a FLAC whose frames are damaged, or whose stream ends early,
    passes it and fails later, in the middle of a training epoch. This decodes every sample (in
    bounded memory) and compares the decoded length with the header's, so importers can skip such
    files up front.

    Raises:
        AudioError: naming ``path``: missing, unreadable, undecodable, truncated, empty, or
            holding NaN or Inf samples.
    """
    _, rate, channels = info(path)
    decoded = 0
    try:
        with sf.SoundFile(os.fspath(path)) as f:
            expected = f.frames
            for block in f.blocks(blocksize=max(1, int(block_seconds * rate)), dtype="float32", always_2d=True):
                if not np.all(np.isfinite(block)):
                    raise AudioError(f"{path}: audio contains NaN or Inf samples")
                decoded += block.shape[0]
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{path}: audio data is corrupt after {decoded / rate:.2f} s ({_reason(err)})") from None
    if decoded < expected:
        raise AudioError(f"{path}: truncated: the header announces {expected} samples, only {decoded} decode")
    return decoded / rate, rate, channels


def load(path, *, sample_rate=SAMPLE_RATE, offset=0.0, duration=None):
    """Load an audio file (or a segment of it) as mono float32 in [-1, 1] at ``sample_rate``.

    Integer PCM of any width is scaled to [-1, 1] by soundfile; several channels are averaged;
    other sample rates are converted with soxr (high quality). A segment is read by seeking, so
    long recordings can be processed window by window in bounded memory.

    Args:
        path: str or PathLike, a wav, flac, ogg or other libsndfile-readable file.
        sample_rate: int > 0, the rate to return.
        offset: float >= 0, seconds into the file where reading starts.
        duration: float > 0 or None, seconds to read (None: to the end).

    Returns:
        np.ndarray float32 [samples].

    Raises:
        AudioError: the file is missing, unreadable or corrupt, truncated, empty, or not audio, or
            the segment starts at or after its end.
    """
    _check_exists(path)
    try:
        f = sf.SoundFile(os.fspath(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{path}: not readable as audio ({_reason(err)})") from None
    with f:
        rate = f.samplerate
        start = int(round(offset * rate))
        if (offset or duration is not None) and start >= f.frames:
            raise AudioError(f"{path}: segment at {offset:.2f} s starts after the end ({f.frames / rate:.2f} s)")
        frames = -1 if duration is None else int(round(duration * rate))
        try:
            if start:
                f.seek(start)
            audio = f.read(frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(f"{path}: audio data is corrupt ({_reason(err)})") from None
    if audio.shape[0] == 0:
        raise AudioError(f"{path}: audio is empty (zero samples)")
    audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    return valid_audio(np.clip(resample(audio, rate, sample_rate), -1.0, 1.0), source=os.fspath(path))


def resample(audio, rate, sample_rate):
    """``audio`` at ``rate`` converted to ``sample_rate`` with soxr (high quality); unchanged when they agree.

    Args:
        audio: float32 [samples].
        rate, sample_rate: int > 0, Hz: the rate it has and the rate to return.

    Returns:
        np.ndarray float32 [round(samples * sample_rate / rate)].
    """
    if rate == sample_rate:
        return audio
    return soxr.resample(np.asarray(audio, np.float32), rate, sample_rate, quality="HQ").astype(np.float32)


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
    _check_riff_complete(path)


def _check_riff_complete(path):
    """Reject a RIFF/WAVE file whose data chunk is shorter than its header says.

    libsndfile silently returns the samples that are there, so a WAV cut off by a failed copy
    would otherwise be read as a complete, shorter recording whose transcript no longer matches.
    Streaming writers that leave the size unset (0 or 0xFFFFFFFF) are accepted.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if f.read(4) != b"RIFF":
            return
        f.seek(12)
        position = 12
        while position + 8 <= size:
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            position += 8
            if chunk_id == b"data":
                available = size - position
                if 0 < chunk_size < 0xFFFFFFFF and chunk_size > available:
                    raise AudioError(f"{path}: truncated WAV: the header announces {chunk_size} bytes of audio, "
                                     f"the file holds {available}")
                return
            position += chunk_size + (chunk_size & 1)
            f.seek(position)


def _reason(err):
    text = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return text.split(": ", 1)[-1] if "Error opening" in text else text
