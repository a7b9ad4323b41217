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

__all__ = ["plan_batches", "naive_batches", "padding_efficiency", "frame_counts", "padded_length", "FeatureCache",
           "asr_dataset"]

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


def padded_length(length, bucket):
    """``length`` rounded up to a multiple of ``bucket`` (int or int tensor; ``bucket`` None or 1 leaves it)."""
    if not bucket or bucket == 1:
        return length
    return (length + bucket - 1) // bucket * bucket


class FeatureCache:
    """Front-end features of every utterance, computed once and held in memory for all epochs.

    SpecAugment runs inside the model, so the features an utterance gets are the same in every
    epoch; decoding and analysing the audio again each epoch would only take CPU from the training
    step. Each utterance is analysed alone, as ``asr_dataset`` does without a cache, so the
    features are the same whichever way the dataset is built. A 1-hour corpus of 80-bin features
    takes about 115 MB (frames x bins x 4 bytes).

    Args:
        utterances: list of ``Utterance``.
        frontend: ``FrontendConfig``; a dataset with another front end refuses the cache.
        num_parallel_calls: ``tf.data`` parallelism of decoding and analysis.

    Raises:
        AudioError (inside a ``tf.errors`` error from the pipeline): an audio file does not decode.
    """

    def __init__(self, utterances, frontend, *, num_parallel_calls=tf.data.AUTOTUNE):
        self.frontend = frontend
        self.ids = [u.id for u in utterances]
        ds = tf.data.Dataset.from_tensor_slices([u.audio for u in utterances])
        ds = ds.map(lambda path: _features(path, frontend), num_parallel_calls=num_parallel_calls, deterministic=True)
        self.features = [f.numpy() for f, _ in ds.prefetch(tf.data.AUTOTUNE)]
        self.lengths = np.array([len(f) for f in self.features], np.int32)

    @property
    def nbytes(self):
        """int, memory held by the features."""
        return int(sum(f.nbytes for f in self.features))

    def check(self, utterances, frontend):
        """Raise ``ValueError`` unless the cache holds ``utterances`` (same ids, same order) under ``frontend``."""
        if frontend != self.frontend:
            raise ValueError("the feature cache was computed with another front-end config")
        if [u.id for u in utterances] != self.ids:
            raise ValueError("the feature cache holds other utterances (or another order) than the dataset")

    def batch(self, indices, padded_frames):
        """float32 [len(indices), padded_frames, bins], zero beyond each utterance's frames."""
        out = np.zeros((len(indices), padded_frames, self.frontend.num_features), np.float32)
        for row, i in enumerate(indices):
            out[row, :len(self.features[i])] = self.features[i]
        return out


def _load_audio(path, frontend):
    return audio_io.load(path.decode("utf-8"), sample_rate=frontend.sample_rate)


def _features(path, frontend):
    """Features of one utterance: (float32 [frames, bins], int32 frames)."""
    audio = tf.numpy_function(lambda p: _load_audio(p, frontend), [path], tf.float32, stateful=False)
    audio.set_shape([None])
    feats, num = fe.features(audio[tf.newaxis], tf.shape(audio)[:1], config=frontend)
    return feats[0], num[0]


