"""Pitch features from the mel: the period of a voiced frame, no peak in noise, the same in a graph."""

import numpy as np
import pytest
import tensorflow as tf
from _tones import voiced

from speechkit.frontend import FrontendConfig, log_mel
from speechkit.vocoder.pitch import MAX_PITCH_HZ, MIN_PITCH_HZ, pitch_features, pitch_lags

FRONTEND = FrontendConfig(kind="mel", normalize=False)
SR = FRONTEND.sample_rate
COUNT = 48


def test_lags_are_distinct_and_cover_the_pitch_range():
    lags = pitch_lags(COUNT, SR)
    assert len(lags) == COUNT and np.all(np.diff(lags) > 0)
    assert lags[0] == round(SR / MAX_PITCH_HZ) and lags[-1] == round(SR / MIN_PITCH_HZ)
    with pytest.raises(ValueError, match="distinct"):
        pitch_lags(1000, SR)


@pytest.mark.parametrize("f0", [95.0, 130.0, 180.0, 240.0, 330.0])
def test_the_strongest_lag_is_the_period(f0):
    features = pitch_features(log_mel(voiced(f0), config=FRONTEND), frontend=FRONTEND, count=COUNT).numpy()
    assert features.shape == (1 + int(SR * 0.5) // FRONTEND.hop_length, COUNT) and features.dtype == np.float32
    middle = features[5:-5]
    assert np.all(np.abs(middle) <= 1.0 + 1e-5)
    best = pitch_lags(COUNT, SR)[np.argmax(middle, axis=-1)]
    cents = 1200 * np.abs(np.log2(best * f0 / SR))
    assert np.median(cents) < 50 and np.all(cents < 100)
    assert np.median(middle.max(axis=-1)) > 0.5


def test_noise_shows_no_period():
    noise = np.random.default_rng(0).standard_normal(SR // 2).astype(np.float32) * 0.1
    features = pitch_features(log_mel(noise, config=FRONTEND), frontend=FRONTEND, count=COUNT).numpy()
    assert np.median(features[5:-5].max(axis=-1)) < 0.2


def test_graph_with_unknown_batch_and_frames_matches_eager():
    mels = tf.stack([log_mel(voiced(120.0), config=FRONTEND), log_mel(voiced(260.0), config=FRONTEND)])
    graph = tf.function(lambda m: pitch_features(m, frontend=FRONTEND, count=COUNT),
                        input_signature=[tf.TensorSpec([None, None, FRONTEND.n_mels], tf.float32)])
    np.testing.assert_allclose(graph(mels).numpy(), pitch_features(mels, frontend=FRONTEND, count=COUNT).numpy(),
                               rtol=0, atol=1e-5)
    small = FrontendConfig(kind="mel", normalize=False, mel_window_ms=25.0, mel_fft_length=512)
    with pytest.raises(ValueError, match="mel_fft_length"):
        pitch_features(log_mel(voiced(120.0), config=small), frontend=small, count=COUNT)
