"""The CTC training step of Deep Speech 2: a Keras ``Model`` wrapper whose ``train_step`` skips bad batches."""

import keras
import tensorflow as tf

from speechkit.text import BLANK_INDEX
from speechkit.training.distribute import multi_worker

__all__ = ["CTCTrainer", "ctc_loss", "ctc_min_frames"]


def ctc_min_frames(label):
    """Fewest frames CTC needs for ``label`` (a sequence of class ids): its length plus one blank per repeat."""
    label = list(label)
    return len(label) + sum(1 for a, b in zip(label, label[1:]) if a == b)


def ctc_loss(labels, label_lengths, log_probs, logit_lengths):
    """Per-utterance CTC negative log-likelihood with TRUE label and logit lengths (blank = 0).

    Runs TensorFlow's native CTC kernel (forward-backward in C++, O(frames x labels) per utterance,
    the gradient computed in the same pass). ``tf.nn.ctc_loss`` with dense labels would instead run
    a pure-TensorFlow forward-backward that multiplies by a (2L+1) x (2L+1) transition matrix at
    every frame: 30-100x slower for 3-10 s utterances, and the largest cost of a training step.
    The native kernel wants the blank last, so class 0 is moved to the end and labels shift down
    by one. An utterance whose label needs more frames than it has (``ctc_min_frames``) has no
    alignment: its loss is +inf and its gradient zero.

    Args:
        labels: int32 [batch, max_label], padded with anything beyond ``label_lengths``; no blanks.
        label_lengths: int32 [batch], >= 1.
        log_probs: float [batch, frames, vocab] (log-softmax or unnormalised logits).
        logit_lengths: int32 [batch], valid frames of ``log_probs``.

    Returns:
        float32 [batch].
    """
    labels = tf.cast(labels, tf.int32)
    label_lengths = tf.cast(label_lengths, tf.int32)
    logit_lengths = tf.cast(logit_lengths, tf.int32)
    logits = tf.cast(log_probs, tf.float32)
    logits = tf.concat([logits[..., BLANK_INDEX + 1:], logits[..., :BLANK_INDEX + 1]], axis=-1)
    positions = tf.where(tf.sequence_mask(label_lengths, tf.shape(labels)[1]))
    sparse = tf.SparseTensor(positions, tf.gather_nd(labels, positions) - (BLANK_INDEX + 1),
                             tf.cast(tf.shape(labels), tf.int64))
    losses = tf.compat.v1.nn.ctc_loss(sparse, logits, logit_lengths, time_major=False,
                                      ignore_longer_outputs_than_inputs=True)
    impossible = _ctc_min_frames(labels, label_lengths) > logit_lengths
    return tf.where(impossible, tf.constant(float("inf")), losses)


class CTCTrainer(keras.Model):
    """Wraps a Deep Speech 2 network with a CTC ``train_step`` for ``fit``.

    Data elements are ``((features, feature_lengths), (labels, label_lengths))``. The loss is the
    per-utterance CTC loss with the true label and output lengths, averaged over the global batch
    (all replicas). Only the wrapped network is saved as ``model.keras``; the wrapper's weights file
    (network plus optimizer state) is the resumable checkpoint.

    A step with a non-finite loss or gradient on any replica, or with a label longer than its CTC
    alignment allows, is skipped on all of them: no weight, optimizer slot, step counter or
    batch-norm statistic changes, and the step reports ``nonfinite = 1`` in its logs. The logs also
    carry ``batch_loss``, this step's mean loss over the global batch (``loss`` is the epoch's
    running mean).

    Args:
        network: the functional model from ``build_deepspeech2``.
    """

    def __init__(self, network, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, inputs, training=None):
        return self.network(inputs, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        (features, feature_lengths), (labels, label_lengths) = data
        context = tf.distribute.get_replica_context()
        count = tf.cast(tf.shape(features)[0], tf.float32)
        global_count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
        statistics = self.network.non_trainable_variables
        before = [tf.identity(v.value) for v in statistics]
        with tf.GradientTape() as tape:
            log_probs, lengths = self.network([features, feature_lengths], training=True)
            losses = ctc_loss(labels, label_lengths, log_probs, lengths)
            loss = tf.reduce_sum(losses) / tf.maximum(global_count, 1.0)
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.trainable_variables)
        checked = [losses]
        if not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            checked += [g for g in grads if g is not None]  # (loss scaling skips overflowing gradients itself)
        local_bad = tf.logical_not(tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in checked]))
        local_bad = tf.logical_or(local_bad, tf.reduce_any(_ctc_min_frames(labels, label_lengths) > lengths))
        bad = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(local_bad, tf.float32)) > 0
        self._apply_unless(bad, grads)
        for variable, value in zip(statistics, before):
            variable.assign(tf.where(bad, value, variable.value))
        mean = tf.reduce_sum(losses) / tf.maximum(count, 1.0)
        self.loss_tracker.update_state(tf.where(bad, 0.0, mean), sample_weight=tf.where(bad, 0.0, count))
        batch_total = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(losses))
        batch_loss = batch_total / tf.maximum(global_count, 1.0)
        logs = {"loss": self.loss_tracker.result(), "nonfinite": tf.cast(bad, tf.float32), "batch_loss": batch_loss}
        if multi_worker(tf.distribute.get_strategy()):
            # Keras averages multi-worker logs with ``strategy.reduce("MEAN", value, axis=0)``: give them that axis.
            logs = {key: tf.reshape(value, [1]) for key, value in logs.items()}
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Skip Keras' build from the first batch when ``train`` has already built network and optimizer.

        That build reduces the first (nested) batch across workers with ``strategy.reduce``, which
        fails under ``MultiWorkerMirroredStrategy`` (Keras 3.15: "Attempt to convert a value
        (PerReplica...) to a Tensor"), and it has nothing left to create here. Keras offers no
        public switch for this; without the override multi-worker training fails at its first step.
        """
        if self.built and self.optimizer is not None and self.optimizer.built:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _apply_unless(self, skip, grads):
        """Apply ``grads`` unless ``skip`` (a bool tensor, equal on every replica).

        Without a distribution strategy this is a ``tf.cond``. Under one, optimizers may need
        ``merge_call`` to update mirrored variables, which is forbidden inside a ``tf.cond`` in
        replica context, so the condition is evaluated in cross-replica context, as Keras'
        ``LossScaleOptimizer`` does.
        """
        variables = self.trainable_variables

        def apply():
            self.optimizer.apply(grads, variables)

        if not tf.distribute.has_strategy():
            tf.cond(skip, lambda: None, apply)
            return

        def cross_replica(distribution, skip, grads):
            skip = distribution.experimental_local_results(skip)[0]

            def apply_everywhere():
                distribution.extended.call_for_each_replica(lambda g: self.optimizer.apply(g, variables),
                                                            args=(grads,))

            tf.cond(skip, lambda: None, apply_everywhere)

        tf.distribute.get_replica_context().merge_call(cross_replica, args=(skip, grads))


def _ctc_min_frames(labels, label_lengths):
    """In-graph ``ctc_min_frames``: label length plus one blank per repeated character, int32 [batch]."""
    labels = tf.cast(labels, tf.int32)
    label_lengths = tf.cast(label_lengths, tf.int32)
    inside = tf.sequence_mask(label_lengths - 1, tf.shape(labels)[1] - 1)
    repeats = tf.logical_and(tf.equal(labels[:, 1:], labels[:, :-1]), inside)
    return label_lengths + tf.reduce_sum(tf.cast(repeats, tf.int32), axis=1)
