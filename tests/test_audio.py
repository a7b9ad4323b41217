import numpy as np
import pytest
import soundfile as sf

from speechkit import audio
from speechkit.errors import AudioError


@pytest.mark.parametrize("ext,subtype", [("wav", "PCM_16"), ("wav", "PCM_24"), ("wav", "PCM_U8"), ("flac", "PCM_16"),
                                         ("ogg", "VORBIS")])
def test_load_formats_as_float32(tmp_path, tone, ext, subtype):
    path = tmp_path / f"x.{ext}"
    sf.write(path, tone, 16000, subtype=subtype)
    out = audio.load(path)
    assert out.dtype == np.float32 and out.shape == tone.shape
    assert np.abs(out).max() <= 1.0
    tol = {"PCM_U8": 0.02, "VORBIS": 0.1}.get(subtype, 1e-3)
    assert np.sqrt(np.mean((out - tone) ** 2)) < tol


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resamples_to_16k(tmp_path, rate):
    t = np.arange(rate) / rate
    sf.write(tmp_path / "r.wav", 0.5 * np.sin(2 * np.pi * 300 * t), rate)
    out = audio.load(tmp_path / "r.wav")
    assert abs(out.size - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 16000 / out.size - 300) < 2


def test_stereo_is_averaged(tmp_path, tone):
    stereo = np.stack([tone, np.zeros_like(tone)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 16000, subtype="FLOAT")
    np.testing.assert_allclose(audio.load(tmp_path / "s.wav"), tone / 2, atol=1e-6)


def test_save_round_trip(tmp_path, tone):
    audio.save(tmp_path / "o.flac", tone)
    np.testing.assert_allclose(audio.load(tmp_path / "o.flac"), tone, atol=1e-4)
    assert not list(tmp_path.glob("*.tmp.*"))


@pytest.mark.parametrize("case,match", [
    ("missing", "does not exist"),
    ("zero_bytes", "zero bytes"),
    ("text_as_wav", "not readable as audio"),
    ("truncated_header", "not readable as audio"),
    ("empty_audio", "zero samples"),
    ("directory", "is a directory"),
])
def test_errors_name_the_file(tmp_path, tone, case, match):
    path = tmp_path / f"{case}.wav"
    if case == "zero_bytes":
        path.write_bytes(b"")
    elif case == "text_as_wav":
        path.write_text("this is not audio\n" * 20)
    elif case == "truncated_header":
        sf.write(path, tone, 16000)
        path.write_bytes(path.read_bytes()[:20])
    elif case == "empty_audio":
        sf.write(path, np.zeros(0, np.float32), 16000)
    elif case == "directory":
        path.mkdir()
    with pytest.raises(AudioError, match=match) as err:
        audio.load(path)
    assert str(path) in str(err.value)


def test_valid_audio_rejects_nan():
    with pytest.raises(AudioError, match="NaN"):
        audio.valid_audio(np.array([0.0, np.nan], np.float32), source="buf")
