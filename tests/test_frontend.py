import dataclasses

import librosa
import numpy as np
import pytest

from speechkit import frontend as fe
from speechkit.errors import ConfigError

CFG = fe.FrontendConfig()

# Tolerances, in natural-log units of power:
# - spectrogram: same Hann window, framing and FFT as librosa, so only float32 rounding differs (< 1e-3).
# - mel: tf.signal builds triangles in the mel domain and librosa (htk=True, norm=None) in the Hz
#   domain; on this config the filterbanks differ by < 0.004 and the log-mels by < 0.05 (about 0.2 dB).
SPEC_TOL = 1e-3
MEL_TOL = 0.05


def test_default_geometry():
    assert CFG.frame_length == 320 and CFG.hop_length == 160 and CFG.num_spectrogram_bins == 161
    assert CFG.num_classes == 256


def test_log_spectrogram_matches_librosa(tone):
    ours = fe.log_spectrogram(tone, config=CFG).numpy()
    ref = np.abs(librosa.stft(tone, n_fft=320, hop_length=160, window="hann", center=True, pad_mode="constant")) ** 2
    ref = np.log(ref.T + CFG.log_floor)
    assert ours.shape == ref.shape == (1 + tone.size // 160, 161)
    np.testing.assert_allclose(ours, ref, atol=SPEC_TOL)


def test_log_mel_matches_librosa(tone):
    ours = fe.log_mel(tone, config=CFG).numpy()
    power = np.abs(librosa.stft(tone, n_fft=1024, win_length=800, hop_length=160, window="hann", center=True,
                                pad_mode="constant")) ** 2
    basis = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0, htk=True, norm=None)
    ref = np.log(basis @ power + CFG.log_floor).T
    assert ours.shape == ref.shape == (1 + tone.size // 160, 80)
    np.testing.assert_allclose(ours, ref, atol=MEL_TOL)
    assert np.abs(ours - ref).mean() < 0.01


@pytest.mark.parametrize("samples", [1, 159, 160, 161, 320, 16000, 16001])
def test_frame_count(samples):
    audio = np.zeros(samples, np.float32)
    assert fe.log_spectrogram(audio, config=CFG).shape[0] == fe.num_frames(samples, CFG) == 1 + samples // 160
    assert fe.log_mel(audio, config=CFG).shape[0] == 1 + samples // 160


@pytest.mark.parametrize("kind", ["spectrogram", "mel"])
def test_batch_and_padding_invariance(tone, kind):
    cfg = dataclasses.replace(CFG, kind=kind)
    short = tone[:9000]
    batch = np.zeros((2, tone.size + 500), np.float32)
    batch[0, :tone.size] = tone
    batch[1, :short.size] = short
    feats, lengths = fe.features(batch, [tone.size, short.size], config=cfg)
    alone, alone_len = fe.features(short[None], [short.size], config=cfg)
    n = int(alone_len[0])
    assert int(lengths[1]) == n
    np.testing.assert_allclose(feats[1, :n].numpy(), alone[0].numpy(), atol=1e-4)
    assert np.all(feats[1, n:].numpy() == 0.0)


def test_normalize_ignores_padding():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, (1, 50, 4)).astype(np.float32)
    padded = np.concatenate([x, np.full((1, 30, 4), 1e6, np.float32)], axis=1)
    out = fe.normalize(padded, [50]).numpy()
    np.testing.assert_allclose(out[0, :50].mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out[0, :50].std(axis=0), 1.0, atol=1e-3)
    np.testing.assert_allclose(out[0, :50], fe.normalize(x, [50]).numpy()[0], atol=1e-5)
    assert np.all(out[0, 50:] == 0.0)


def test_mu_law_round_trip():
    x = np.linspace(-1, 1, 10001).astype(np.float32)
    classes = fe.mu_law_encode(x).numpy()
    assert classes.min() == 0 and classes.max() == 255
    assert np.all(np.diff(classes) >= 0)
    y = fe.mu_law_decode(classes).numpy()
    # 8-bit mu-law: the quantisation step is smallest near zero and about 0.03 near full scale.
    err = np.abs(y - x)
    assert err.max() < 0.035
    assert err[np.abs(x) < 0.01].max() < 1e-3
    np.testing.assert_array_equal(fe.mu_law_encode(fe.mu_law_decode(np.arange(256))).numpy(), np.arange(256))


def test_mu_law_known_values():
    # classes = round((sign(x) ln(1 + mu|x|) / ln(1 + mu) + 1) / 2 * mu), as in ibab/tensorflow-wavenet.
    x = np.array([-1.0, 0.0, 1.0, 0.5], np.float32)
    expected = np.round((np.sign(x) * np.log1p(255 * np.abs(x)) / np.log1p(255) + 1) / 2 * 255)
    np.testing.assert_array_equal(fe.mu_law_encode(x).numpy(), expected)
    assert list(fe.mu_law_encode(x).numpy()[:3]) == [0, 128, 255]


