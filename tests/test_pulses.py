"""The pulse-train input: free pulses one mel-implied period apart, aligned pulses on the residual's peaks."""

import numpy as np
import tensorflow as tf
from _tones import voiced

from speechkit.frontend import FrontendConfig, log_mel
from speechkit.vocoder.pulses import PULSE_FEATURES, aligned_pulses, free_pulses, implied_pitch, sample_frames

FRONTEND = FrontendConfig(kind="mel", normalize=False)
SR, HOP = FRONTEND.sample_rate, FRONTEND.hop_length
CONTEXT = 2


def _conditioning_mel(audio):
    pad = CONTEXT * HOP
    return log_mel(np.pad(audio, (pad, pad))[np.newaxis], config=FRONTEND)


def test_free_pulses_fall_one_period_apart_in_a_voiced_tone():
    f0 = 160.0
    audio = voiced(f0)
    features = free_pulses(_conditioning_mel(audio), frontend=FRONTEND, context=CONTEXT,
                           num_samples=len(audio)).numpy()[0]
    assert features.shape == (len(audio), PULSE_FEATURES) and features.dtype == np.float32
    middle = features[1000:-1000]
    assert np.median(middle[:, 3]) > 0.9
    spacing = np.diff(np.flatnonzero(middle[:, 0] > 0.5))
    assert len(spacing) > 30 and np.all(np.abs(spacing - SR / f0) <= 2)
    # The phase turns once per pulse: just past zero at the pulse, a full turn of sine and cosine between.
    np.testing.assert_allclose(np.hypot(middle[:, 1], middle[:, 2]), middle[:, 3], atol=1e-4)
    at_pulses = middle[middle[:, 0] > 0.5]
    assert np.all(at_pulses[:, 2] > 0.95 * at_pulses[:, 3])


def test_noise_gives_no_pulses():
    noise = np.random.default_rng(0).standard_normal(SR // 2).astype(np.float32) * 0.1
    features = free_pulses(_conditioning_mel(noise), frontend=FRONTEND, context=CONTEXT).numpy()[0]
    assert features.shape == ((1 + len(noise) // HOP) * HOP, PULSE_FEATURES)  # as the upsampler gives
    assert np.median(features[1000:-1000, 3]) < 0.05
    assert np.abs(features[1000:-1000]).mean() < 0.05


def test_free_pulses_in_a_graph_with_unknown_shapes_match_eager():
    mel = tf.concat([_conditioning_mel(voiced(120.0)), _conditioning_mel(voiced(250.0))], axis=0)
    graph = tf.function(lambda m: free_pulses(m, frontend=FRONTEND, context=CONTEXT),
                        input_signature=[tf.TensorSpec([None, None, FRONTEND.n_mels], tf.float32)])
    np.testing.assert_allclose(graph(mel).numpy(), free_pulses(mel, frontend=FRONTEND, context=CONTEXT).numpy(),
                               atol=1e-5)


def test_implied_pitch_reads_the_tones_period():
    for f0 in (110.0, 200.0, 320.0):
        period, voicing = implied_pitch(log_mel(voiced(f0), config=FRONTEND), frontend=FRONTEND)
        cents = 1200 * np.abs(np.log2(np.median(period.numpy()[5:-5]) * f0 / SR))
        assert cents < 50 and np.median(voicing.numpy()[5:-5]) > 0.9


def test_sample_frames_name_the_frame_each_sample_is_centred_in():
    index = sample_frames(5 * HOP, hop=HOP, context=CONTEXT, frames=CONTEXT + 4).numpy()
    assert index[0] == CONTEXT and index[HOP // 2 - 1] == CONTEXT and index[HOP // 2] == CONTEXT + 1
    assert index[-1] == CONTEXT + 3


def test_aligned_pulses_sit_on_the_residual_peaks_of_each_voiced_stretch():
    rng = np.random.default_rng(1)
    n, period = 4000, 100.0
    truth = [150]
    while truth[-1] + period * 1.1 < 1800:
        truth.append(truth[-1] + int(period + rng.integers(-8, 9)))
    second = list(range(2600, 3900, 90))
    residual = 0.05 * rng.standard_normal(n)
    residual[truth] -= 1.0
    residual[second] += 0.8
    voicing = np.zeros(n)
    voicing[100:1830], voicing[2550:3950] = 1.0, 0.6
    periods = np.where(np.arange(n) < 2200, period, 92.0)
    features = aligned_pulses(residual, periods, voicing)
    assert features.shape == (n, PULSE_FEATURES) and features.dtype == np.float32
    np.testing.assert_array_equal(np.flatnonzero(features[:, 0]), truth + second)
    np.testing.assert_allclose(features[second, 0], 0.6)
    unvoiced = np.r_[:100, 1830:2550, 3950:n]
    assert not features[unvoiced].any()
    # The phase is zero on each pulse and turns evenly to the next one.
    angle = np.angle(features[100:1830, 2] + 1j * features[100:1830, 1]) % (2 * np.pi)
    a, b = truth[3] - 100, truth[4] - 100
    np.testing.assert_allclose(angle[a], 0.0, atol=1e-5)
    np.testing.assert_allclose(np.diff(angle[a:b]), 2 * np.pi / (b - a), atol=1e-4)
