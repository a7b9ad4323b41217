"""Streaming recognition: Deep Speech 2 chunk by chunk with explicit state, equal to whole-utterance inference.

A model streams when each output frame depends on a bounded stretch of future audio: unidirectional
GRUs, convolutions with a bounded right context, and a front end that normalises each frame on its
own (``FrontendConfig.normalization == "fixed"``, statistics computed on the training set and stored
in the model's config). ``check_streamable`` says why a model does not qualify.

``StreamingModel`` runs such a network on chunks of any length. Every stage that looks at several
input frames (the front end's analysis window, each convolution, the lookahead convolution) is a
*stage* ``(kernel, stride, left padding, final padding)``: from the number of items it has received
it knows which outputs are complete, and it keeps the last ``kernel - 1`` inputs as its buffer, so
the next chunk continues exactly where this one stopped. The buffers start at zero, which is the
left padding of the whole-utterance graph; ``finish`` appends each stage's right padding (zeros),
which is what the whole-utterance graph sees after the last frame. The GRUs carry their hidden
states. The state is a flat dict of fixed-shape tensors (``state_spec``), so the same step runs in
Python, in a SavedModel signature and in TFLite.

``lookahead_samples`` computes how much future audio an output frame needs from the layers, and
``RecognizerStream`` (``Recognizer.stream()``) wraps the step with a partial transcript.
"""

import dataclasses
import logging
import math

import numpy as np
import tensorflow as tf

from speechkit import audio as audio_io
from speechkit import frontend as fe
from speechkit.data.manifest import even_spread
from speechkit.errors import AudioError, ConfigError, SpeechkitError

__all__ = [
    "lookahead_samples",
    "lookahead_ms",
    "check_streamable",
    "StreamingModel",
    "GreedyPath",
    "RecognizerStream",
    "stream_transcripts",
    "pcm16_chunks",
    "audio_file_chunks",
    "frontend_with_statistics",
]

logger = logging.getLogger(__name__)


# -- Lookahead and eligibility -- #

