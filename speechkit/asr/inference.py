"""Load a trained Deep Speech 2 run and recognise audio in batches.

The front end runs inside the same ``tf.function`` as the network, on the zero-padded batch, so
serving computes exactly the features training saw (``speechkit.frontend``). The run is read through
``speechkit.runs.RunDir``, and the front end in its ``config.yaml`` is checked against the one the
model carries before anything is recognised.

Long recordings are cut into overlapping windows of at most ``chunk_seconds``: each window's
outer ``chunk_context_seconds`` on either side only give the bidirectional GRUs context and are
cut off again, and the kept cores are joined frame-exactly. Memory then grows with the window,
not with the recording, and ``transcribe_files`` reads a long file window by window from disk.
"""

import logging

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from speechkit import audio as audio_io
from speechkit import frontend as fe
from speechkit.asr.decoding import greedy_decode
from speechkit.asr.deepspeech2 import DeepSpeech2, DeepSpeech2Config, build_deepspeech2, output_lengths
from speechkit.asr.streaming import RecognizerStream, StreamingModel
from speechkit.data.manifest import SkipReport
from speechkit.errors import AudioError, ConfigError, RunError
from speechkit.runs import RunDir

__all__ = ["Recognizer", "load_run"]

logger = logging.getLogger(__name__)


