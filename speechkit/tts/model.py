"""The text-to-mel acoustic model: a small FastSpeech (Ren et al. 2019) with convolutions instead of attention.

Characters are embedded and encoded by residual 1-D convolution blocks; a duration predictor
reads the encodings and predicts ``log(1 + frames)`` per character; the length regulator repeats
each character's encoding for its frames (the aligner's durations in training, the predicted ones
in synthesis) and adds where inside the character each frame lies; residual dilated convolution
blocks decode the frames into the front end's log-mel, predicted in the scaled domain
``(log_mel - mel_mean) / mel_std``. Padding is index 0 and is zeroed after every block, so an
utterance gives the same output alone and inside a padded batch.
"""

import keras
import tensorflow as tf

from speechkit.tts.config import AcousticModelConfig

__all__ = ["ConvBlock", "DurationPredictor", "length_regulate", "predicted_durations", "AcousticModel"]


@keras.saving.register_keras_serializable(package="speechkit")
class ConvBlock(keras.layers.Layer):
    """``x + dropout(layer_norm(relu(conv(x))))``, zeroed where ``mask`` is 0.

    Args:
        channels: int > 0, input and output width.
        kernel_size: int > 0, odd.
        dilation: int > 0.
        dropout: float in [0, 1).

    Call arguments:
        inputs: float32 [batch, time, channels].
        mask: float32 [batch, time, 1], 1 on valid positions.
        training: bool.
    """

    def __init__(self, channels, *, kernel_size=5, dilation=1, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if kernel_size <= 0 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, received: kernel_size={kernel_size}")
        self.channels = int(channels)
        self.kernel_size = int(kernel_size)
        self.dilation = int(dilation)
        self.dropout = float(dropout)
        self.conv = keras.layers.Conv1D(self.channels, self.kernel_size, dilation_rate=self.dilation, padding="same",
                                        name="conv")
        self.norm = keras.layers.LayerNormalization(name="norm")
        self.drop = keras.layers.Dropout(self.dropout)

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.norm.build(tuple(input_shape[:-1]) + (self.channels,))
        self.built = True

    def call(self, inputs, mask, training=None):
        y = self.drop(self.norm(keras.ops.relu(self.conv(inputs))), training=training)
        return (inputs + y) * mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "kernel_size": self.kernel_size,
                "dilation": self.dilation, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="speechkit")
class DurationPredictor(keras.layers.Layer):
    """Two conv-ReLU-norm-dropout layers and a projection: ``log(1 + frames)`` per character.

    Args:
        channels: int > 0; kernel_size: int > 0, odd; dropout: float in [0, 1).

    Call arguments:
        inputs: float32 [batch, characters, width]; mask: float32 [batch, characters, 1]; training: bool.

    Returns:
        float32 [batch, characters], 0 on padding.
    """

    def __init__(self, channels, *, kernel_size=3, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.kernel_size = int(kernel_size)
        self.dropout = float(dropout)
        self.convs = [keras.layers.Conv1D(self.channels, self.kernel_size, padding="same", name=f"conv_{i}")
                      for i in range(2)]
        self.norms = [keras.layers.LayerNormalization(name=f"norm_{i}") for i in range(2)]
        self.drop = keras.layers.Dropout(self.dropout)
        self.out = keras.layers.Dense(1, name="out")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv, norm in zip(self.convs, self.norms):
            conv.build(shape)
            shape = shape[:-1] + (self.channels,)
            norm.build(shape)
        self.out.build(shape)
        self.built = True

    def call(self, inputs, mask, training=None):
        x = inputs
        for conv, norm in zip(self.convs, self.norms):
            x = self.drop(norm(keras.ops.relu(conv(x))), training=training) * mask
        return self.out(x)[..., 0] * mask[..., 0]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "kernel_size": self.kernel_size,
                "dropout": self.dropout}


