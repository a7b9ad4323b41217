"""Deep Speech 2 network: exact output lengths, padding invariance, masked batch norm, lookahead, serialisation."""

import functools
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from speechkit.asr.ctc import ctc_loss, ctc_min_frames
from speechkit.asr.deepspeech2 import (DeepSpeech2, DeepSpeech2Config, build_deepspeech2, output_lengths,
                                       time_reduction_factor)
from speechkit.asr.layers import BatchNormGRU, Lookahead, MaskedConv2D, SpecAugment, SpecAugmentConfig, _warp_bins
from speechkit.config import from_dict
from speechkit.errors import ConfigError
from speechkit.frontend import FrontendConfig

NUM_FEATURES = 24
FRONTEND = FrontendConfig(kind="mel", n_mels=NUM_FEATURES)

tiny_config = functools.partial(
    DeepSpeech2Config, conv_filters=(4, 4), conv_kernels=((5, 7), (3, 5)), conv_strides=((2, 2), (1, 2)),
    rnn_layers=2, rnn_units=8, bn_momentum=0.9)


def _batch(lengths, seed=0, garbage=0.0):
    """Features [B, max(lengths), F], zero (or ``garbage``) beyond each length, as the front end pads."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(lengths), max(lengths), NUM_FEATURES)).astype(np.float32)
    for i, n in enumerate(lengths):
        x[i, n:] = garbage
    return x, np.asarray(lengths, np.int32)


def _randomise_bn(model, seed=1):
    """Give the moving statistics non-trivial values, so inference-mode batch norm is not the identity."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape).astype(np.float32) * 0.3)
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=layer.moving_variance.shape).astype(np.float32))


@pytest.mark.parametrize("strides", [((2, 2), (1, 2)), ((3, 1), (2, 2)), ((1, 1),)])
def test_output_lengths_equal_real_model_output(strides):
    n = len(strides)
    config = tiny_config(conv_filters=(4,) * n, conv_kernels=((5, 7),) * n, conv_strides=strides, rnn_layers=1)
    model = build_deepspeech2(config, frontend=FRONTEND)
    factor = time_reduction_factor(strides)
    assert config.time_reduction_factor == factor == math.prod(s[0] for s in strides)
    for frames in (1, 2, 5, 6, 7, 17, 33):
        x, lengths = _batch([frames])
        log_probs, out = model([x, lengths], training=False)
        expected = math.ceil(frames / factor)
        assert log_probs.shape[1] == expected
        assert int(out[0]) == expected == int(output_lengths(frames, strides))
    _, lengths = _batch([33, 17, 6, 1])
    _, out = model(_batch([33, 17, 6, 1]), training=False)
    np.testing.assert_array_equal(out.numpy(), [math.ceil(n / factor) for n in lengths])
    np.testing.assert_array_equal(output_lengths(lengths, strides), out.numpy())


@pytest.mark.parametrize("variant", ["bidirectional", "streaming"])
def test_utterance_alone_equals_inside_padded_batch(variant):
    config = tiny_config() if variant == "bidirectional" else tiny_config(bidirectional=False, lookahead=3)
    model = build_deepspeech2(config, frontend=FRONTEND, vocab_size=29)
    _randomise_bn(model)
    x, lengths = _batch([41, 23, 8, 40])
    log_probs, out = model([x, lengths], training=False)
    for i, n in enumerate(lengths):
        alone, alone_len = model([x[i:i + 1, :n], lengths[i:i + 1]], training=False)
        assert int(alone_len[0]) == int(out[i])
        np.testing.assert_allclose(alone.numpy()[0], log_probs.numpy()[i, :out[i]], atol=1e-4)
    padded, _ = model([np.pad(x, [(0, 0), (0, 13), (0, 0)]), lengths], training=False)
    for i in range(len(lengths)):
        np.testing.assert_allclose(padded.numpy()[i, :out[i]], log_probs.numpy()[i, :out[i]], atol=1e-4)