class Recognizer:
    """A trained network with its vocabulary and front end.

    Args:
        network: ``DeepSpeech2`` (``[features, feature_lengths] -> [log_probs, lengths]``), or any model
            with that signature and a ``time_reduction_factor`` attribute.
        vocabulary: ``speechkit.text.Vocabulary``; its size must equal the network's output size.
        frontend: ``FrontendConfig`` the network was trained with.
        run_dir: optional str, where the run was loaded from.
        batch_size: int > 0, most utterances per forward pass.
        max_batch_seconds: float > 0, most padded audio seconds per forward pass (bounds memory).
        chunk_seconds: float > 0, longest window the network sees at once; longer audio is split.
        chunk_context_seconds: float >= 0, context on each side of a window's kept core; must
            leave a core of at least one output frame.

    Attributes:
        vocabulary, frontend, run_dir, network.
    """

    def __init__(self, network, *, vocabulary, frontend, run_dir=None, batch_size=16, max_batch_seconds=400.0,
                 chunk_seconds=30.0, chunk_context_seconds=2.0):
        out_size = network.outputs[0].shape[-1]
        if out_size != vocabulary.size:
            raise ConfigError(f"{run_dir or 'model'}: network outputs {out_size} classes, "
                              f"vocabulary has {vocabulary.size}")
        in_size = network.inputs[0].shape[-1]
        if in_size != frontend.num_features:
            raise ConfigError(f"{run_dir or 'model'}: network takes {in_size} features per frame, front end gives "
                              f"{frontend.num_features}")
        if batch_size < 1 or max_batch_seconds <= 0:
            raise ConfigError(f"need batch_size >= 1 and max_batch_seconds > 0, received {batch_size}, "
                              f"{max_batch_seconds}")
        self.network = network
        self.vocabulary = vocabulary
        self.frontend = frontend
        self.run_dir = run_dir
        self.batch_size = int(batch_size)
        self.max_batch_samples = int(max_batch_seconds * frontend.sample_rate)
        self.time_reduction_factor = int(network.time_reduction_factor)
        unit = frontend.hop_length * self.time_reduction_factor
        self._context = int(chunk_context_seconds * frontend.sample_rate) // unit * unit
        self._core = (int(chunk_seconds * frontend.sample_rate) - 2 * self._context) // unit * unit
        if self._core < unit or chunk_context_seconds < 0:
            raise ConfigError(f"chunk_seconds={chunk_seconds} leaves no core after 2 x chunk_context_seconds="
                              f"{chunk_context_seconds} of context")
        self.chunk_samples = self._core + 2 * self._context

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int32)])
        def forward(audio, lengths):
            feats, frames = fe.features(audio, lengths, config=frontend)
            log_probs, out_lengths = network([feats, frames], training=False)
            return tf.cast(log_probs, tf.float32), out_lengths

        self._forward = forward
        self._streaming = None

    def streaming_model(self):
        """The network as a ``StreamingModel`` (built once; raises ConfigError when it cannot stream)."""
        if self._streaming is None:
            self._streaming = StreamingModel(self.network, frontend=self.frontend, source=self.run_dir or "model")
        return self._streaming

    def stream(self, *, decoder=None):
        """Start recognising one utterance chunk by chunk (``speechkit.asr.streaming.RecognizerStream``).

        ``stream.feed(samples)`` returns the partial transcript so far and ``stream.finish()`` the
        final one, which equals ``transcribe([audio], decoder)[0]`` on the whole audio.

        Args:
            decoder: None (greedy) or an object with ``decode_batch``, for the final transcript.

        Raises:
            ConfigError: the model cannot stream (bidirectional GRUs, or per-utterance normalisation).
        """
        return RecognizerStream(self.streaming_model(), vocabulary=self.vocabulary, decoder=decoder)

    def _batches(self, lengths):
        order = np.argsort(lengths, kind="stable")
        batches, current = [], []
        for i in order:
            full = len(current) == self.batch_size or lengths[i] * (len(current) + 1) > self.max_batch_samples
            if current and full:
                batches.append(current)
                current = []
            current.append(int(i))
        if current:
            batches.append(current)
        return batches

    def windows(self, num_samples):
        """How audio of ``num_samples`` samples is cut for the network.

        Returns:
            list of ``(start, end, keep_from, keep_to)``: window ``[start, end)`` in samples, and the
            slice of its output frames to keep. Joining the kept slices gives exactly the number of
            output frames of the whole recording. One window when ``num_samples <= chunk_samples``.
        """
        if num_samples <= self.chunk_samples:
            return [(0, num_samples, 0, None)]
        unit = self.frontend.hop_length * self.time_reduction_factor
        total = int(output_lengths(fe.num_frames(num_samples, self.frontend), [(self.time_reduction_factor, 1)]))
        out = []
        for core in range(0, num_samples, self._core):
            start, end = max(0, core - self._context), min(num_samples, core + self._core + self._context)
            offset = start // unit
            out.append((start, end, core // unit - offset, min((core + self._core) // unit, total) - offset))
        return out

    def log_probs(self, audios):
        """Per-frame log-probabilities for each utterance, over its true length only.

        Utterances are sorted by length and batched, so padding stays small; because the network is
        padding-invariant the result does not depend on the batching. Audio longer than
        ``chunk_samples`` is recognised in overlapping windows (``windows``).

        Args:
            audios: list of float32 [samples] arrays at ``frontend.sample_rate``, in [-1, 1].

        Returns:
            list of float32 [frames_i, vocabulary.size] log-softmax arrays, in input order.

        Raises:
            AudioError: an item is empty, not 1-D, or not finite.
        """
        audios = [audio_io.valid_audio(a, source=f"audio[{i}]") for i, a in enumerate(audios)]
        pieces, owners = [], []
        for i, audio in enumerate(audios):
            for start, end, keep_from, keep_to in self.windows(len(audio)):
                pieces.append(audio[start:end])
                owners.append((i, keep_from, keep_to))
        outputs = self._run(pieces)
        parts = [[] for _ in audios]
        for (i, keep_from, keep_to), lp in zip(owners, outputs):
            parts[i].append(lp[keep_from:keep_to])
        return [p[0] if len(p) == 1 else np.concatenate(p) for p in parts]

    def _run(self, audios):
        lengths = np.array([len(a) for a in audios], np.int64)
        results = [None] * len(audios)
        for batch in self._batches(lengths):
            longest = int(lengths[batch].max())
            padded = np.zeros((len(batch), longest), np.float32)
            for row, i in enumerate(batch):
                padded[row, :lengths[i]] = audios[i]
            log_probs, out_lengths = self._forward(tf.constant(padded), tf.constant(lengths[batch], tf.int32))
            log_probs, out_lengths = log_probs.numpy(), out_lengths.numpy()
            for row, i in enumerate(batch):
                results[i] = log_probs[row, :out_lengths[row]].copy()
        return results

    def transcribe(self, audios, decoder=None):
        """Transcripts of ``audios``: greedy when ``decoder`` is None, else ``decoder.decode_batch(log_probs)``."""
        return self._decode(self.log_probs(audios), decoder)

    def _decode(self, log_probs, decoder):
        if decoder is None:
            return [greedy_decode(lp, self.vocabulary) for lp in log_probs]
        return list(decoder.decode_batch(log_probs))

    def transcribe_files(self, paths, *, decoder=None, skip_report=None, files_per_batch=None):
        """Transcribe audio files lazily, in bounded memory: yield ``(path, transcript)`` in input order.

        Files are read ``files_per_batch`` at a time and released after decoding, so memory does not
        grow with the number of files. A file longer than ``chunk_samples`` is read from disk one
        window at a time (``speechkit.audio.load`` with an offset), so memory does not grow with its
        length either. An unreadable file is not yielded: it is counted in ``skip_report`` under
        ``bad_audio`` (with the reason naming the file) and the next file is processed.

        Args:
            paths: iterable of str, audio files in any libsndfile format and rate.
            decoder: None for greedy, else an object with ``decode_batch``.
            skip_report: optional ``SkipReport`` that receives the skipped files.
            files_per_batch: int > 0, files read together; defaults to ``batch_size``.

        Yields:
            ``(path, str)``.
        """
        skips = skip_report if skip_report is not None else SkipReport()
        group_size = int(files_per_batch or self.batch_size)
        rate = self.frontend.sample_rate
        group = []
        for path in paths:
            try:
                seconds = audio_io.info(path)[0]
                if seconds * rate > self.chunk_samples:
                    yield from self._flush(group, decoder)
                    group = []
                    yield path, self._decode([self.log_probs_file(path)], decoder)[0]
                    continue
                group.append((path, audio_io.load(path, sample_rate=rate)))
            except AudioError as err:
                logger.debug("skipped: %s", err)
                skips.add("bad_audio", path, err)
                continue
            if len(group) >= group_size:
                yield from self._flush(group, decoder)
                group = []
        yield from self._flush(group, decoder)

    def _flush(self, group, decoder):
        if not group:
            return []
        texts = self.transcribe([audio for _, audio in group], decoder=decoder)
        return [(path, text) for (path, _), text in zip(group, texts)]

    def log_probs_file(self, path, *, progress=False):
        """Log-probabilities of an audio file of any length, in memory bounded by the window, not the file.

        The file is read one window at a time (``windows``), ``batch_size`` windows per forward pass,
        so an hour-long recording never sits in memory as a whole.

        Args:
            path: str, an audio file in any libsndfile format and rate.
            progress: bool, show a progress bar over the seconds recognised.

        Returns:
            float32 [frames, vocabulary.size], as ``log_probs`` of the whole file.

        Raises:
            AudioError: the file is missing, unreadable or corrupt.
        """
        rate = self.frontend.sample_rate
        seconds = audio_io.info(path)[0]
        windows = self.windows(int(round(seconds * rate)))
        parts = []
        with tqdm(total=round(seconds), desc="recognise", unit="s", disable=not progress) as bar:
            for first in range(0, len(windows), self.batch_size):
                chunk = windows[first:first + self.batch_size]
                audios = [audio_io.load(path, sample_rate=rate, offset=start / rate, duration=(end - start) / rate)
                          for start, end, _, _ in chunk]
                for (_, _, keep_from, keep_to), lp in zip(chunk, self._run(audios)):
                    parts.append(lp[keep_from:keep_to])
                bar.update(min(round(seconds), round(chunk[-1][1] / rate)) - bar.n)
        logger.info("%s: %.1f s recognised in %d windows of at most %.1f s", path, seconds, len(windows),
                    self.chunk_samples / rate)
        return np.concatenate(parts)


def _network_from_weights(run, vocabulary):
    """The DeepSpeech2 of ``config.yaml`` with the weights of ``weights.npz`` (a released model)."""
    config_path = run.file(RunDir.CONFIG)
    section = run.read_config().get("model")
    if not isinstance(section, dict):
        raise RunError(f"{config_path}: no model section to build the network from")
    config = DeepSpeech2Config.from_dict(section, source=config_path)
    network = build_deepspeech2(config, frontend=run.frontend(), vocab_size=vocabulary.size)
    return run.load_weights(network)


def load_run(run_dir, *, expected_frontend=None, batch_size=16, chunk_seconds=30.0):
    """Load a trained Deep Speech 2 run through ``RunDir``, checking that its parts agree.

    The network carries its own front end (``DeepSpeech2.frontend``); when the run has a
    ``config.yaml``, its ``frontend`` section (``RunDir.frontend``) must equal it. The vocabulary
    must match the network's outputs. A released model (``speechkit.models``) has no
    ``model.keras``: its network is built from the ``model`` and ``frontend`` sections of
    ``config.yaml`` and its ``weights.npz`` (float32 or float16) is loaded into it.

    Args:
        run_dir: str or RunDir, a directory written by ASR training.
        expected_frontend: optional FrontendConfig the caller's features use; any difference raises.
        batch_size: int, utterances per forward pass.
        chunk_seconds: float, longest window recognised at once (``Recognizer``).

    Returns:
        Recognizer.

    Raises:
        RunError: ``model.keras`` (or ``weights.npz`` with ``config.yaml``) or ``vocabulary.json``
        is missing, a file is unreadable or corrupt, or the model is not a Deep Speech 2 model;
        ConfigError: the run's front end differs from the network's, or from ``expected_frontend``,
        or the vocabulary from the network's output size.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    released = not run.exists(RunDir.MODEL) and (run.exists(RunDir.WEIGHTS) or run.exists(RunDir.CARD))
    source = run.file(RunDir.WEIGHTS if released else RunDir.MODEL)
    for name in (RunDir.WEIGHTS if released else RunDir.MODEL, RunDir.VOCABULARY):
        if not run.exists(name):
            raise RunError(f"{run.file(name)}: missing; is {run.path} a trained ASR run?")
    vocabulary = run.vocabulary()
    network = _network_from_weights(run, vocabulary) if released else run.load_model(cls=DeepSpeech2)
    frontend = network.frontend
    if run.exists(RunDir.CONFIG):
        run.check_frontend(frontend, source=source)
    if expected_frontend is not None:
        frontend.check_matches(expected_frontend, source=source)
    logger.info("loaded %s: %d parameters, %s features", source, network.count_params(), frontend.kind)
    return Recognizer(network, vocabulary=vocabulary, frontend=frontend, run_dir=run.path, batch_size=batch_size,
                      chunk_seconds=chunk_seconds)
