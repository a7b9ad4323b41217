"""WaveNet model: causality, cached == naive, priming, conditioning, receptive field, serialisation."""

import functools
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from speechkit.errors import ConfigError
from speechkit.frontend import FrontendConfig, log_mel
from speechkit.vocoder.wavenet import (
    WaveNet,
    WaveNetConfig,
    conditioning_mel,
    dilations,
    receptive_field,
    silence_class,
)

FRONTEND = FrontendConfig(kind="mel", normalize=False)
compact = functools.partial(WaveNetConfig, layers_per_stack=3, stacks=2, residual_channels=8, gate_channels=8,
                            skip_channels=8, head_channels=16, cond_channels=8)


def _model(seed=0, **overrides):
    """A compact WaveNet with weights large enough that every path visibly changes the output."""
    model = WaveNet(compact(**overrides), FRONTEND)
    model.build()
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(0.0, 0.4, w.shape).astype(np.float32))
    return model


def _teacher_forced(classes):
    """Network input for a sample sequence: position t holds sample t - 1 (silence at 0)."""
    return np.concatenate([np.full((classes.shape[0], 1), silence_class(FRONTEND)), classes[:, :-1]], axis=1)


def _inputs(model, classes, audio=None, speaker=None):
    inputs = {"audio": model.input_from_classes(classes)}
    if model.upsampler is not None:
        inputs["mel"] = conditioning_mel(audio, frontend=FRONTEND, context=model.config.cond_context)
    if model.speaker_embedding is not None:
        inputs["speaker"] = np.asarray(speaker, np.int32)
    return inputs


VARIANTS = [
    pytest.param(dict(conditioning="none"), id="uncond-mulaw"),
    pytest.param(dict(conditioning="mel", num_speakers=3), id="mel-speaker"),
    pytest.param(dict(conditioning="mel", input_type="raw", kernel_size=3), id="mel-raw-k3"),
]


def test_receptive_field_known_values():
    assert receptive_field(layers_per_stack=10, stacks=2) == (2047, 2047 / 16.0)
    assert receptive_field(layers_per_stack=3, stacks=2, kernel_size=3, sample_rate=8000).samples == 1 + 2 * 14
    assert dilations(layers_per_stack=3, stacks=2) == [1, 2, 4, 1, 2, 4]
    model = _model()
    assert model.receptive_field().samples == 15


@pytest.mark.parametrize("overrides", VARIANTS)
def test_causality_future_never_changes_past(overrides):
    model = _model(**overrides)
    rng = np.random.default_rng(1)
    n, cut = 300, 150
    classes = rng.integers(0, 256, (1, n))
    audio = rng.uniform(-0.5, 0.5, (1, n)).astype(np.float32)
    base = model(_inputs(model, _teacher_forced(classes), audio, [1])).numpy()
    changed = classes.copy()
    changed[:, cut:] = (changed[:, cut:] + rng.integers(1, 256, (1, n - cut))) % 256
    after = model(_inputs(model, _teacher_forced(changed), audio, [1])).numpy()
    np.testing.assert_array_equal(base[:, :cut + 1], after[:, :cut + 1])
    assert np.abs(base[:, cut + 1:] - after[:, cut + 1:]).max() > 1e-2


def test_receptive_field_is_exact():
    model = _model(conditioning="none")
    rf = model.receptive_field().samples
    rng = np.random.default_rng(2)
    classes = rng.integers(0, 256, (1, 100))
    base = model(_inputs(model, _teacher_forced(classes))).numpy()
    out = 60
    for pos, expect_change in ((out - 1, True), (out - rf, True), (out - rf - 1, False), (out, False)):
        changed = classes.copy()
        changed[0, pos] = (changed[0, pos] + 97) % 256
        diff = np.abs(model(_inputs(model, _teacher_forced(changed))).numpy()[0, out] - base[0, out]).max()
        assert (diff > 1e-4) == expect_change, (pos, diff)


@pytest.mark.parametrize("overrides", VARIANTS)
def test_cached_steps_equal_full_pass(overrides):
    model = _model(**overrides)
    rng = np.random.default_rng(3)
    n, batch = 200, 2
    classes = rng.integers(0, 256, (batch, n))
    audio = rng.uniform(-0.5, 0.5, (batch, n)).astype(np.float32)
    inputs = _inputs(model, classes, audio, [0, 2])
    full = model(inputs).numpy()
    cond = model.upsample(inputs["mel"], n) if model.upsampler is not None else None
    spk = model.speaker_vector(inputs["speaker"]) if model.speaker_embedding is not None else None
    bias = model.conditioning_bias(cond, spk)
    state = model.initial_state(batch)
    step = tf.function(model.step)
    for t in range(n):
        bias_t = None if bias is None else bias[:, t if bias.shape[1] > 1 else 0]
        logits, state = step(inputs["audio"][:, t], state, bias_t)
        np.testing.assert_allclose(logits.numpy(), full[:, t], atol=1e-4, rtol=0)
    assert full.std() > 0.5