def test_backward_direction_starts_at_each_utterance_end():
    layer = BatchNormGRU(6, bidirectional=True)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 10, 5)).astype(np.float32)
    lengths = np.array([10, 6], np.int32)
    y = layer(x, lengths, training=False).numpy()
    alone = layer(x[1:, :6], lengths[1:], training=False).numpy()
    np.testing.assert_allclose(y[1, :6], alone[0], atol=1e-5)
    assert np.all(y[1, 6:] == 0)
    x_changed = x.copy()
    x_changed[1, 6:] = 100.0
    np.testing.assert_allclose(layer(x_changed, lengths, training=False).numpy(), y, atol=1e-5)


def test_sequence_wise_batch_norm_ignores_padded_frames():
    """Padded frames change neither the batch statistics (outputs) nor the moving averages."""
    rng = np.random.default_rng(4)
    x = rng.normal(loc=2.0, size=(3, 12, 5)).astype(np.float32)
    lengths = np.array([12, 7, 4], np.int32)
    clean = x.copy()
    for i, n in enumerate(lengths):
        clean[i, n:] = 0.0
    noisy = clean.copy()
    for i, n in enumerate(lengths):
        noisy[i, n:] = rng.normal(loc=50.0, scale=10.0, size=noisy[i, n:].shape)
    longer = np.pad(noisy, [(0, 0), (0, 9), (0, 0)], constant_values=-30.0)

    reference = BatchNormGRU(4, bidirectional=True, bn_momentum=0.5)
    reference.build(clean.shape)
    initial = reference.get_weights()
    outputs, stats = [], []
    for batch in (clean, noisy, longer):
        layer = BatchNormGRU(4, bidirectional=True, bn_momentum=0.5)
        layer.build(batch.shape)
        layer.set_weights(initial)
        outputs.append(layer(batch, lengths, training=True).numpy()[:, :12])
        stats.append((layer.bn.moving_mean.numpy(), layer.bn.moving_variance.numpy()))
    for y, (mean, var) in zip(outputs[1:], stats[1:]):
        np.testing.assert_allclose(y, outputs[0], atol=1e-5)
        np.testing.assert_allclose(mean, stats[0][0], atol=1e-5)
        np.testing.assert_allclose(var, stats[0][1], atol=1e-4)
    # The masked mean is the mean over valid frames only.
    projected = reference.projection(clean).numpy()
    valid = np.concatenate([projected[i, :n] for i, n in enumerate(lengths)])
    np.testing.assert_allclose(stats[0][0], 0.5 * valid.mean(axis=0), atol=1e-4)


def test_conv_batch_norm_ignores_padded_frames():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 9, 8, 1)).astype(np.float32)
    lengths = np.array([9, 5], np.int32)
    x[1, 5:] = 0.0
    layers = [MaskedConv2D(3, (3, 3), (2, 1), bn_momentum=0.5) for _ in range(2)]
    out_a, n_a = layers[0](x, lengths, training=True)
    layers[1].build(x.shape)
    layers[1].set_weights(layers[0].get_weights()[:1] + layers[1].get_weights()[1:])
    padded = np.pad(x, [(0, 0), (0, 7), (0, 0), (0, 0)])
    out_b, n_b = layers[1](padded, lengths, training=True)
    np.testing.assert_array_equal(n_a.numpy(), [5, 3])
    np.testing.assert_array_equal(n_b.numpy(), [5, 3])
    np.testing.assert_allclose(out_b.numpy()[:, :5], out_a.numpy(), atol=1e-5)
    np.testing.assert_allclose(layers[1].bn.moving_mean.numpy(), layers[0].bn.moving_mean.numpy(), atol=1e-6)
    assert np.all(out_a.numpy()[1, 3:] == 0)


def test_lookahead_sees_tau_future_frames_and_no_more():
    tau, t0 = 4, 12
    layer = Lookahead(tau)
    layer.build((1, 20, 3))
    layer.kernel.assign(np.ones((tau + 1, 3, 1), np.float32))
    x = np.zeros((1, 20, 3), np.float32)
    x[0, t0] = 1.0
    y = layer(x, np.array([20], np.int32)).numpy()[0, :, 0]
    responds = np.flatnonzero(y)
    # Output t depends on input t + tau (t = t0 - tau) and not on t + tau + 1, nor on the past.
    np.testing.assert_array_equal(responds, np.arange(t0 - tau, t0 + 1))
    assert y[t0 - tau - 1] == 0 and y[t0 + 1] == 0


