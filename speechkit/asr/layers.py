"""The layers of Deep Speech 2: SpecAugment, masked 2D convolution, sequence-wise BN-GRU, lookahead.

Lengths travel with the tensors through every layer. Each layer zeroes its output beyond the
valid frames, and batch normalisation takes its statistics over valid frames only, so that an
utterance gets the same output alone and inside a padded batch.
"""

import dataclasses
import math

import keras
import tensorflow as tf
from keras import ops

from speechkit.config import Config
from speechkit.errors import ConfigError

__all__ = ["SpecAugmentConfig", "SpecAugment", "MaskedConv2D", "BatchNormGRU", "Lookahead", "conv_output_lengths"]


@dataclasses.dataclass(frozen=True)
class SpecAugmentConfig(Config):
    """SpecAugment masking (Park et al., 2019) applied to the features during training only.

    Args:
        freq_masks: int >= 0, frequency masks per utterance.
        freq_width: int >= 0, widest frequency mask, in bins (each width is uniform in [0, freq_width]).
        time_masks: int >= 0, time masks per utterance.
        time_width: int >= 0, widest time mask, in frames.
        max_time_ratio: float in (0, 1], a time mask never covers more than this share of the utterance.
        freq_warp: float in [0, 0.5), largest relative warp of the frequency axis: each utterance's
            bins are resampled at ``bin / alpha`` with ``alpha`` uniform in [1 - freq_warp, 1 + freq_warp],
            a vocal tract length perturbation (Jaitly & Hinton, 2013) that imitates other voices.
        seed: int, the masks are a pure function of (seed, training step), so resumed runs see the same ones.
    """

    freq_masks: int = 0
    freq_width: int = 0
    time_masks: int = 0
    time_width: int = 0
    max_time_ratio: float = 0.2
    freq_warp: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for name in ("freq_masks", "freq_width", "time_masks", "time_width"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 0:
                raise ConfigError(f"specaugment {name} must be an int >= 0, received: {getattr(self, name)!r}")
        if not 0 < self.max_time_ratio <= 1:
            raise ConfigError(f"specaugment max_time_ratio must be in (0, 1], received: {self.max_time_ratio}")
        if not 0 <= self.freq_warp < 0.5:
            raise ConfigError(f"specaugment freq_warp must be in [0, 0.5), received: {self.freq_warp}")

    @property
    def enabled(self):
        return (bool(self.freq_masks and self.freq_width) or bool(self.time_masks and self.time_width)
                or self.freq_warp > 0)


def conv_output_lengths(lengths, stride):
    """Valid output frames of one convolution: ceil(lengths / stride) (numpy, int or tensor)."""
    return (lengths + (stride - 1)) // stride


def _time_mask(lengths, maxlen, dtype="float32"):
    return ops.cast(ops.arange(maxlen)[None, :] < ops.cast(lengths, "int32")[:, None], dtype)


def _clipped_relu(x, clip):
    return ops.minimum(ops.relu(x), ops.cast(clip, x.dtype))


# -- Layers -- #

def _warp_bins(features, alpha):
    """Resample each utterance's frequency axis at ``bin / alpha`` (linear interpolation, edges clamped).

    Args:
        features: float [batch, frames, bins].
        alpha: float32 [batch], warp factors near 1.
    """
    bins = tf.shape(features)[2]
    top = tf.cast(bins - 1, tf.float32)
    source = tf.clip_by_value(tf.cast(tf.range(bins), tf.float32)[None, :] / alpha[:, None], 0.0, top)
    low = tf.floor(source)
    weight = tf.cast(source - low, features.dtype)[:, None, :]
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, bins - 1)
    below = tf.gather(features, low, axis=2, batch_dims=1)
    above = tf.gather(features, high, axis=2, batch_dims=1)
    return below + weight * (above - below)