@pytest.mark.parametrize("overrides", VARIANTS[:2])
def test_priming_state_and_first_generated_logits(overrides):
    model = _model(**overrides)
    rng = np.random.default_rng(4)
    n, prime = 160, 97
    classes = rng.integers(0, 256, (1, n))
    audio = rng.uniform(-0.5, 0.5, (1, n)).astype(np.float32)
    full_inputs = _inputs(model, classes, audio, [1])
    full = model(full_inputs).numpy()
    prime_inputs = dict(full_inputs, audio=full_inputs["audio"][:, :prime])
    logits, primed = model.prime(prime_inputs)
    np.testing.assert_allclose(logits.numpy(), full[:, :prime], atol=1e-5)
    cond = model.upsample(full_inputs["mel"], n) if model.upsampler is not None else None
    spk = model.speaker_vector(full_inputs["speaker"]) if model.speaker_embedding is not None else None
    bias = model.conditioning_bias(cond, spk)
    state = model.initial_state(1)
    step = tf.function(model.step)
    for t in range(prime):
        bias_t = None if bias is None else bias[:, t if bias.shape[1] > 1 else 0]
        _, state = step(full_inputs["audio"][:, t], state, bias_t)
    assert int(primed["time"]) == int(state["time"]) == prime
    np.testing.assert_allclose(primed["buffer"].numpy(), state["buffer"].numpy(), atol=1e-5)
    bias_t = None if bias is None else bias[:, prime if bias.shape[1] > 1 else 0]
    first, _ = model.step(full_inputs["audio"][:, prime], primed, bias_t)
    np.testing.assert_allclose(first.numpy(), full[:, prime], atol=1e-4)


def test_upsampled_conditioning_length_matches_samples():
    model = _model(conditioning="mel")
    hop = FRONTEND.hop_length
    for n in (1, 159, 160, 161, 1000, 1600):
        audio = np.zeros((1, n), np.float32)
        mel = conditioning_mel(audio, frontend=FRONTEND, context=model.config.cond_context)
        frames = 1 + n // hop
        assert mel.shape == (1, frames + 2 * model.config.cond_context, FRONTEND.n_mels)
        up = model.upsample(mel)
        assert up.shape[1] == frames * hop >= n
        assert model.upsample(mel, n).shape == (1, n, model.config.cond_channels)


def test_conditioning_mel_interior_equals_front_end():
    rng = np.random.default_rng(5)
    audio = rng.uniform(-0.5, 0.5, (1, 2000)).astype(np.float32)
    c = 2
    np.testing.assert_allclose(conditioning_mel(audio, frontend=FRONTEND, context=c).numpy()[:, c:-c],
                               log_mel(audio, config=FRONTEND).numpy(), atol=1e-4)


def test_conditioning_block_alignment():
    """Samples [f*hop, (f+1)*hop) are the only ones whose conditioning depends on frame f (context 0)."""
    model = _model(conditioning="mel", cond_context=0)
    hop = FRONTEND.hop_length
    rng = np.random.default_rng(6)
    mel = rng.normal(-5, 3, (1, 5, FRONTEND.n_mels)).astype(np.float32)
    base = model.upsample(mel).numpy()
    changed = mel.copy()
    changed[0, 2] += 3.0
    diff = np.abs(model.upsample(changed).numpy() - base).max(axis=-1)[0]
    assert diff[2 * hop:3 * hop].min() > 0
    assert diff[:2 * hop].max() == 0 and diff[3 * hop:].max() == 0


def test_speaker_and_mel_change_output():
    model = _model(conditioning="mel", num_speakers=3)
    rng = np.random.default_rng(7)
    classes = rng.integers(0, 256, (1, 200))
    audio = rng.uniform(-0.5, 0.5, (1, 200)).astype(np.float32)
    a = model(_inputs(model, classes, audio, [0])).numpy()
    b = model(_inputs(model, classes, audio, [2])).numpy()
    c = model(_inputs(model, classes, audio * 0.1, [0])).numpy()
    assert np.abs(a - b).max() > 0.1
    assert np.abs(a - c).max() > 0.1


def test_missing_conditioning_raises():
    model = _model(conditioning="mel", num_speakers=2)
    with pytest.raises(ConfigError, match="mel"):
        model({"audio": np.zeros((1, 10), np.int32), "speaker": np.zeros(1, np.int32)})
    with pytest.raises(ConfigError, match="speaker"):
        model({"audio": np.zeros((1, 10), np.int32), "mel": np.zeros((1, 5, 80), np.float32)})


@pytest.mark.parametrize("bad, match", [
    (dict(upsample_factors=(4, 5, 4)), "hop"),
    (dict(kernel_size=1), "kernel_size"),
    (dict(input_type="float"), "input_type"),
    (dict(num_classes=128), "num_classes"),
    (dict(lpc_normalize=True), "lpc_normalize"),
    (dict(pitch_features=1), "pitch_features"),
    (dict(pitch_features=16, conditioning="none"), "pitch_features"),
    (dict(pulse_input=True), "pulse_input"),
])
def test_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        WaveNet(compact(**bad), FRONTEND)


def test_keras_round_trip(tmp_path):
    model = _model(conditioning="mel", num_speakers=2, input_type="raw")
    rng = np.random.default_rng(8)
    classes = rng.integers(0, 256, (1, 120))
    audio = rng.uniform(-0.5, 0.5, (1, 120)).astype(np.float32)
    inputs = _inputs(model, classes, audio, [1])
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert isinstance(loaded, WaveNet)
    assert loaded.config == model.config and loaded.frontend == model.frontend
    np.testing.assert_allclose(loaded(inputs).numpy(), model(inputs).numpy(), atol=1e-6)
    clone = WaveNet.from_config(model.get_config())
    assert clone.config == model.config


def test_silence_class_is_mu_law_of_zero():
    from speechkit.frontend import mu_law_encode

    assert silence_class(FRONTEND) == int(mu_law_encode(0.0, FRONTEND.mu)) == 128


def test_macs_per_sample_counts_weights():
    cfg = compact(conditioning="none")
    model = WaveNet(cfg, FRONTEND)
    model.build()
    per_layer = sum(int(np.prod(layer.conv_kernel.shape)) + int(np.prod(layer.out_kernel.shape))
                    for layer in model.res_layers)
    head = int(np.prod(model.head_hidden.kernel.shape)) + int(np.prod(model.head_out.kernel.shape))
    assert cfg.macs_per_sample == per_layer + head