def length_regulate(encodings, durations):
    """Repeat each character's encoding for its frames.

    Args:
        encodings: float32 [batch, characters, width].
        durations: int32 [batch, characters] >= 0 (0 on padding).

    Returns:
        (frames float32 [batch, max_total, width], position float32 [batch, max_total] in (0, 1): where
        inside its character each frame lies, span float32 [batch, max_total]: log(1 + frames) of that
        character, lengths int32 [batch]: the frames of each utterance (sum of its durations)). Frames
        past an utterance's length are zero.
    """
    durations = tf.cast(durations, tf.int32)
    ends = tf.cumsum(durations, axis=1)
    lengths = ends[:, -1]
    total = tf.reduce_max(lengths)
    batch = tf.shape(durations)[0]
    frames = tf.tile(tf.range(total)[tf.newaxis], [batch, 1])
    index = tf.minimum(tf.searchsorted(ends, frames, side="right"), tf.shape(durations)[1] - 1)
    gathered = tf.gather(encodings, index, batch_dims=1)
    length = tf.gather(durations, index, batch_dims=1)
    start = tf.gather(ends, index, batch_dims=1) - length
    valid = tf.cast(frames < lengths[:, tf.newaxis], encodings.dtype)
    position = (tf.cast(frames - start, tf.float32) + 0.5) / tf.cast(tf.maximum(length, 1), tf.float32)
    span = tf.math.log1p(tf.cast(length, tf.float32))
    return gathered * valid[..., tf.newaxis], position * valid, span * valid, lengths


def predicted_durations(log_durations, mask, *, max_frames, speed=1.0):
    """Frames per character from predicted ``log(1 + frames)``: rounded, clipped to [0, max_frames], 0 on padding.

    Args:
        log_durations: float32 [batch, characters]; mask: float32 [batch, characters];
        max_frames: int > 0; speed: float > 0, > 1 speaks faster.

    Returns:
        int32 [batch, characters].
    """
    frames = tf.round((tf.exp(log_durations) - 1.0) / speed)
    return tf.cast(tf.clip_by_value(frames, 0.0, float(max_frames)) * mask, tf.int32)