def test_lookahead_does_not_read_past_the_utterance_end():
    layer = Lookahead(3)
    x = np.ones((1, 10, 2), np.float32)
    short = layer(x, np.array([6], np.int32)).numpy()
    alone = layer(x[:, :6], np.array([6], np.int32)).numpy()
    np.testing.assert_allclose(short[0, :6], alone[0], atol=1e-6)
    assert np.all(short[0, 6:] == 0)


@pytest.mark.parametrize("right_context, lookahead_frames", [((2, 0), 2 * 3 + 2), ((0, 1), 2 * 3 + 1 * 3)])
def test_streaming_model_is_causal_up_to_its_computed_lookahead(right_context, lookahead_frames):
    """The streaming preset's kernels and strides: output frame j reads features up to 3 j + lookahead_frames only."""
    config = tiny_config(conv_kernels=((11, 7), (11, 5)), conv_strides=((3, 2), (1, 2)),
                         conv_right_context=right_context, rnn_layers=2, bidirectional=False, lookahead=2)
    assert config.lookahead_frames == lookahead_frames
    keras.utils.set_random_seed(0)
    model = build_deepspeech2(config, frontend=FRONTEND)
    _randomise_bn(model)
    x, lengths = _batch([60])
    base, _ = model([x, lengths], training=False)
    for start in (20, 31, 45):
        changed = x.copy()
        changed[0, start:] += 5.0
        after, _ = model([changed, lengths], training=False)
        diff = np.abs(after.numpy()[0] - base.numpy()[0]).max(axis=1)
        reads = [j for j in range(len(diff)) if 3 * j + lookahead_frames >= start]
        assert np.all(diff[:reads[0]] < 1e-6), start
        assert diff[reads[0]] > 1e-5, start


def test_conv_right_context_bounds_the_future_and_defaults_to_symmetric_padding():
    x = np.zeros((1, 30, 6, 1), np.float32)
    x[0, 17] = 1.0
    for right, first in ((0, 17), (2, 15), (4, 13), (None, 12)):  # None: (11 - 1) - 5 = 5 frames ahead
        layer = MaskedConv2D(2, (11, 3), (1, 1), right_context=right)
        layer(x, np.array([30], np.int32))
        layer.conv.kernel.assign(np.ones(layer.conv.kernel.shape, np.float32))  # every tap counts, none cancels
        y, _ = layer(x, np.array([30], np.int32))
        responds = np.flatnonzero(np.abs(y.numpy()[0]).sum(axis=(1, 2)) > 0)
        assert responds.min() == first and responds.max() == first + 10, right
    assert MaskedConv2D(2, (11, 3), right_context=None).time_padding == (5, 5)
    assert MaskedConv2D(2, (4, 3), right_context=None).time_padding == (1, 2)
    with pytest.raises(ValueError, match="right_context"):
        MaskedConv2D(2, (11, 3), right_context=11)
    with pytest.raises(ConfigError, match="conv_right_context"):
        tiny_config(conv_right_context=(0,))
    with pytest.raises(ConfigError, match="conv_right_context"):
        tiny_config(conv_right_context=(5, 0))  # the first kernel is 5 frames long
    assert tiny_config().conv_time_padding == ((2, 2), (1, 1))
    assert tiny_config(conv_right_context=(1, 0)).conv_time_padding == ((3, 1), (2, 0))
    assert math.isinf(tiny_config().lookahead_frames)


def test_gru_from_a_state_continues_the_whole_sequence():
    layer = BatchNormGRU(6, bidirectional=False)
    x = np.random.default_rng(0).normal(size=(1, 13, 5)).astype(np.float32)
    whole = layer(x, np.array([13], np.int32)).numpy()
    first, state = layer.infer_from(x[:, :4], np.zeros((1, 6), np.float32))
    empty, same = layer.infer_from(x[:, 4:4], state)
    second, _ = layer.infer_from(x[:, 4:], same)
    assert empty.shape == (1, 0, 6)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-5)
    with pytest.raises(ValueError, match="bidirectional"):
        BatchNormGRU(6).infer_from(x, np.zeros((1, 6), np.float32))