def asr_dataset(utterances, batches, *, vocabulary, frontend, num_parallel_calls=tf.data.AUTOTUNE, feature_cache=None,
                bucket_frames=None, bucket_labels=None):
    """A dataset of padded CTC training batches, in the order of ``batches``.

    Without a cache, audio is decoded in parallel (soundfile and soxr release the GIL) and features
    are computed by the shared front end in TensorFlow; with ``feature_cache`` they are read from
    memory. Batches are padded to their own longest item, or, with ``bucket_frames``, further up to
    a multiple of ``bucket_frames`` frames (and labels to a multiple of ``bucket_labels``), so that
    the batches of a run take few distinct shapes and an XLA-compiled step is compiled once per
    shape instead of once per batch. The lengths stay the true ones: every layer masks by them,
    so padding changes neither the outputs on valid frames nor the CTC loss.

    Args:
        utterances: list of ``Utterance`` with normalised text.
        batches: list of lists of indices, e.g. from ``plan_batches``. Without a cache all but the
            last must have the same size; with one, sizes are free (several epochs' plans can be
            concatenated into one dataset).
        vocabulary: ``speechkit.text.Vocabulary``.
        frontend: ``FrontendConfig``.
        num_parallel_calls: ``tf.data`` parallelism of decoding and analysis (no cache).
        feature_cache: optional ``FeatureCache`` of these ``utterances`` under ``frontend``.
        bucket_frames: optional int > 0, the padded frame count is a multiple of it.
        bucket_labels: optional int > 0, the padded label length is a multiple of it; defaults to
            ``bucket_frames // 2`` when ``bucket_frames`` is set.

    Returns:
        tf.data.Dataset of ``(features float32 [B, T, F], feature_lengths int32 [B],
        labels int32 [B, L], label_lengths int32 [B])``.

    Raises:
        ValueError: no batches, unequal batch sizes without a cache, a cache of other utterances or
            another front end, or a bucket < 1.
    """
    if not batches:
        raise ValueError("no batches to iterate: the manifest selection is empty")
    for name, value in (("bucket_frames", bucket_frames), ("bucket_labels", bucket_labels)):
        if value is not None and (int(value) != value or value < 1):
            raise ValueError(f"{name} must be an int >= 1 or None, received: {value!r}")
    if bucket_labels is None and bucket_frames:
        bucket_labels = max(1, bucket_frames // 2)
    encoded = [vocabulary.encode(u.text) for u in utterances]
    if feature_cache is not None:
        feature_cache.check(utterances, frontend)
        return _cached_dataset(feature_cache, encoded, batches, bucket_frames, bucket_labels)
    sizes = {len(b) for b in batches[:-1]}
    if len(sizes) > 1 or (sizes and len(batches[-1]) > next(iter(sizes))):
        raise ValueError("all batches but the last must have the same size")
    batch_size = len(batches[0])
    order = [i for b in batches for i in b]
    paths = [utterances[i].audio for i in order]
    labels = tf.ragged.constant([encoded[i] for i in order], dtype=tf.int32, row_splits_dtype=tf.int64)

    def prepare(path, label):
        feats, num = _features(path, frontend)
        return feats, num, label, tf.shape(label)[0]

    def pad_to_buckets(feats, feat_lens, labels, label_lens):
        frames = padded_length(tf.shape(feats)[1], bucket_frames)
        width = padded_length(tf.shape(labels)[1], bucket_labels)
        feats = tf.pad(feats, [[0, 0], [0, frames - tf.shape(feats)[1]], [0, 0]])
        labels = tf.pad(labels, [[0, 0], [0, width - tf.shape(labels)[1]]])
        return feats, feat_lens, labels, label_lens

    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.map(prepare, num_parallel_calls=num_parallel_calls, deterministic=True)
    ds = ds.padded_batch(batch_size, padded_shapes=([None, frontend.num_features], [], [None], []))
    if bucket_frames or bucket_labels:
        ds = ds.map(pad_to_buckets)
    return ds.prefetch(tf.data.AUTOTUNE)


def _cached_dataset(cache, encoded, batches, bucket_frames, bucket_labels):
    label_lengths = np.array([len(e) for e in encoded], np.int32)

    def make(position):
        indices = batches[int(position)]
        frames = int(padded_length(int(cache.lengths[indices].max()), bucket_frames))
        width = int(padded_length(max(int(label_lengths[indices].max()), 1), bucket_labels))
        labels = np.zeros((len(indices), width), np.int32)
        for row, i in enumerate(indices):
            labels[row, :len(encoded[i])] = encoded[i]
        return cache.batch(indices, frames), cache.lengths[indices], labels, label_lengths[indices]

    def load(position):
        out = tf.numpy_function(make, [position], (tf.float32, tf.int32, tf.int32, tf.int32), stateful=False)
        out[0].set_shape([None, None, cache.frontend.num_features])
        out[1].set_shape([None])
        out[2].set_shape([None, None])
        out[3].set_shape([None])
        return out

    ds = tf.data.Dataset.range(len(batches)).map(load, num_parallel_calls=1, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
