"""Streaming signatures of an ASR export: ``stream_init``, ``stream_step`` and ``stream_finish``.

A streaming model (``speechkit.asr.streaming.check_streamable``) exports its chunk step with the
state as explicit tensors, in the SavedModel and in ``model.tflite`` alike:

- ``stream_init()`` returns the initial state (one output per state tensor, all zeros);
- ``stream_step(audio_chunk, <state>...)`` takes ``audio_chunk`` float32 [samples] (any length) at the
  model's sample rate and returns ``log_probs`` float32 [frames, vocab] for the output frames that
  became final, and the new state under the same names;
- ``stream_finish(<state>...)`` returns the ``log_probs`` of the remaining frames.

The state names and shapes are ``StreamingModel.state_spec`` (``samples``, ``audio``, ``conv_i``,
``gru_i``, ``lookahead``); a client passes the outputs of one call as the inputs of the next, so it
needs no knowledge of the model. ``ExportedStream`` and ``TFLiteStream`` are such clients.
"""

import json
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from speechkit.asr.streaming import GreedyPath
from speechkit.errors import ExportError
from speechkit.text import Vocabulary

__all__ = [
    "STREAM_SIGNATURES",
    "stream_functions",
    "convert_streaming_tflite",
    "ExportedStream",
    "TFLiteStream",
]

STREAM_SIGNATURES = ("stream_init", "stream_step", "stream_finish")


def stream_functions(model):
    """The three streaming signatures of ``model`` (``speechkit.asr.streaming.StreamingModel``).

    Returns:
        dict signature name -> ``tf.function`` with a flat, named input signature.
    """
    names = list(model.state_spec)
    specs = [model.state_spec[name] for name in names]

    def init():
        return model.initial_state()

    def step(audio_chunk, *state):
        log_probs, new_state = model.step(audio_chunk, dict(zip(names, state)))
        return {"log_probs": log_probs, **new_state}

    def finish(*state):
        return {"log_probs": model.finish(dict(zip(names, state)))}

    chunk = tf.TensorSpec([None], tf.float32, name="audio_chunk")
    return {"stream_init": tf.function(init, input_signature=[]),
            "stream_step": tf.function(step, input_signature=[chunk] + specs),
            "stream_finish": tf.function(finish, input_signature=specs)}