def lookahead_samples(config, frontend):
    """Future audio an output frame needs, in samples: the model's algorithmic lookahead.

    Output frame ``j`` (``time_reduction_factor`` feature frames of ``hop`` samples each) is final
    once the stream holds the samples up to ``j * time_reduction_factor * hop + lookahead_samples``
    (exclusive): ``config.lookahead_frames`` feature frames of convolution right context and
    lookahead convolution, plus the part of the last frame's analysis window after its centre.

    Args:
        config: DeepSpeech2Config.
        frontend: FrontendConfig.

    Returns:
        int, or ``math.inf`` for a bidirectional model.
    """
    frames = config.lookahead_frames
    if math.isinf(frames):
        return math.inf
    window = frontend.analysis_window
    return int(frames * frontend.hop_length + window - window // 2)


def lookahead_ms(config, frontend):
    """float, ``lookahead_samples`` in milliseconds (285.0 for ``models/ds2-streaming.yaml``)."""
    return 1000.0 * lookahead_samples(config, frontend) / frontend.sample_rate


def check_streamable(config, frontend, *, source="model"):
    """Raise ``ConfigError`` naming every reason why a model cannot stream with outputs equal to offline.

    Args:
        config: DeepSpeech2Config.
        frontend: FrontendConfig.
        source: str, the model's file or directory, for the message.
    """
    reasons = []
    if config.bidirectional:
        reasons.append("its GRUs are bidirectional (they read the whole utterance backwards)")
    if not frontend.causal:
        reasons.append("its front end normalises each utterance over its whole length (normalization: utterance)")
    elif frontend.needs_statistics:
        reasons.append("its fixed normalisation has no statistics")
    if reasons:
        raise ConfigError(f"{source}: cannot stream: " + "; ".join(reasons)
                          + "; train a streaming preset such as models/ds2-streaming.yaml")


# -- Stages -- #

@dataclasses.dataclass(frozen=True)
class _Stage:
    """A sliding operation over a stream: output ``o`` reads inputs ``o * stride - left`` to ``+ kernel - 1``.

    ``final_pad`` zeros follow the last input at the end of the stream (the right padding of the
    whole-utterance graph). All counts are int32 tensors.
    """

    kernel: int
    stride: int
    left: int
    final_pad: int

    @property
    def right(self):
        return self.kernel - 1 - self.left

    def ready(self, received):
        """Outputs complete once ``received`` inputs have arrived (int32 tensor)."""
        return tf.maximum((received - 1 - self.right) // self.stride + 1, 0)

    def window(self, buffer, new, received, final):
        """The inputs that this chunk's complete outputs read, and the buffer for the next chunk.

        Args:
            buffer: float32 [kernel - 1, ...], the last inputs before this chunk (zeros at the start).
            new: float32 [m, ...], this chunk's inputs.
            received: int32 scalar, inputs received before this chunk.
            final: bool (Python), the stream ends after ``new``.

        Returns:
            (window float32 [(max(n, 1) - 1) * stride + kernel, ...], n int32 scalar outputs, buffer).
            A window for ``n == 0`` is a dummy whose single output is to be dropped.
        """
        context = self.kernel - 1
        x = tf.concat([buffer, new], axis=0)
        total = received + tf.shape(new)[0]
        next_buffer = x[tf.shape(x)[0] - context:]
        if final:
            total += self.final_pad
        done = self.ready(received)
        count = self.ready(total) - done
        tail = tf.concat([[self.final_pad + self.kernel + self.stride], tf.shape(x)[1:]], axis=0)
        x = tf.concat([x, tf.zeros(tail, x.dtype)], axis=0)
        begin = done * self.stride - self.left - (received - context)
        length = (tf.maximum(count, 1) - 1) * self.stride + self.kernel
        return x[begin:begin + length], count, next_buffer


# -- The streaming network -- #

class StreamingModel(tf.Module):
    """A Deep Speech 2 network and its front end as a pure step over explicit state.

    ``step(chunk, state) -> (log_probs, state)`` consumes any number of samples and returns the
    output frames that became final; ``finish(state)`` returns the rest. Concatenated, they equal
    the whole-utterance log-probabilities of ``Recognizer.log_probs`` (to float rounding).

    Args:
        network: ``DeepSpeech2`` whose config and front end pass ``check_streamable``.
        frontend: FrontendConfig, the network's.
        source: str, for error messages.

    Attributes:
        state_spec: dict name -> ``tf.TensorSpec`` (no batch axis): ``samples`` int32 [] (audio received;
            one stream holds up to 2^31 - 1 samples, 37 hours at 16 kHz),
            ``audio`` float32 [analysis_window - 1], ``conv_i`` float32 [kernel_t - 1, bins, channels],
            ``gru_i`` float32 [units], ``lookahead`` float32 [tau, units] (when the model has one).
        vocab_size: int.
        lookahead_samples: int (``lookahead_samples``).
        step_fn, finish_fn: the compiled ``step`` and ``finish`` (one trace each, any chunk length).

    Raises:
        ConfigError: the model cannot stream (``check_streamable``).
    """

    def __init__(self, network, *, frontend, source="model"):
        super().__init__(name="speechkit_stream")
        config = network.config
        check_streamable(config, frontend, source=source)
        self.network = network
        self.frontend = frontend
        self.config = config
        self.vocab_size = int(network.vocab_size)
        self.lookahead_samples = lookahead_samples(config, frontend)
        window = frontend.analysis_window
        self._frontend_stage = _Stage(window, frontend.hop_length, window // 2, window // 2 + window % 2)
        spec = {"samples": tf.TensorSpec([], tf.int32, name="samples"),
                "audio": tf.TensorSpec([window - 1], tf.float32, name="audio")}
        self._convs = []
        bins, channels = frontend.num_features, 1
        for i, ((kt, _), (st, sf), (left, right)) in enumerate(zip(config.conv_kernels, config.conv_strides,
                                                                  config.conv_time_padding)):
            name = f"conv_{i + 1}"
            self._convs.append((name, _Stage(kt, st, left, right), network.get_layer(name)))
            spec[name] = tf.TensorSpec([kt - 1, bins, channels], tf.float32, name=name)
            bins, channels = math.ceil(bins / sf), config.conv_filters[i]
        self._features = bins * channels
        self._grus = [f"gru_{i + 1}" for i in range(config.rnn_layers)]
        for name in self._grus:
            spec[name] = tf.TensorSpec([config.rnn_units], tf.float32, name=name)
        self._lookahead = None
        if config.lookahead:
            self._lookahead = _Stage(config.lookahead + 1, 1, 0, config.lookahead)
            spec["lookahead"] = tf.TensorSpec([config.lookahead, config.rnn_units], tf.float32, name="lookahead")
        self.state_spec = spec
        chunk = tf.TensorSpec([None], tf.float32, name="audio_chunk")
        self.step_fn = tf.function(self.step, input_signature=[chunk, spec])
        self.finish_fn = tf.function(self.finish, input_signature=[spec])

    def initial_state(self):
        """dict name -> zero tensor of ``state_spec``: the state before the first sample."""
        return {name: tf.zeros(s.shape, s.dtype) for name, s in self.state_spec.items()}

    def step(self, chunk, state):
        """Consume ``chunk``; return the output frames it completed and the new state.

        Args:
            chunk: float32 [samples] at ``frontend.sample_rate`` in [-1, 1], any length (0 included).
            state: dict as ``state_spec``.

        Returns:
            (log_probs float32 [frames, vocab_size], state dict).
        """
        return self._advance(chunk, state, final=False)

    def finish(self, state):
        """End the stream: the remaining output frames, float32 [frames, vocab_size]."""
        log_probs, _ = self._advance(tf.zeros([0], tf.float32), state, final=True)
        return log_probs

    def _advance(self, chunk, state, *, final):
        net = self.network
        chunk = tf.reshape(tf.cast(chunk, tf.float32), [-1])
        received = tf.cast(state["samples"], tf.int32)
        new_state = {"samples": received + tf.shape(chunk)[0]}
        window, count, new_state["audio"] = self._frontend_stage.window(state["audio"], chunk, received, final)
        feats = fe.framed_features(tf.expand_dims(window, 0), config=self.frontend)[:, :count]
        if self.frontend.normalize:
            feats = fe.normalize_fixed(feats, config=self.frontend)
        x = tf.expand_dims(feats, -1)
        received = self._frontend_stage.ready(received)
        for name, stage, layer in self._convs:
            window, count, new_state[name] = stage.window(state[name], x[0], received, final)
            x = tf.cast(layer.infer_window(tf.expand_dims(window, 0))[:, :count], tf.float32)
            received = stage.ready(received)
        x = tf.reshape(x, [1, -1, self._features])
        for name in self._grus:
            x, h = net.get_layer(name).infer_from(x, tf.expand_dims(state[name], 0))
            new_state[name] = h[0]
        if self._lookahead is not None:
            window, count, new_state["lookahead"] = self._lookahead.window(state["lookahead"], x[0], received, final)
            x = net.get_layer("lookahead").infer_window(tf.expand_dims(window, 0))[:, :count]
        if self.config.fc_units:
            x = net.get_layer("fc_relu")(net.get_layer("fc")(x))
        log_probs = net.get_layer("log_probs")(net.get_layer("logits")(x))
        new_state = {name: tf.reshape(value, self.state_spec[name].shape) for name, value in new_state.items()}
        return tf.cast(log_probs[0], tf.float32), new_state


# -- The Python stream -- #

class GreedyPath:
    """Best-path CTC decoding that grows with the stream: each chunk of frames costs O(its frames).

    ``text`` always equals ``speechkit.asr.decoding.greedy_decode`` of all frames appended so far.

    Args:
        vocabulary: ``speechkit.text.Vocabulary`` (blank at index 0).
    """

    def __init__(self, vocabulary):
        self._vocabulary = vocabulary
        self._path = []  # best class per frame with repeats collapsed (blanks kept)
        self._last = -1

    def append(self, log_probs):
        """Extend the path with float [frames, vocab] (log-)probabilities."""
        best = np.asarray(log_probs).argmax(axis=1)
        if best.size:
            keep = best != np.concatenate([[self._last], best[:-1]])
            self._path.extend(best[keep].tolist())
            self._last = int(best[-1])

    @property
    def text(self):
        """str, the normalised greedy transcript."""
        return " ".join(self._vocabulary.decode(self._path).split())


class RecognizerStream:
    """One utterance recognised as it arrives: ``feed`` chunks, read partial transcripts, ``finish``.

    Created by ``Recognizer.stream()``. The stream keeps the model's state between chunks (front-end
    overlap, convolution buffers, GRU states, lookahead buffer), so chunks of any size give the same
    final transcript as ``Recognizer.transcribe`` on the whole audio.

    Args:
        model: StreamingModel.
        vocabulary: ``speechkit.text.Vocabulary``.
        decoder: None (greedy) or an object with ``decode_batch``, used by ``finish`` only; partial
            transcripts are greedy.

    Attributes:
        samples: int, audio samples fed so far.
        log_probs: float32 [frames, vocab], the final output frames so far.
    """

    def __init__(self, model, *, vocabulary, decoder=None):
        self._model = model
        self._vocabulary = vocabulary
        self._decoder = decoder
        self._state = model.initial_state()
        self._parts = [np.zeros((0, model.vocab_size), np.float32)]
        self._greedy = GreedyPath(vocabulary)
        self._finished = False
        self.samples = 0

    @property
    def log_probs(self):
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
        return self._parts[0]

    @property
    def partial(self):
        """str, the greedy transcript of the final output frames so far (``greedy_decode`` of ``log_probs``)."""
        return self._greedy.text

    def _append(self, log_probs):
        self._parts.append(log_probs)
        self._greedy.append(log_probs)
    def feed(self, samples):
        """Add audio; return the partial transcript so far.

        Args:
            samples: float [n] at the model's sample rate in [-1, 1], any n >= 0.

        Returns:
            str, greedy transcript of the output frames whose lookahead has arrived.

        Raises:
            AudioError: the samples are not a finite 1-D array.
            SpeechkitError: the stream has finished.
        """
        if self._finished:
            raise SpeechkitError("this stream has finished; start another with Recognizer.stream()")
        samples = np.asarray(samples, np.float32)
        if samples.ndim != 1 or not np.all(np.isfinite(samples)):
            raise AudioError(f"stream chunk: expected finite float samples [n], received shape {samples.shape}")
        if samples.size:
            log_probs, self._state = self._model.step_fn(tf.constant(samples), self._state)
            self._append(log_probs.numpy())
            self.samples += samples.size
        return self.partial

    def finish(self):
        """End the utterance; return its final transcript (greedy, or ``decoder``'s)."""
        if self._finished:
            raise SpeechkitError("this stream has already finished")
        self._append(self._model.finish_fn(self._state).numpy())
        self._finished = True
        if self._decoder is None:
            return self.partial
        return list(self._decoder.decode_batch([self.log_probs]))[0]


def stream_transcripts(recognizer, chunks, *, decoder=None):
    """Recognise a stream of chunks, yielding each partial transcript that changed, then the final one.

    Args:
        recognizer: ``speechkit.asr.inference.Recognizer`` of a streaming model.
        chunks: iterable of float32 [n] arrays at the model's sample rate.
        decoder: None (greedy) or an object with ``decode_batch`` for the final transcript.

    Yields:
        ``(kind, seconds, text)``: kind ``"partial"`` or ``"final"``, seconds of audio received.
    """
    stream = recognizer.stream(decoder=decoder)
    rate = recognizer.frontend.sample_rate
    last = ""
    for chunk in chunks:
        text = stream.feed(chunk)
        if text != last:
            last = text
            yield "partial", stream.samples / rate, text
    yield "final", stream.samples / rate, stream.finish()


def pcm16_chunks(stream, *, chunk_samples):
    """Read raw little-endian 16-bit mono PCM from a binary file object, ``chunk_samples`` at a time.

    Yields:
        float32 [n] in [-1, 1], n <= chunk_samples (an odd trailing byte is dropped).
    """
    pending = b""
    while True:
        data = stream.read(2 * chunk_samples - len(pending))
        if not data:
            break
        pending += data
        usable = len(pending) // 2 * 2
        if usable:
            yield np.frombuffer(pending[:usable], "<i2").astype(np.float32) / 32768.0
        pending = pending[usable:]


def audio_file_chunks(path, *, sample_rate, chunk_samples):
    """An audio file (any libsndfile format, resampled) cut into chunks of ``chunk_samples``.

    Raises:
        AudioError: the file cannot be read.
    """
    audio = audio_io.load(path, sample_rate=sample_rate)
    for start in range(0, len(audio), chunk_samples):
        yield audio[start:start + chunk_samples]


# -- Fixed normalisation statistics -- #

def frontend_with_statistics(frontend, utterances, *, max_utterances=500):
    """Fill in fixed normalisation statistics from training utterances; other front ends are returned as is.

    Deterministic (an even spread of at most ``max_utterances``, in manifest order, and rounded
    statistics), so a resumed run computes the same front end as the one in its ``config.yaml``.

    Args:
        frontend: FrontendConfig.
        utterances: list of ``speechkit.data.manifest.Utterance``, the training set.
        max_utterances: int > 0.

    Returns:
        FrontendConfig.

    Raises:
        ConfigError: statistics are needed and no utterance is readable.
    """
    if not frontend.needs_statistics:
        return frontend
    picked = even_spread(utterances, max_utterances)

    def audios():
        for utt in picked:
            try:
                yield audio_io.load(utt.audio, sample_rate=frontend.sample_rate)
            except AudioError as err:
                logger.warning("feature statistics: skipped %s: %s", utt.id, err)

    mean, std = fe.feature_statistics(audios(), config=frontend)
    logger.info("fixed feature normalisation from %d training utterances", len(picked))
    return frontend.with_statistics(mean, std)