def test_layer_configs_round_trip():
    for layer in (MaskedConv2D(3, (5, 7), (2, 2), relu_clip=10.0, bn_momentum=0.9, bn_epsilon=1e-4),
                  BatchNormGRU(7, bidirectional=False, bn_momentum=0.8), Lookahead(5, relu_clip=6.0),
                  SpecAugment(freq_masks=1, freq_width=4, time_masks=2, time_width=9, max_time_ratio=0.3, seed=5)):
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config


def test_keras_file_round_trip(tmp_path):
    config = tiny_config(lookahead=2, specaugment=SpecAugmentConfig(freq_masks=1, freq_width=3, time_masks=1,
                                                                      time_width=4))
    model = build_deepspeech2(config, frontend=FRONTEND)
    _randomise_bn(model)
    x, lengths = _batch([19, 11])
    expected, _ = model([x, lengths], training=False)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    got, out = loaded([x, lengths], training=False)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-6)
    np.testing.assert_array_equal(out.numpy(), [10, 6])
    assert [type(layer).__name__ for layer in loaded.layers if type(layer).__name__ in
            ("SpecAugment", "MaskedConv2D", "BatchNormGRU", "Lookahead")] == (
        ["SpecAugment"] + ["MaskedConv2D"] * 2 + ["BatchNormGRU"] * 2 + ["Lookahead"])
    assert isinstance(loaded, DeepSpeech2)
    assert loaded.config == config and loaded.frontend == FRONTEND and loaded.vocab_size == 29


def test_model_carries_its_front_end_and_time_reduction():
    frontend = FrontendConfig(kind="spectrogram", window_ms=10.0)
    config = tiny_config(conv_strides=((3, 2), (2, 2)))
    model = build_deepspeech2(config, frontend=frontend, vocab_size=7)
    assert model.inputs[0].shape[-1] == frontend.num_features == 81
    assert model.outputs[0].shape[-1] == 7
    assert model.time_reduction_factor == 6 and model.frontend == frontend
    assert int(model.output_lengths(13)) == 3
    saved = model.get_config()
    assert saved["frontend"] == frontend.to_dict() and saved["config"] == config.to_dict() and saved["vocab_size"] == 7
    clone = DeepSpeech2.from_config(saved)
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    with pytest.raises(ConfigError, match="vocab_size"):
        build_deepspeech2(config, frontend=frontend, vocab_size=1)


def test_log_probs_are_normalised():
    model = build_deepspeech2(tiny_config(), frontend=FRONTEND, vocab_size=29)
    log_probs, _ = model(_batch([9]), training=False)
    assert log_probs.shape[-1] == 29 and log_probs.dtype == tf.float32
    np.testing.assert_allclose(np.exp(log_probs.numpy()).sum(-1), 1.0, atol=1e-5)


def test_ctc_loss_uses_true_lengths():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(2, 12, 29)).astype(np.float32)
    labels = np.array([[8, 5, 12, 12, 15], [9, 0, 0, 0, 0]], np.int32)
    label_lengths = np.array([5, 1], np.int32)
    logit_lengths = np.array([12, 4], np.int32)
    batch = ctc_loss(labels, label_lengths, logits, logit_lengths).numpy()
    logits_garbage = logits.copy()
    logits_garbage[1, 4:] = 100.0
    alone = ctc_loss(labels[1:, :1], label_lengths[1:], logits[1:, :4], logit_lengths[1:]).numpy()
    np.testing.assert_allclose(ctc_loss(labels, label_lengths, logits_garbage, logit_lengths).numpy(), batch, rtol=1e-5)
    np.testing.assert_allclose(batch[1], alone[0], rtol=1e-5)


def test_ctc_min_frames_counts_repeats():
    assert ctc_min_frames([8, 5, 12, 12, 15]) == 6  # HELLO needs a blank between the two Ls
    assert ctc_min_frames([1, 2, 3]) == 3
    assert ctc_min_frames([]) == 0