@keras.saving.register_keras_serializable(package="speechkit")
class AcousticModel(keras.Model):
    """Characters to log-mel frames, with a duration predictor (FastSpeech, convolutional).

    Args:
        config: AcousticModelConfig or its dict.
        n_mels: int > 0, mel bands predicted.
        duration_weight: float >= 0, weight of the duration loss in ``train_step``.

    Call arguments:
        inputs: ``(tokens int32 [batch, characters], durations int32 [batch, characters])``; tokens
            index ``config.characters`` from 1, 0 pads; durations in frames (the aligner's).
        training: bool.

    Returns (``call``):
        (scaled mel float32 [batch, frames, n_mels], predicted log(1 + frames) float32 [batch, characters],
        lengths int32 [batch]).

    Example:
        >>> model = AcousticModel(AcousticModelConfig(embedding_dim=8, decoder_dim=8, predictor_dim=8), n_mels=4)
        >>> mel, log_d, n = model((tf.constant([[2, 3]]), tf.constant([[2, 1]])))
        >>> tuple(mel.shape), int(n[0])
        ((1, 3, 4), 3)
    """

    def __init__(self, config, *, n_mels=80, duration_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = AcousticModelConfig.from_dict(config)
        self.config = config
        self.n_mels = int(n_mels)
        self.duration_weight = float(duration_weight)
        c = config
        self.embedding = keras.layers.Embedding(c.vocabulary_size, c.embedding_dim, name="embedding")
        self.encoder = [ConvBlock(c.embedding_dim, kernel_size=c.kernel_size, dropout=c.dropout, name=f"encoder_{i}")
                        for i in range(c.encoder_layers)]
        self.predictor = DurationPredictor(c.predictor_dim, dropout=c.dropout, name="duration_predictor")
        self.frame_in = keras.layers.Dense(c.decoder_dim, name="frame_in")
        self.decoder = [ConvBlock(c.decoder_dim, kernel_size=c.kernel_size,
                                  dilation=c.decoder_dilations[i % len(c.decoder_dilations)], dropout=c.dropout,
                                  name=f"decoder_{i}") for i in range(c.decoder_layers)]
        self.mel_out = keras.layers.Dense(self.n_mels, name="mel_out")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.mel_tracker = keras.metrics.Mean(name="mel_l1")
        self.duration_tracker = keras.metrics.Mean(name="duration_mse")

    def build(self, input_shape=None):
        c = self.config
        self.embedding.build((None, None))
        for block in self.encoder:
            block.build((None, None, c.embedding_dim))
        self.predictor.build((None, None, c.embedding_dim))
        self.frame_in.build((None, None, c.embedding_dim + 2))
        for block in self.decoder:
            block.build((None, None, c.decoder_dim))
        self.mel_out.build((None, None, c.decoder_dim))
        self.built = True

    def encode(self, tokens, training=None):
        """(encodings float32 [batch, characters, width], log durations and mask float32 [batch, characters])."""
        tokens = tf.cast(tokens, tf.int32)
        mask = tf.cast(tokens > 0, tf.float32)
        x = self.embedding(tokens) * mask[..., tf.newaxis]
        for block in self.encoder:
            x = block(x, mask[..., tf.newaxis], training=training)
        return x, self.predictor(x, mask[..., tf.newaxis], training=training), mask

    def decode(self, encodings, durations, training=None):
        """Scaled mel float32 [batch, frames, n_mels] and lengths int32 [batch] for the given durations."""
        frames, position, span, lengths = length_regulate(encodings, durations)
        mask = tf.sequence_mask(lengths, tf.shape(frames)[1], tf.float32)[..., tf.newaxis]
        x = self.frame_in(tf.concat([frames, position[..., tf.newaxis], span[..., tf.newaxis]], axis=-1)) * mask
        for block in self.decoder:
            x = block(x, mask, training=training)
        return self.mel_out(x) * mask, lengths

    def call(self, inputs, training=None):
        tokens, durations = inputs
        encodings, log_durations, _ = self.encode(tokens, training=training)
        mel, lengths = self.decode(encodings, durations, training=training)
        return mel, log_durations, lengths

    def infer(self, tokens, *, speed=1.0):
        """Synthesis: (log-mel float32 [batch, frames, n_mels] in the front end's units, lengths int32 [batch]).

        Every character gets at least one frame. Frames past an utterance's length hold ``mel_mean``;
        use ``lengths``.

        Args:
            tokens: int32 [batch, characters], 0 pads.
            speed: float > 0, > 1 speaks faster (durations divided by it).
        """
        encodings, log_durations, mask = self.encode(tokens, training=False)
        durations = predicted_durations(log_durations, mask, max_frames=self.config.max_frames_per_character,
                                        speed=speed)
        durations = tf.maximum(durations, tf.cast(mask, tf.int32))
        mel, lengths = self.decode(encodings, durations, training=False)
        return mel * self.config.mel_std + self.config.mel_mean, lengths

    def losses_for(self, tokens, durations, mel, mel_lengths, training=None):
        """(total, mel L1 in log-mel units, log-duration MSE) for a batch; the mel L1 is what tests bound."""
        pred, log_durations, _ = self((tokens, durations), training=training)
        target = (tf.cast(mel, tf.float32) - self.config.mel_mean) / self.config.mel_std
        target = target[:, :tf.shape(pred)[1]]
        mask = tf.sequence_mask(mel_lengths, tf.shape(pred)[1], tf.float32)[..., tf.newaxis]
        mel_l1 = tf.reduce_sum(tf.abs(pred - target) * mask) / tf.maximum(tf.reduce_sum(mask) * self.n_mels, 1.0)
        token_mask = tf.cast(tokens > 0, tf.float32)
        duration_target = tf.math.log1p(tf.cast(durations, tf.float32))
        duration_mse = (tf.reduce_sum(tf.square(log_durations - duration_target) * token_mask)
                        / tf.maximum(tf.reduce_sum(token_mask), 1.0))
        return mel_l1 + self.duration_weight * duration_mse, mel_l1 * self.config.mel_std, duration_mse

    @property
    def metrics(self):
        return [self.loss_tracker, self.mel_tracker, self.duration_tracker]

    def train_step(self, data):
        (tokens, durations), (mel, mel_lengths) = data
        with tf.GradientTape() as tape:
            loss, mel_l1, duration_mse = self.losses_for(tokens, durations, mel, mel_lengths, training=True)
        grads = tape.gradient(loss, self.trainable_variables)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
                               + [tf.math.is_finite(loss)])
        tf.cond(finite, lambda: self.optimizer.apply(grads, self.trainable_variables), lambda: None)
        weight = tf.cast(finite, tf.float32)
        self.loss_tracker.update_state(tf.where(finite, loss, 0.0), sample_weight=weight)
        self.mel_tracker.update_state(tf.where(finite, mel_l1, 0.0), sample_weight=weight)
        self.duration_tracker.update_state(tf.where(finite, duration_mse, 0.0), sample_weight=weight)
        return {"loss": self.loss_tracker.result(), "mel_l1": self.mel_tracker.result(),
                "duration_mse": self.duration_tracker.result(), "nonfinite": 1.0 - weight, "batch_loss": loss}

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(), "n_mels": self.n_mels,
                "duration_weight": self.duration_weight}
