"""The training GRU recurrence (XLA forward, hand-written backward) equals the plain ``tf.scan`` one."""

import numpy as np
import pytest
import tensorflow as tf

from speechkit.asr import layers


def _inputs(frames, directions=2, batch=3, units=5, seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(frames, directions, batch, 3 * units)).astype(np.float32))
    kernel = tf.constant(0.5 * rng.normal(size=(directions, units, 3 * units)).astype(np.float32))
    bias = tf.constant(0.3 * rng.normal(size=(directions, 3 * units)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(frames, directions, batch, units)).astype(np.float32))
    return x, kernel, bias, upstream


def _value_and_grads(scan, x, kernel, bias, upstream):
    with tf.GradientTape() as tape:
        tape.watch([x, kernel, bias])
        h = scan(x, kernel, bias)
        loss = tf.reduce_sum(h * upstream)
    return [h, *tape.gradient(loss, [x, kernel, bias])]


@pytest.mark.parametrize("frames, directions", [(1, 1), (23, 2), (32, 2)])
def test_training_scan_matches_tf_scan_values_and_gradients(frames, directions):
    args = _inputs(frames, directions)
    expected = _value_and_grads(layers._gru_scan, *args)
    got = _value_and_grads(layers._gru_train_scan, *args)
    for name, e, g in zip(["h", "d_x", "d_kernel", "d_bias"], expected, got):
        assert g.shape == e.shape, name
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_training_scan_inside_a_traced_function():
    args = _inputs(19)
    expected = _value_and_grads(layers._gru_scan, *args)
    got = tf.function(lambda *a: _value_and_grads(layers._gru_train_scan, *a))(*args)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-4, atol=1e-5)


def test_gru_layer_trains_with_the_same_gradients_as_the_plain_scan(monkeypatch):
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(2, 13, 6)).astype(np.float32))
    lengths = tf.constant([13, 7], tf.int32)
    layer = layers.BatchNormGRU(4, bidirectional=True)
    layer(x, lengths, training=False)

    def grads():
        with tf.GradientTape() as tape:
            y = layer(x, lengths, training=True)
            loss = tf.reduce_sum(y * y)
        return [y, *tape.gradient(loss, layer.trainable_variables)]

    fast = grads()
    monkeypatch.setattr(layers, "_gru_train_scan", layers._gru_scan)
    plain = grads()
    for f, p in zip(fast, plain):
        np.testing.assert_allclose(f.numpy(), p.numpy(), rtol=1e-4, atol=1e-5)