@pytest.mark.parametrize("bad, message", [
    ({"conv_filters": [8], "conv_kernels": [[3, 3], [3, 3]], "conv_strides": [[1, 1]]}, "same length"),
    ({"conv_filters": [], "conv_kernels": [], "conv_strides": []}, "at least one"),
    ({"conv_strides": [[0, 2], [1, 2]]}, "pairs of int >= 1"),
    ({"rnn_units": 0}, "rnn_units"),
    ({"bn_momentum": 1.5}, "bn_momentum"),
    ({"rnn_unit": 16}, "unknown key"),
])
def test_config_rejects_bad_values(bad, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(DeepSpeech2Config, bad, source="test.yaml")


def test_layers_reject_bad_arguments():
    with pytest.raises(ValueError, match="units"):
        BatchNormGRU(0)
    with pytest.raises(ValueError, match="context"):
        Lookahead(0)
    with pytest.raises(ValueError, match="filters"):
        MaskedConv2D(0, (3, 3))


def test_gru_recurrence_matches_keras_gru():
    """With batch norm at identity, one direction is exactly a Keras GRU (reset_after) on the same weights."""
    units, features = 5, 4
    layer = BatchNormGRU(units, bidirectional=False, bn_epsilon=1e-3)
    x = np.random.default_rng(7).normal(size=(2, 9, features)).astype(np.float32)
    lengths = np.array([9, 9], np.int32)
    layer.build(x.shape)
    kernel = layer.projection.kernel.numpy() / np.sqrt(1.0 + 1e-3)
    recurrent = layer.recurrent_kernel.numpy()[0]
    rng = np.random.default_rng(8)
    bias = rng.normal(size=(3 * units,)).astype(np.float32)
    layer.recurrent_bias.assign(bias[None])
    ours = layer(x, lengths, training=False).numpy()
    reference = keras.layers.GRU(units, return_sequences=True, reset_after=True)
    reference.build((None, None, features))
    reference.set_weights([kernel, recurrent, np.stack([np.zeros_like(bias), bias])])
    np.testing.assert_allclose(ours, reference(x).numpy(), atol=1e-5)


def test_specaugment_masks_only_in_training_and_within_lengths():
    layer = SpecAugment(freq_masks=2, freq_width=5, time_masks=2, time_width=6, max_time_ratio=0.5, seed=3)
    x = np.ones((4, 30, 16), np.float32)
    lengths = np.array([30, 20, 12, 3], np.int32)
    np.testing.assert_array_equal(layer(x, lengths, training=False).numpy(), x)
    first = layer(x, lengths, training=True).numpy()
    second = layer(x, lengths, training=True).numpy()
    assert int(layer.counter.numpy()) == 2 and not np.array_equal(first, second)
    for out in (first, second):
        assert set(np.unique(out)) <= {0.0, 1.0}
        bins_masked = (out == 0).all(axis=1).sum(axis=1)  # whole frequency rows zeroed
        assert np.all(bins_masked <= 10)
        for i, n in enumerate(lengths):
            frames_masked = (out[i] == 0).all(axis=1)
            assert frames_masked[n:].sum() == 0
            assert frames_masked[:n].sum() <= 2 * min(6, int(0.5 * n))
    # The masks are a function of (seed, counter): a fresh layer at the same counter draws the same ones.
    again = SpecAugment(freq_masks=2, freq_width=5, time_masks=2, time_width=6, max_time_ratio=0.5, seed=3)
    np.testing.assert_array_equal(again(x, lengths, training=True).numpy(), first)


def test_frequency_warp_moves_spectral_peaks_by_alpha():

    x = np.zeros((2, 3, 40), np.float32)
    x[:, :, 20] = 1.0
    warped = _warp_bins(tf.constant(x), tf.constant([1.25, 0.8])).numpy()
    assert np.argmax(warped[0, 0]) == 25  # bin 25 reads source 25 / 1.25 = 20
    assert np.argmax(warped[1, 0]) == 16  # bin 16 reads source 16 / 0.8 = 20
    np.testing.assert_allclose(_warp_bins(tf.constant(x), tf.constant([1.0, 1.0])).numpy(), x)
    layer = SpecAugment(freq_warp=0.2, seed=1)
    out = layer(np.tile(np.arange(40, dtype=np.float32), (2, 5, 1)), np.array([5, 5], np.int32), training=True).numpy()
    assert not np.allclose(out, np.arange(40)) and np.all(np.diff(out, axis=-1) >= -1e-6)