@keras.saving.register_keras_serializable(package="speechkit")
class SpecAugment(keras.layers.Layer):
    """SpecAugment frequency and time masking (Park et al., 2019) and frequency warping, in training only.

    Masked values are set to 0, the mean of the per-utterance normalised features. Time masks stay
    inside each utterance's valid frames. The random numbers come from a stateless generator seeded
    with ``(seed, counter)``, where ``counter`` is a weight that counts training calls: it is saved
    with the checkpoint, so a resumed run draws exactly the masks an uninterrupted run would have.

    Args:
        freq_masks, freq_width, time_masks, time_width, max_time_ratio, freq_warp, seed: see
            ``SpecAugmentConfig``.

    Call arguments:
        inputs: float [batch, frames, bins].
        lengths: int32 [batch], valid frames.
        training: bool; outside training the layer is the identity.

    Returns:
        float [batch, frames, bins].
    """

    def __init__(self, *, freq_masks=0, freq_width=0, time_masks=0, time_width=0, max_time_ratio=0.2, freq_warp=0.0,
                 seed=0, **kwargs):
        super().__init__(**kwargs)
        self.config = SpecAugmentConfig(freq_masks=freq_masks, freq_width=freq_width, time_masks=time_masks,
                                        time_width=time_width, max_time_ratio=max_time_ratio, freq_warp=freq_warp,
                                        seed=seed)

    def build(self, inputs_shape, lengths_shape=None):
        self.counter = self.add_weight(name="counter", shape=(), dtype="int64", initializer="zeros", trainable=False,
                                       aggregation="only_first_replica")

    def call(self, inputs, lengths, training=None):
        c = self.config
        if not training or not c.enabled:
            return inputs
        seed = tf.stack([tf.constant(c.seed, tf.int64), tf.convert_to_tensor(self.counter)])
        self.counter.assign_add(1)
        shape = tf.shape(inputs)
        batch, frames, bins = shape[0], shape[1], shape[2]
        draws = tf.random.stateless_uniform([batch, 2 * (c.freq_masks + c.time_masks) + 1], seed=seed)
        if c.freq_warp:
            inputs = _warp_bins(inputs, 1.0 + c.freq_warp * (2.0 * draws[:, -1] - 1.0))
        keep = tf.ones([batch, frames, bins], tf.bool)
        bin_index = tf.range(bins)[None, :]
        frame_index = tf.range(frames)[None, :]
        lengths = tf.cast(lengths, tf.int32)

        def span(width_limit, length, u_width, u_start):
            width = tf.cast(tf.floor(u_width * tf.cast(width_limit + 1, tf.float32)), tf.int32)
            start = tf.cast(tf.floor(u_start * tf.cast(tf.maximum(length - width, 0) + 1, tf.float32)), tf.int32)
            return start[:, None], (start + width)[:, None]

        for i in range(c.freq_masks if c.freq_width else 0):
            lo, hi = span(c.freq_width, bins, draws[:, 2 * i], draws[:, 2 * i + 1])
            keep &= ~((bin_index >= lo) & (bin_index < hi))[:, None, :]
        limit = tf.minimum(c.time_width, tf.cast(tf.floor(c.max_time_ratio * tf.cast(lengths, tf.float32)), tf.int32))
        for j in range(c.time_masks if c.time_width else 0):
            column = 2 * (c.freq_masks + j)
            lo, hi = span(limit, lengths, draws[:, column], draws[:, column + 1])
            keep &= ~((frame_index >= lo) & (frame_index < hi))[:, :, None]
        return inputs * tf.cast(keep, inputs.dtype)

    def compute_output_shape(self, inputs_shape, lengths_shape=None):
        return tuple(inputs_shape)

    def get_config(self):
        return {**super().get_config(), **dataclasses.asdict(self.config)}