def convert_streaming_tflite(model, serve):
    """Convert the streaming signatures plus ``serving_default`` to one TFLite flatbuffer (built-in ops).

    The functions are traced under a ``keras.StatelessScope`` that replaces every Keras variable by
    a constant (uninitialised resource variables would otherwise survive conversion, see
    ``speechkit.export.asr``). The converter names each TFLite signature after its Python
    function's ``__name__``, so each wrapper is named after its signature.

    Args:
        model: ``StreamingModel``.
        serve: callable ``(waveform float32 [1, samples], lengths int32 [1]) -> dict`` for
            ``serving_default`` (batch 1).

    Returns:
        bytes.

    Raises:
        ExportError: the converter rejects the graph.
    """
    weights = [(v, tf.constant(v.numpy())) for v in model.network.weights]

    def stateless(fn, name):
        def wrapped(*args):
            with keras.StatelessScope(state_mapping=weights):
                return fn(*args)
        wrapped.__name__ = name
        return wrapped

    module = tf.Module()
    concrete = []
    for name, fn in stream_functions(model).items():
        setattr(module, name, tf.function(stateless(fn.python_function, name), input_signature=fn.input_signature))
        concrete.append(getattr(module, name).get_concrete_function())
    module.serving_default = tf.function(stateless(serve, "serving_default"), input_signature=[
        tf.TensorSpec([1, None], tf.float32, name="waveform"), tf.TensorSpec([1], tf.int32, name="lengths")])
    concrete.append(module.serving_default.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions(concrete, module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        return converter.convert()
    except Exception as err:  # the converter raises ConverterError and friends with the op list
        raise ExportError(f"TFLite conversion of the streaming signatures failed: "
                          f"{str(err).strip().splitlines()[-1]}") from None


class _SignatureStream:
    """Partial and final greedy transcripts from three callables that return dicts of arrays."""

    def __init__(self, init, step, finish, vocabulary):
        self._step, self._finish = step, finish
        self.vocabulary = vocabulary
        self.state = {k: np.asarray(v) for k, v in init().items()}
        self._parts = []
        self._greedy = GreedyPath(vocabulary)

    @property
    def log_probs(self):
        """float32 [frames, vocab], the final output frames so far."""
        return np.concatenate(self._parts) if self._parts else np.zeros((0, self.vocabulary.size), np.float32)

    def feed(self, samples):
        """Add float32 [n] samples; return the partial greedy transcript."""
        out = self._step(np.asarray(samples, np.float32).reshape(-1), self.state)
        self.state = {k: np.asarray(out[k]) for k in self.state}
        self._parts.append(np.asarray(out["log_probs"]))
        self._greedy.append(self._parts[-1])
        return self._greedy.text

    def finish(self):
        """End the utterance; return the final greedy transcript."""
        self._parts.append(np.asarray(self._finish(self.state)["log_probs"]))
        self._greedy.append(self._parts[-1])
        return self._greedy.text


def _vocabulary(export_dir):
    path = os.path.join(export_dir, "vocabulary.json")
    try:
        with open(path, encoding="utf-8") as f:
            return Vocabulary.from_dict(json.load(f))
    except (OSError, ValueError, KeyError) as err:
        raise ExportError(f"{path}: cannot read the vocabulary ({err})") from None


class ExportedStream(_SignatureStream):
    """One utterance streamed through an exported SavedModel's ``stream_*`` signatures.

    Args:
        export_dir: str, an ASR export of a streaming model.
        loaded: optional result of ``tf.saved_model.load(export_dir)``, to share one load among streams.

    Raises:
        ExportError: the export has no streaming signatures.
    """

    def __init__(self, export_dir, *, loaded=None):
        loaded = loaded if loaded is not None else tf.saved_model.load(export_dir)
        missing = [name for name in STREAM_SIGNATURES if name not in loaded.signatures]
        if missing:
            raise ExportError(f"{export_dir}: no {', '.join(missing)} signature; the model was not exported as a "
                              "streaming model")
        sig = loaded.signatures
        super().__init__(lambda: {k: v.numpy() for k, v in sig["stream_init"]().items()},
                         lambda chunk, state: sig["stream_step"](audio_chunk=tf.constant(chunk),
                                                                 **{k: tf.constant(v) for k, v in state.items()}),
                         lambda state: sig["stream_finish"](**{k: tf.constant(v) for k, v in state.items()}),
                         _vocabulary(export_dir))


class TFLiteStream(_SignatureStream):
    """One utterance streamed through ``EXPORT/model.tflite``'s ``stream_*`` signatures.

    Args:
        export_dir: str, an ASR export of a streaming model made with TFLite.
        num_threads: int, interpreter threads.

    Raises:
        ExportError: ``model.tflite`` is missing or has no streaming signatures.
    """

    def __init__(self, export_dir, *, num_threads=1):
        path = os.path.join(export_dir, "model.tflite")
        if not os.path.isfile(path):
            raise ExportError(f"{path}: missing; the export was made without TFLite")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
            interpreter = tf.lite.Interpreter(model_path=path, num_threads=num_threads)
        missing = [name for name in STREAM_SIGNATURES if name not in interpreter.get_signature_list()]
        if missing:
            raise ExportError(f"{path}: no {', '.join(missing)} signature; the model was not exported as a "
                              "streaming model")
        runners = {name: interpreter.get_signature_runner(name) for name in STREAM_SIGNATURES}
        self.interpreter = interpreter
        super().__init__(runners["stream_init"],
                         lambda chunk, state: runners["stream_step"](audio_chunk=chunk, **state),
                         lambda state: runners["stream_finish"](**state), _vocabulary(export_dir))