@pytest.mark.parametrize("field,value", [("hop_ms", 10.03), ("kind", "mfcc"), ("fmax", 9000.0),
                                         ("mel_fft_length", 512)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ConfigError, match=field if field != "mel_fft_length" else "mel_fft_length"):
        fe.FrontendConfig(**{field: value})


def test_config_round_trip_and_mismatch():
    assert fe.FrontendConfig.from_dict(CFG.to_dict()) == CFG
    with pytest.raises(ConfigError, match="unknown key"):
        fe.FrontendConfig.from_dict({"hop": 10})
    with pytest.raises(ConfigError, match="n_mels: 80 != 40"):
        CFG.check_matches(dataclasses.replace(CFG, n_mels=40), source="run/frontend.yaml")


# -- Fixed (causal) normalisation -- #

def test_configs_without_the_normalisation_fields_load_as_before():
    old = {k: v for k, v in CFG.to_dict().items() if k not in ("normalization", "feature_mean", "feature_std")}
    loaded = fe.FrontendConfig.from_dict(old)
    assert loaded == CFG and loaded.normalization == "utterance" and not loaded.causal


@pytest.mark.parametrize("changes", [
    {"normalization": "running"},
    {"feature_mean": (0.0,) * 80, "feature_std": (1.0,) * 80},  # statistics without normalization: fixed
    {"normalization": "fixed", "feature_mean": (0.0,) * 80, "feature_std": (1.0,) * 79},
    {"normalization": "fixed", "feature_mean": (0.0,) * 80, "feature_std": (0.0,) * 80},
])
def test_fixed_normalisation_rejects_bad_statistics(changes):
    with pytest.raises(ConfigError):
        fe.FrontendConfig(kind="mel", **changes)


def test_fixed_normalisation_is_frame_wise_and_uses_the_statistics(tone):
    mean, std = np.linspace(-8, 2, 80), np.linspace(1, 3, 80)
    cfg = fe.FrontendConfig(kind="mel").with_statistics(mean, std)
    assert cfg.causal and not cfg.needs_statistics
    feats, _ = fe.features(tone[None], [tone.size], config=cfg)
    raw = fe.log_mel(tone, config=cfg).numpy()
    np.testing.assert_allclose(feats[0].numpy(), (raw - mean) / std, rtol=1e-5, atol=1e-5)
    # The probe: changing the last 0.1 s of the audio must not move frame 0 (it moved by 1.85 under
    # per-utterance normalisation).
    changed = tone.copy()
    changed[-1600:] = 0.9
    moved, _ = fe.features(changed[None], [tone.size], config=cfg)
    np.testing.assert_array_equal(moved[0, :(tone.size - 1600 - 400) // 160].numpy(),
                                  feats[0, :(tone.size - 1600 - 400) // 160].numpy())
    per_utterance, _ = fe.features(tone[None], [tone.size], config=fe.FrontendConfig(kind="mel"))
    per_utterance_moved, _ = fe.features(changed[None], [tone.size], config=fe.FrontendConfig(kind="mel"))
    assert np.abs(per_utterance_moved[0, 0].numpy() - per_utterance[0, 0].numpy()).max() > 0.1


def test_fixed_normalisation_without_statistics_says_how_to_get_them(tone):
    cfg = fe.FrontendConfig(kind="mel", normalization="fixed")
    assert cfg.needs_statistics
    with pytest.raises(ConfigError, match="feature_statistics"):
        fe.features(tone[None], [tone.size], config=cfg)


def test_feature_statistics_are_the_mean_and_std_over_all_frames(tone):
    parts = [tone[:5000], tone[5000:], 0.5 * tone]
    mean, std = fe.feature_statistics(parts, config=CFG)
    frames = np.concatenate([fe.raw_features(p, config=CFG).numpy() for p in parts]).astype(np.float64)
    np.testing.assert_allclose(mean, frames.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(std, frames.std(axis=0), rtol=1e-6)
    with pytest.raises(ConfigError):
        fe.feature_statistics([], config=CFG)


@pytest.mark.parametrize("kind", ["spectrogram", "mel"])
def test_framed_features_of_a_slice_equal_the_whole_utterance_frames(tone, kind):
    cfg = fe.FrontendConfig(kind=kind)
    whole = fe.raw_features(tone, config=cfg).numpy()
    window, hop = cfg.analysis_window, cfg.hop_length
    padded = np.pad(tone, (window // 2, window // 2 + window % 2))
    first, count = 7, 5  # frames 7..11 read padded[7 * hop : 11 * hop + window]
    piece = padded[first * hop:(first + count - 1) * hop + window]
    got = fe.framed_features(piece[None], config=cfg).numpy()[0]
    np.testing.assert_allclose(got, whole[first:first + count], atol=1e-4)
