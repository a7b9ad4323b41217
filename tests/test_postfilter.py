"""The mel post-filter: vocoded audio gets the log-mel it was generated from."""

import numpy as np
import pytest

from speechkit.errors import ConfigError
from speechkit.frontend import FrontendConfig, log_mel
from speechkit.vocoder.generation import Vocoder
from speechkit.vocoder.postfilter import match_mel
from speechkit.vocoder.wavenet import WaveNet, WaveNetConfig

FRONTEND = FrontendConfig(kind="mel", normalize=False)


def _vowels(seconds=0.6, seed=0):
    """A pitched, formant-shaped test signal whose envelope changes halfway (two 'vowels')."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    half = len(t) // 2
    signal = np.zeros_like(t)
    for k in range(1, 40):
        f = 140.0 * k
        amp = np.where(np.arange(len(t)) < half, np.exp(-((f - 700) / 300) ** 2), np.exp(-((f - 2300) / 400) ** 2))
        signal += (amp + 0.02) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return (0.3 * signal / np.abs(signal).max()).astype(np.float32)


def _distance(audio, target):
    """Mean |log-mel difference| over frames where the target is within 50 dB of its peak."""
    mel = log_mel(audio, config=FRONTEND).numpy()[:len(target)]
    active = target > target.max() - np.log(1e5)
    return float(np.abs(mel - target)[active].mean())


def test_match_mel_moves_noise_to_the_target_envelope():
    target_audio = _vowels()
    target = log_mel(target_audio, config=FRONTEND).numpy()
    noise = (0.1 * np.random.default_rng(1).standard_normal(len(target_audio))).astype(np.float32)
    before = _distance(noise, target)
    once = match_mel(noise, target, frontend=FRONTEND, iterations=1).numpy()
    twice = match_mel(noise, target, frontend=FRONTEND, iterations=2).numpy()
    assert once.shape == twice.shape == noise.shape
    assert _distance(once, target) < 0.5 * before
    assert _distance(twice, target) < _distance(once, target)
    np.testing.assert_array_equal(match_mel(noise, target, frontend=FRONTEND, iterations=0), noise)
    # Batched rows are filtered independently: the same as one at a time.
    batch = match_mel(np.stack([noise, target_audio]), np.stack([target, target]), frontend=FRONTEND,
                      iterations=2).numpy()
    np.testing.assert_allclose(batch[0], twice, atol=1e-5)


def test_match_mel_takes_a_mel_with_fewer_frames():
    """A TTS mel has frames * hop samples, one frame fewer than the front end makes of them: the last is repeated."""
    target_audio = _vowels(0.3)
    target = log_mel(target_audio, config=FRONTEND).numpy()[:-1]
    noise = (0.1 * np.random.default_rng(2).standard_normal(len(target) * FRONTEND.hop_length)).astype(np.float32)
    out = match_mel(noise, target, frontend=FRONTEND, iterations=2).numpy()
    assert out.shape == noise.shape
    assert _distance(out, target) < 0.6 * _distance(noise, target)


def test_vocoder_applies_the_models_postfilter():
    config = WaveNetConfig(layers_per_stack=2, stacks=1, residual_channels=8, gate_channels=8, skip_channels=8,
                           head_channels=16, cond_channels=8, lpc_order=12, lpc_normalize=True, mel_postfilter=2)
    model = WaveNet(config, FRONTEND)
    model.build()
    vocoder = Vocoder(model)
    audio = _vowels(0.3)
    target = log_mel(audio, config=FRONTEND).numpy()
    filtered = vocoder.vocode([audio], temperature=1.0)[0]
    raw = vocoder.vocode([audio], temperature=1.0, postfilter=0)[0]
    assert filtered.shape == raw.shape == audio.shape
    assert _distance(filtered, target) < 0.7 * _distance(raw, target)
    np.testing.assert_allclose(vocoder.postfiltered(raw, target), filtered, atol=1e-6)


@pytest.mark.parametrize("bad", [-1, 1.5, "2"])
def test_mel_postfilter_must_be_a_count(bad):
    with pytest.raises(ConfigError, match="mel_postfilter"):
        WaveNetConfig(mel_postfilter=bad)
    with pytest.raises(ConfigError, match="mel_postfilter"):
        WaveNetConfig(conditioning="none", mel_postfilter=2)