@keras.saving.register_keras_serializable(package="speechkit")
class MaskedConv2D(keras.layers.Layer):
    """2D convolution over (time, frequency) with masked batch norm and a clipped ReLU.

    Time is padded explicitly, ``kernel - 1 - right_context`` frames before and ``right_context``
    after (by default ``(kernel - 1) // 2`` before and the rest after), and the convolution is
    "valid", so output frame ``j`` covers input frames ``j * stride - left`` to ``j * stride +
    right_context`` and there are exactly ``ceil(length / stride)`` valid output frames, whatever the
    padded length of the batch. (TensorFlow's "same" padding shifts by one frame when the padded
    length changes parity, which would make the output depend on the batch.) ``right_context``
    bounds the future a frame sees, which streaming needs (0 is causal). Frequency is padded
    symmetrically. Outputs beyond the valid frames are set to zero.

    Args:
        filters: int > 0, output channels.
        kernel_size: (time, frequency) int pair.
        strides: (time, frequency) int pair.
        relu_clip: float > 0, ReLU ceiling.
        bn_momentum: float, batch-norm moving-average momentum.
        bn_epsilon: float, batch-norm epsilon.
        right_context: int in [0, kernel_time - 1] or None, future input frames each output frame
            sees; None pads symmetrically (``kernel_time - 1 - (kernel_time - 1) // 2``).

    Call arguments:
        inputs: float [batch, frames, bins, channels], zero beyond ``lengths``.
        lengths: int32 [batch], valid frames.
        training: bool, batch statistics (over valid frames) instead of moving averages.

    Returns:
        ``(outputs [batch, ceil(frames / stride_t), ceil(bins / stride_f), filters], output_lengths int32 [batch])``.

    Example:
        >>> layer = MaskedConv2D(8, (5, 7), (2, 2))
        >>> y, n = layer(np.zeros((2, 9, 20, 1), "float32"), np.array([9, 4], "int32"))
        >>> tuple(y.shape), n.numpy().tolist()
        ((2, 5, 10, 8), [5, 2])
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), *, relu_clip=20.0, bn_momentum=0.99,
                 bn_epsilon=1e-3, right_context=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.strides = tuple(int(s) for s in strides)
        if (self.filters < 1 or len(self.kernel_size) != 2 or len(self.strides) != 2
                or min(self.kernel_size + self.strides) < 1):
            raise ValueError(f"need filters >= 1 and (time, frequency) pairs >= 1; received: filters={filters}, "
                             f"kernel_size={kernel_size}, strides={strides}")
        kt = self.kernel_size[0]
        if right_context is not None and (int(right_context) != right_context or not 0 <= right_context < kt):
            raise ValueError(f"right_context must be an int in [0, {kt - 1}] or None, received: "
                             f"right_context={right_context}")
        self.right_context = None if right_context is None else int(right_context)
        self.relu_clip = float(relu_clip)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.conv = keras.layers.Conv2D(self.filters, self.kernel_size, strides=self.strides, padding="valid",
                                        use_bias=False, name="conv")
        self.bn = keras.layers.BatchNormalization(momentum=self.bn_momentum, epsilon=self.bn_epsilon, name="bn")

    def build(self, inputs_shape, lengths_shape=None):
        batch, _, bins, channels = inputs_shape
        padded_bins = None if bins is None else bins + self.kernel_size[1] - 1
        self.conv.build((batch, None, padded_bins, channels))
        self.bn.build((batch, None, None, self.filters))

    @property
    def time_padding(self):
        """(left, right) int pair, zero frames padded before and after the time axis."""
        kt = self.kernel_size[0]
        right = kt - 1 - (kt - 1) // 2 if self.right_context is None else self.right_context
        return kt - 1 - right, right

    def _frequency_pad(self, x):
        kf = self.kernel_size[1]
        return ops.pad(x, [[0, 0], [0, 0], [(kf - 1) // 2, kf - 1 - (kf - 1) // 2], [0, 0]])

    def infer_window(self, window):
        """Inference on frames that already carry their time context: the streaming path.

        Args:
            window: float [batch, (n - 1) * stride_t + kernel_t, bins, channels], the input frames that
                ``n`` consecutive output frames read, time padding included.

        Returns:
            float [batch, n, ceil(bins / stride_f), filters], equal to those frames of ``call``.
        """
        x = self.bn(self.conv(self._frequency_pad(window)), training=False)
        return _clipped_relu(x, self.relu_clip)

    def call(self, inputs, lengths, training=None):
        left, right = self.time_padding
        x = self.conv(self._frequency_pad(ops.pad(inputs, [[0, 0], [left, right], [0, 0], [0, 0]])))
        out_lengths = conv_output_lengths(ops.cast(lengths, "int32"), self.strides[0])
        shape = ops.shape(x)
        mask = _time_mask(out_lengths, shape[1], "bool")
        x = self.bn(x, training=training, mask=ops.broadcast_to(ops.expand_dims(mask, -1), shape[:3]))
        x = _clipped_relu(x, self.relu_clip)
        return x * ops.expand_dims(ops.expand_dims(ops.cast(mask, x.dtype), -1), -1), out_lengths

    def compute_output_shape(self, inputs_shape, lengths_shape=None):
        batch, frames, bins, _ = inputs_shape
        frames = None if frames is None else math.ceil(frames / self.strides[0])
        bins = None if bins is None else math.ceil(bins / self.strides[1])
        return (batch, frames, bins, self.filters), (batch,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "relu_clip": self.relu_clip, "bn_momentum": self.bn_momentum,
                "bn_epsilon": self.bn_epsilon, "right_context": self.right_context}


@tf.function(reduce_retracing=True)
def _gru_scan(x, kernel, bias, h0=None):
    """The GRU recurrence over time-major, pre-projected inputs.

    A ``tf.function`` of its own so that eager calls (tests, notebooks) run the loop as a graph
    instead of one Python iteration per frame. Inside a traced model the layer calls the plain
    Python function instead: a nested function traced with ``reduce_retracing`` sees relaxed
    shapes, and the TFLite converter needs the static batch size to lower ``tf.scan``'s tensor list.

    Args:
        x: float32 [frames, directions, batch, 3 * units], normalised input projections (z, r, n).
        kernel: float32 [directions, units, 3 * units], recurrent kernels.
        bias: float32 [directions, 3 * units], recurrent biases.
        h0: float32 [directions, batch, units], the state before the first frame; zeros when None.

    Returns:
        float32 [frames, directions, batch, units], the hidden states.
    """
    units = tf.shape(kernel)[1]
    bias = bias[:, None, :]

    def step(h, x_t):
        rec = tf.matmul(h, kernel) + bias
        zr = tf.sigmoid(x_t[..., :2 * units] + rec[..., :2 * units])
        z, r = zr[..., :units], zr[..., units:]
        n = tf.tanh(x_t[..., 2 * units:] + r * rec[..., 2 * units:])
        return n + z * (h - n)

    if h0 is None:
        h0 = tf.zeros(tf.stack([tf.shape(x)[1], tf.shape(x)[2], units]), tf.float32)
    return tf.scan(step, x, initializer=h0)


_TRAIN_SCAN_BUCKET = 16


def _gru_gates(h, x_t, kernel, bias, units):
    """One GRU step: ``(h', z, r, n, rec_n)`` for inputs ``x_t`` [directions, batch, 3u] and state ``h``."""
    rec = tf.matmul(h, kernel) + bias
    zr = tf.sigmoid(x_t[..., :2 * units] + rec[..., :2 * units])
    z, r = zr[..., :units], zr[..., units:]
    rec_n = rec[..., 2 * units:]
    n = tf.tanh(x_t[..., 2 * units:] + r * rec_n)
    return n + z * (h - n), z, r, n, rec_n


@tf.function(jit_compile=True, reduce_retracing=True)
def _gru_forward_xla(x, kernel, bias):
    """Forward recurrence for training, keeping what the backward pass needs (see ``_gru_train_scan``).

    Returns:
        (h [frames, directions, batch, units], gates [4, frames, directions, batch, units]: z, r, n, rec_n).
    """
    frames, units = tf.shape(x)[0], tf.shape(kernel)[1]
    bias = bias[:, None, :]
    outputs = [tf.TensorArray(tf.float32, size=frames) for _ in range(5)]

    def body(t, h, outputs):
        h, *gates = _gru_gates(h, x[t], kernel, bias, units)
        return t + 1, h, [ta.write(t, v) for ta, v in zip(outputs, [h, *gates])]

    h0 = tf.zeros(tf.stack([tf.shape(x)[1], tf.shape(x)[2], units]), tf.float32)
    _, _, outputs = tf.while_loop(lambda t, h, o: t < frames, body, (0, h0, outputs))
    stacked = [ta.stack() for ta in outputs]
    return stacked[0], tf.stack(stacked[1:])


@tf.function(jit_compile=True, reduce_retracing=True)
def _gru_backward_xla(grad_h, h, gates, kernel):
    """Backward recurrence: gradients of the inputs, kernel and bias from the upstream ``grad_h``.

    With ``a`` the pre-activations, ``h' = n + z (h - n)``, ``n = tanh(x_n + r rec_n)`` and
    ``z, r = sigmoid(x_zr + rec_zr)``, one step back is ``dn = g (1 - z)``, ``dz = g (h - n)``,
    ``da_n = dn (1 - n^2)``, ``da_z = dz z (1 - z)``, ``da_r = da_n rec_n r (1 - r)``; the input
    gradient is ``(da_z, da_r, da_n)``, the recurrent product's is ``(da_z, da_r, da_n r)``, and
    ``g`` for the previous step is ``g z + d_rec U^T`` plus the upstream gradient there.
    """
    frames = tf.shape(h)[0]
    h_prev = tf.concat([tf.zeros_like(h[:1]), h[:-1]], axis=0)
    z, r, n, rec_n = gates[0], gates[1], gates[2], gates[3]
    kernel_t = tf.transpose(kernel, [0, 2, 1])
    d_inputs = tf.TensorArray(tf.float32, size=frames)
    d_recs = tf.TensorArray(tf.float32, size=frames)

    def body(t, carry, d_inputs, d_recs):
        g = grad_h[t] + carry
        z_t, r_t, n_t = z[t], r[t], n[t]
        da_n = g * (1.0 - z_t) * (1.0 - n_t * n_t)
        da_z = g * (h_prev[t] - n_t) * z_t * (1.0 - z_t)
        da_r = da_n * rec_n[t] * r_t * (1.0 - r_t)
        d_rec = tf.concat([da_z, da_r, da_n * r_t], axis=-1)
        carry = g * z_t + tf.matmul(d_rec, kernel_t)
        return t - 1, carry, d_inputs.write(t, tf.concat([da_z, da_r, da_n], axis=-1)), d_recs.write(t, d_rec)

    _, _, d_inputs, d_recs = tf.while_loop(lambda t, c, a, b: t >= 0, body,
                                           (frames - 1, tf.zeros_like(h[0]), d_inputs, d_recs))
    d_rec = d_recs.stack()
    d_kernel = tf.einsum("tdbu,tdbv->duv", h_prev, d_rec)
    d_bias = tf.reduce_sum(d_rec, axis=[0, 2])
    return d_inputs.stack(), d_kernel, d_bias


@tf.custom_gradient
def _gru_train_scan(x, kernel, bias):
    """``_gru_scan`` for training: XLA-compiled forward and hand-written backward recurrences.

    Differentiating ``tf.scan`` runs dozens of small graph ops and tensor-list operations per frame
    and per direction, which dominate a training step on a CPU. Here each direction's step is a
    few fused XLA kernels, forward and backward. XLA compiles once per input shape, so frames are
    padded to a multiple of ``_TRAIN_SCAN_BUCKET`` (the padded steps come after every utterance's
    valid frames, as with batch padding, and are cut off again), which keeps the number of
    compilations small. The results equal ``_gru_scan`` (``tests/test_gru_scan.py``).

    Args and returns as ``_gru_scan``.
    """
    frames = tf.shape(x)[0]
    padded = (frames + _TRAIN_SCAN_BUCKET - 1) // _TRAIN_SCAN_BUCKET * _TRAIN_SCAN_BUCKET
    x_padded = tf.pad(x, [[0, padded - frames], [0, 0], [0, 0], [0, 0]])
    # Gradients come from ``grad``: keep the tape out of the compiled loop.
    h, gates = _gru_forward_xla(tf.stop_gradient(x_padded), tf.stop_gradient(kernel), tf.stop_gradient(bias))

    def grad(grad_h):
        grad_h = tf.pad(grad_h, [[0, padded - frames], [0, 0], [0, 0], [0, 0]])
        d_x, d_kernel, d_bias = _gru_backward_xla(grad_h, h, gates, kernel)
        return d_x[:frames], d_kernel, d_bias

    return h[:frames], grad


@keras.saving.register_keras_serializable(package="speechkit")
class BatchNormGRU(keras.layers.Layer):
    """GRU layer with sequence-wise batch normalisation (Amodei et al., 2016, §3.2).

    Only the input-to-hidden term is normalised: ``x_t = BN(W h_t^(l-1))``, with statistics over
    batch and time, excluding padded frames, and moving averages at inference. The recurrence then
    consumes the normalised projection directly (the BN offset replaces the input bias):

        z = sigmoid(x_z + U_z h + b_z),  r = sigmoid(x_r + U_r h + b_r)
        n = tanh(x_n + r * (U_n h + b_n)),  h' = z * h + (1 - z) * n

    The projection for all time steps is one large matrix product; the loop carries only the
    recurrent product. Both directions run in the same loop as one batched matrix product, and the
    backward direction reads each utterance reversed within its own length
    (``tf.reverse_sequence``), so it starts at the utterance's true end, not at the padding.
    Forward and backward outputs are summed.

    Args:
        units: int > 0, hidden units per direction.
        bidirectional: bool.
        bn_momentum: float, batch-norm moving-average momentum.
        bn_epsilon: float, batch-norm epsilon.

    Call arguments:
        inputs: float [batch, frames, features].
        lengths: int32 [batch], valid frames.
        training: bool.

    Returns:
        float [batch, frames, units], zero beyond ``lengths``.
    """

    def __init__(self, units, *, bidirectional=True, bn_momentum=0.99, bn_epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        if int(units) != units or units < 1:
            raise ValueError(f"units must be an int >= 1, received: units={units}")
        self.units = int(units)
        self.bidirectional = bool(bidirectional)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.directions = 2 if self.bidirectional else 1
        self.projection = keras.layers.Dense(self.directions * 3 * self.units, use_bias=False, name="projection")
        self.bn = keras.layers.BatchNormalization(momentum=self.bn_momentum, epsilon=self.bn_epsilon, name="bn")

    def build(self, inputs_shape, lengths_shape=None):
        self.projection.build(inputs_shape)
        self.bn.build(tuple(inputs_shape[:-1]) + (self.directions * 3 * self.units,))
        orthogonal = keras.initializers.Orthogonal()

        def recurrent_init(shape, dtype=None):
            return ops.stack([orthogonal((shape[1], shape[2]), dtype=dtype) for _ in range(shape[0])])

        self.recurrent_kernel = self.add_weight(name="recurrent_kernel",
                                                shape=(self.directions, self.units, 3 * self.units),
                                                initializer=recurrent_init)
        self.recurrent_bias = self.add_weight(name="recurrent_bias", shape=(self.directions, 3 * self.units),
                                              initializer="zeros")

    def call(self, inputs, lengths, training=None):
        lengths = tf.cast(lengths, tf.int32)
        frames = tf.shape(inputs)[1]
        mask = tf.sequence_mask(lengths, frames)
        x = self.bn(self.projection(inputs), training=training, mask=mask)
        x = tf.cast(x, tf.float32)
        x = tf.reshape(x, [tf.shape(x)[0], frames, self.directions, 3 * self.units])
        x = tf.transpose(x, [2, 0, 1, 3])  # [directions, batch, frames, 3u]
        if self.bidirectional:
            x = tf.stack([x[0], tf.reverse_sequence(x[1], lengths, seq_axis=1, batch_axis=0)])
        if training:
            scan = _gru_train_scan
        else:
            scan = _gru_scan if tf.executing_eagerly() else _gru_scan.python_function
        h = scan(tf.transpose(x, [2, 0, 1, 3]), tf.cast(self.recurrent_kernel, tf.float32),
                 tf.cast(self.recurrent_bias, tf.float32))  # [frames, directions, batch, u]
        h = tf.transpose(h, [1, 2, 0, 3])  # [directions, batch, frames, u]
        out = h[0]
        if self.bidirectional:
            out = out + tf.reverse_sequence(h[1], lengths, seq_axis=1, batch_axis=0)
        out = out * tf.expand_dims(tf.cast(mask, out.dtype), -1)
        return tf.cast(out, self.compute_dtype)

    def infer_from(self, inputs, state):
        """Inference from a given state, for streaming: a unidirectional layer continued chunk by chunk.

        Running a sequence in pieces, each from the previous piece's last state, gives the outputs of
        ``call`` on the whole sequence (batch norm uses its moving averages at inference).

        Args:
            inputs: float [batch, frames, features], all valid (frames may be 0).
            state: float32 [batch, units], the hidden state after the previous frame.

        Returns:
            (outputs float32 [batch, frames, units], state float32 [batch, units] after the last frame).

        Raises:
            ValueError: the layer is bidirectional (its backward direction needs the end of the input).
        """
        if self.bidirectional:
            raise ValueError(f"{self.name}: a bidirectional GRU cannot run from a state; it needs the whole input")
        x = tf.cast(self.bn(self.projection(inputs), training=False), tf.float32)
        x = tf.expand_dims(tf.transpose(x, [1, 0, 2]), 1)  # [frames, 1, batch, 3u]
        state = tf.expand_dims(tf.cast(state, tf.float32), 0)  # [1, batch, u]
        scan = _gru_scan if tf.executing_eagerly() else _gru_scan.python_function
        h = scan(x, tf.cast(self.recurrent_kernel, tf.float32), tf.cast(self.recurrent_bias, tf.float32),
                 state)[:, 0]  # [frames, batch, u]
        last = tf.concat([state, h], axis=0)[-1]
        return tf.transpose(h, [1, 0, 2]), last

    def compute_output_shape(self, inputs_shape, lengths_shape=None):
        return tuple(inputs_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "bidirectional": self.bidirectional,
                "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon}


@keras.saving.register_keras_serializable(package="speechkit")
class Lookahead(keras.layers.Layer):
    """Row convolution (Amodei et al., 2016, §3.5): each frame mixes in the next ``context`` frames.

    ``y_t = clipped_relu(sum_{k=0..context} w_k * x_{t+k})``, depthwise (one weight per channel and
    offset). Padding goes on the right, so frame t really sees frames t+1..t+context; frames beyond
    the utterance's length count as zero, so padding does not leak in.

    Args:
        context: int >= 1, future frames (tau).
        relu_clip: float > 0, ReLU ceiling.

    Call arguments:
        inputs: float [batch, frames, channels].
        lengths: int32 [batch], valid frames.

    Returns:
        float [batch, frames, channels], zero beyond ``lengths``.
    """

    def __init__(self, context, *, relu_clip=20.0, **kwargs):
        super().__init__(**kwargs)
        if int(context) != context or context < 1:
            raise ValueError(f"context must be an int >= 1, received: context={context}")
        self.context = int(context)
        self.relu_clip = float(relu_clip)

    def build(self, inputs_shape, lengths_shape=None):
        self.kernel = self.add_weight(name="kernel", shape=(self.context + 1, inputs_shape[-1], 1),
                                      initializer="glorot_uniform")

    def infer_window(self, window):
        """The outputs of ``n`` frames from the ``n + context`` input frames they read (streaming path).

        Args:
            window: float [batch, n + context, channels], zero beyond the utterance's end.

        Returns:
            float [batch, n, channels].
        """
        y = ops.depthwise_conv(window, ops.cast(self.kernel, window.dtype), strides=1, padding="valid")
        return _clipped_relu(y, self.relu_clip)

    def call(self, inputs, lengths, training=None):
        mask = ops.expand_dims(_time_mask(lengths, ops.shape(inputs)[1], inputs.dtype), -1)
        return self.infer_window(ops.pad(inputs * mask, [[0, 0], [0, self.context], [0, 0]])) * mask

    def compute_output_shape(self, inputs_shape, lengths_shape=None):
        return tuple(inputs_shape)

    def get_config(self):
        return {**super().get_config(), "context": self.context, "relu_clip": self.relu_clip}
