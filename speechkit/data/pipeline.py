"""tf.data input pipelines for CTC training, with SortaGrad and length bucketing.

The batch plan is computed in Python from the manifest durations, deterministically for a
``(seed, epoch)`` pair. That makes three things simple and exact: SortaGrad (epoch 0 sorted by
duration), padding efficiency (measured on the plan, without decoding audio), and resuming in
the middle of an epoch (drop the batches already trained on: ``plan[step:]``).
"""

import numpy as np
import tensorflow as tf

from speechkit import audio as audio_io
from speechkit import frontend as fe

__all__ = ["plan_batches", "naive_batches", "padding_efficiency", "frame_counts", "asr_dataset"]

_BUCKET_SPAN = 32


def plan_batches(durations, *, batch_size, epoch, seed=0, sortagrad=True):
    """Order utterances into batches for one epoch.

    Epoch 0 with SortaGrad (Amodei et al., 2016, §3.1) is sorted by duration, ascending: short
    utterances first give CTC an easier start. Other epochs are length-bucketed: shuffle, sort
    within spans of ``32 * batch_size`` utterances, cut into batches, and shuffle the batch order.
    Utterances in a batch then have similar lengths, so little compute goes to padding, while the
    batch order stays random.

    Args:
        durations: sequence of float, one per utterance (any length unit).
        batch_size: int > 0, utterances per batch.
        epoch: int >= 0.
        seed: int, shuffling seed; the plan is a pure function of ``(durations, batch_size, epoch, seed)``.
        sortagrad: bool, sort epoch 0 by length.

    Returns:
        list of lists of int indices. Every batch has ``batch_size`` items except the last.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, received: {batch_size}")
    durations = np.asarray(durations, dtype=np.float64)
    if epoch == 0 and sortagrad:
        order = np.argsort(durations, kind="stable")
        return _chunk(order, batch_size)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(durations))
    span = _BUCKET_SPAN * batch_size
    spans = [order[i:i + span] for i in range(0, len(order), span)]
    order = np.concatenate([s[np.argsort(durations[s], kind="stable")] for s in spans]) if spans else order
    batches = _chunk(order, batch_size)
    full = [b for b in batches if len(b) == batch_size]
    short = [b for b in batches if len(b) != batch_size]
    return [full[i] for i in rng.permutation(len(full))] + short


def naive_batches(num_items, *, batch_size, epoch, seed=0):
    """Shuffled batches with no regard to length: the baseline for ``padding_efficiency``."""
    order = np.random.default_rng([seed, epoch]).permutation(num_items)
    return _chunk(order, batch_size)


def _chunk(order, batch_size):
    return [[int(i) for i in order[j:j + batch_size]] for j in range(0, len(order), batch_size)]


def frame_counts(utterances, frontend):
    """Feature frames of each utterance, from its manifest duration."""
    samples = [int(round(u.duration * frontend.sample_rate)) for u in utterances]
    return [int(fe.num_frames(n, frontend)) for n in samples]


def padding_efficiency(frame_counts, batches):
    """Real frames divided by padded frames (batch size x longest item, summed over batches)."""
    counts = np.asarray(frame_counts)
    real = sum(int(counts[b].sum()) for b in batches)
    padded = sum(int(counts[b].max()) * len(b) for b in batches)
    return real / padded if padded else 1.0


def asr_dataset(utterances, batches, *, vocabulary, frontend, num_parallel_calls=tf.data.AUTOTUNE):
    """A dataset of padded CTC training batches, in the order of ``batches``.

    Audio is decoded in parallel (soundfile and soxr release the GIL), features are computed by the
    shared front end in TensorFlow, and batches are padded to their own longest item.

    Args:
        utterances: list of ``Utterance`` with normalised text.
        batches: list of lists of indices, e.g. from ``plan_batches``; all but the last of equal size.
        vocabulary: ``speechkit.text.Vocabulary``.
        frontend: ``FrontendConfig``.

    Returns:
        tf.data.Dataset of ``(features float32 [B, T, F], feature_lengths int32 [B],
        labels int32 [B, L], label_lengths int32 [B])``.
    """
    if not batches:
        raise ValueError("no batches to iterate: the manifest selection is empty")
    sizes = {len(b) for b in batches[:-1]}
    if len(sizes) > 1 or (sizes and len(batches[-1]) > next(iter(sizes))):
        raise ValueError("all batches but the last must have the same size")
    batch_size = len(batches[0])
    order = [i for b in batches for i in b]
    paths = [utterances[i].audio for i in order]
    labels = tf.ragged.constant([vocabulary.encode(utterances[i].text) for i in order], dtype=tf.int32)

    def load(path):
        return audio_io.load(path.decode("utf-8"), sample_rate=frontend.sample_rate)

    def prepare(path, label):
        audio = tf.numpy_function(load, [path], tf.float32, stateful=False)
        audio.set_shape([None])
        feats, num = fe.features(audio[tf.newaxis], tf.shape(audio)[:1], config=frontend)
        return feats[0], num[0], label, tf.shape(label)[0]

    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.map(prepare, num_parallel_calls=num_parallel_calls, deterministic=True)
    ds = ds.padded_batch(batch_size, padded_shapes=([None, frontend.num_features], [], [None], []))
    return ds.prefetch(tf.data.AUTOTUNE)
