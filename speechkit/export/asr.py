"""Deep Speech 2 as a TensorFlow SavedModel (front end and greedy decoding in the graph) and as TFLite.

The exported graph takes raw 16 kHz audio, so a client needs neither speechkit nor the front-end
parameters: ``speechkit.frontend.features`` runs inside the signature with the run's
``FrontendConfig``, exactly as in training and in ``Recognizer``. Greedy CTC decoding runs in the
graph as well (argmax, collapse repeats, drop blanks, look the ids up in a constant string table);
beam search with a KenLM model stays outside, driven by the ``vocabulary.json`` and ``decode.yaml``
written next to the SavedModel.

TFLite (``model.tflite``) carries the same front end and network with batch 1, for streaming
clients. Two traps are handled here (compare TensorFlowASR issue #272, where a converted model
silently lost accuracy): Keras 3 variables survive conversion as uninitialised resource variables
(the interpreter then reads garbage), so the network is traced under a ``keras.StatelessScope``
that substitutes constants; and the GRU's ``tf.scan`` lowers to a tensor list that TFLite can only
allocate when the batch size is static. The converted model uses TFLite built-in ops only (no
Flex delegate); ``tflite_parity`` checks its logits against the SavedModel.

A streaming model (``speechkit.asr.streaming.check_streamable``) also gets the chunk-by-chunk
signatures ``stream_init``, ``stream_step`` and ``stream_finish`` with explicit state, in the
SavedModel and in ``model.tflite`` (``speechkit.export.streaming``).
"""

import json
import logging
import os
import shutil
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from speechkit import audio as audio_io
from speechkit import frontend as fe
from speechkit.asr.beam import save_decode_config
from speechkit.asr.decoding import greedy_decode
from speechkit.asr.inference import load_run
from speechkit.asr.streaming import lookahead_ms
from speechkit.config import atomic_write_text, from_dict, load_yaml, save_yaml
from speechkit.errors import ConfigError, ExportError
from speechkit.export.streaming import STREAM_SIGNATURES, convert_streaming_tflite, stream_functions
from speechkit.frontend import FrontendConfig
from speechkit.runs import RunDir
from speechkit.text import BLANK_INDEX, Vocabulary

__all__ = [
    "ExportError",
    "SIGNATURE",
    "greedy_transcripts",
    "ASRServingModule",
    "convert_asr_tflite",
    "export_asr",
    "ExportedRecognizer",
    "TFLiteRecognizer",
    "load_exported_asr",
    "tflite_parity",
    "write_export_dir",
]

logger = logging.getLogger(__name__)

SIGNATURE = "serving_default"
TFLITE_FILE = "model.tflite"
EXPORT_JSON = "export.json"
FRONTEND_FILE = "frontend.yaml"



# -- In-graph greedy decoding -- #

def greedy_transcripts(log_probs, lengths, labels):
    """Best-path CTC transcripts in TensorFlow ops (the graph twin of ``speechkit.asr.decoding.greedy_decode``).

    Per utterance: argmax per valid frame, keep a frame when its id differs from the previous
    frame's and is not the blank, map ids to characters, join, then collapse runs of spaces and
    strip, so the result is a normalised transcript exactly as ``greedy_decode`` returns it.

    Args:
        log_probs: float32 [batch, frames, vocab] (log-)probabilities.
        lengths: int32 [batch], valid frames per utterance; later frames are ignored.
        labels: tf.string [vocab] constant, the character of each class (``""`` for the blank).

    Returns:
        tf.string [batch].
    """
    best = tf.argmax(log_probs, axis=-1, output_type=tf.int32)
    previous = tf.pad(best[:, :-1], [[0, 0], [1, 0]], constant_values=-1)
    valid = tf.sequence_mask(lengths, tf.shape(best)[1])
    keep = valid & tf.not_equal(best, previous) & tf.not_equal(best, BLANK_INDEX)
    chars = tf.where(keep, tf.gather(labels, best), tf.constant("", tf.string))
    text = tf.strings.reduce_join(chars, axis=1)
    return tf.strings.strip(tf.strings.regex_replace(text, " +", " "))


# -- SavedModel -- #

class ASRServingModule(tf.Module):
    """The exportable recogniser: audio in; log-probabilities, lengths and greedy transcripts out.

    Signature ``serving_default``:
        inputs: ``waveform`` float32 [batch, samples] at ``frontend.sample_rate`` in [-1, 1],
        zero-padded; ``lengths`` int32 [batch], valid samples per utterance.
        outputs: ``log_probs`` float32 [batch, frames, vocabulary.size] (CTC log-softmax; rows at
        or beyond ``output_lengths`` are padding and carry no meaning), ``output_lengths`` int32
        [batch], ``transcripts`` tf.string [batch] (greedy, over the valid frames only).

    Args:
        network: ``DeepSpeech2`` (``speechkit.asr.deepspeech2``).
        vocabulary: speechkit.text.Vocabulary.
        frontend: FrontendConfig the network was trained with.
    """

    def __init__(self, network, *, vocabulary, frontend):
        super().__init__(name="speechkit_asr")
        self.network = network
        self._frontend = frontend
        self._labels = list(vocabulary.labels)
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None, None], tf.float32, name="waveform"),
            tf.TensorSpec([None], tf.int32, name="lengths")])

    def _forward(self, waveform, lengths):
        features, frames = fe.features(waveform, lengths, config=self._frontend)
        log_probs, out_lengths = self.network([features, frames], training=False)
        return tf.cast(log_probs, tf.float32), tf.cast(out_lengths, tf.int32)

    def _serve(self, waveform, lengths):
        log_probs, out_lengths = self._forward(waveform, lengths)
        labels = tf.constant(self._labels, tf.string)
        return {"log_probs": log_probs, "output_lengths": out_lengths,
                "transcripts": greedy_transcripts(log_probs, out_lengths, labels)}


def convert_asr_tflite(network, *, frontend):
    """Convert front end + network to a TFLite flatbuffer (built-in ops only, batch 1, any length).

    The TFLite signature ``serving_default`` takes ``waveform`` float32 [1, samples] and
    ``lengths`` int32 [1] and returns ``log_probs`` and ``output_lengths`` (no strings: TFLite has
    no string kernels for the join). Decode with ``speechkit.asr.decoding.greedy_decode`` or a beam
    decoder.

    Returns:
        bytes.

    Raises:
        ExportError: the converter rejects the graph (the message names the unsupported ops).
    """
    weights = [(v, v.numpy()) for v in network.weights]

    def serve(waveform, lengths):
        with keras.StatelessScope(state_mapping=[(v, tf.constant(value)) for v, value in weights]):
            return _tflite_outputs(network, frontend, waveform, lengths)

    module = tf.Module()
    module.serve = tf.function(serve, input_signature=[tf.TensorSpec([1, None], tf.float32, name="waveform"),
                                                       tf.TensorSpec([1], tf.int32, name="lengths")])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        return converter.convert()
    except Exception as err:  # the converter raises ConverterError and friends with the op list
        raise ExportError(f"TFLite conversion failed: {str(err).strip().splitlines()[-1]}") from err


def _tflite_outputs(network, frontend, waveform, lengths):
    features, frames = fe.features(waveform, lengths, config=frontend)
    log_probs, out_lengths = network([features, frames], training=False)
    return {"log_probs": tf.cast(log_probs, tf.float32), "output_lengths": tf.cast(out_lengths, tf.int32)}


def _streaming_model(recognizer):
    """The recogniser's ``StreamingModel``, or None when the model cannot stream."""
    try:
        return recognizer.streaming_model()
    except ConfigError as err:
        logger.info("no streaming signatures: %s", err)
        return None


def write_export_dir(out_dir, build):
    """Build an export in a temporary sibling folder, then move it to ``out_dir`` in two renames.

    A reader never sees a half-written export: an existing ``out_dir`` is replaced only once the new
    one is complete. ``build(tmp_dir)`` writes the files.
    """
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(out_dir)}.tmp-{os.getpid()}")
    old = os.path.join(parent, f".{os.path.basename(out_dir)}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.exists(out_dir):
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def export_asr(run_dir, out_dir, *, tflite=False):
    """Export an ASR run as a SavedModel (plus ``model.tflite`` when asked).

    The run is read through ``RunDir`` (``load_run``). The export directory is self-contained and
    keeps its own files: ``saved_model.pb`` and ``variables/`` (plus the streaming signatures for a
    streaming model, ``speechkit.export.streaming``), ``vocabulary.json``,
    ``frontend.yaml`` (for clients without speechkit), ``decode.yaml`` (the run's tuned decoding,
    with the LM path, when the run has one) and ``export.json`` (source run, signature, LM
    reference, timings).

    Args:
        run_dir: str or RunDir, a directory written by ASR training.
        out_dir: str, the export directory (replaced atomically if it exists).
        tflite: bool, also convert to TFLite and check it against the SavedModel.

    Returns:
        dict, the content of ``export.json``.
    """
    started = time.perf_counter()
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    recognizer = load_run(run)
    module = ASRServingModule(recognizer.network, vocabulary=recognizer.vocabulary, frontend=recognizer.frontend)
    decode = run.decode_config() if run.exists(RunDir.DECODE) else None
    info = {
        "kind": "asr",
        "source_run": os.path.abspath(run.path),
        "signature": SIGNATURE,
        "inputs": {"waveform": "float32 [batch, samples]", "lengths": "int32 [batch]"},
        "outputs": {"log_probs": "float32 [batch, frames, vocab]", "output_lengths": "int32 [batch]",
                    "transcripts": "string [batch] (greedy)"},
        "sample_rate": recognizer.frontend.sample_rate,
        "vocabulary_size": recognizer.vocabulary.size,
        "parameters": int(recognizer.network.count_params()),
        "lm": None if decode is None or decode.lm is None else os.path.abspath(decode.lm),
        "tensorflow": tf.__version__,
    }
    signatures = {SIGNATURE: module.serve}
    stream = _streaming_model(recognizer)
    if stream is not None:
        signatures.update(stream_functions(stream))
        info["streaming"] = {
            "signatures": list(STREAM_SIGNATURES),
            "lookahead_ms": lookahead_ms(stream.config, stream.frontend),
            "state": {name: {"shape": spec.shape.as_list(), "dtype": spec.dtype.name}
                      for name, spec in stream.state_spec.items()},
        }

    def build(tmp):
        start = time.perf_counter()
        tf.saved_model.save(module, tmp, signatures=signatures)
        info["saved_model_seconds"] = time.perf_counter() - start
        atomic_write_text(os.path.join(tmp, RunDir.VOCABULARY),
                          json.dumps(recognizer.vocabulary.to_dict(), indent=2) + "\n")
        save_yaml(os.path.join(tmp, FRONTEND_FILE), recognizer.frontend)
        if decode is not None:
            save_decode_config(tmp, decode)
        if tflite:
            start = time.perf_counter()
            if stream is None:
                flatbuffer = convert_asr_tflite(recognizer.network, frontend=recognizer.frontend)
            else:
                flatbuffer = convert_streaming_tflite(stream, lambda waveform, lengths: _tflite_outputs(
                    recognizer.network, recognizer.frontend, waveform, lengths))
            with open(os.path.join(tmp, TFLITE_FILE), "wb") as f:
                f.write(flatbuffer)
            info["tflite_seconds"] = time.perf_counter() - start
            info["tflite_bytes"] = len(flatbuffer)
            info["tflite_max_abs_diff"] = tflite_parity(tmp, module)
        info["export_seconds"] = time.perf_counter() - started
        atomic_write_text(os.path.join(tmp, EXPORT_JSON), json.dumps(info, indent=2) + "\n")

    write_export_dir(out_dir, build)
    logger.info("exported %s -> %s in %.1f s", run.path, out_dir, info["export_seconds"])
    return info


def tflite_parity(export_dir, module, *, seconds=(1.3, 0.55), seed=0):
    """Max abs difference between ``EXPORT/model.tflite`` and ``module`` on synthetic test audio.

    Run at export time so that a conversion that changes the numbers (TensorFlowASR issue #272) is
    reported in ``export.json`` at once. The audio is noise with a slow amplitude envelope, at
    ``seconds`` durations that give different frame counts.
    """
    rng = np.random.default_rng(seed)
    lite = TFLiteRecognizer(export_dir)
    worst = 0.0
    for s in seconds:
        n = int(s * lite.frontend.sample_rate)
        audio = (0.1 * rng.standard_normal(n) * np.sin(np.linspace(0, 20, n)) ** 2).astype(np.float32)
        reference = module.serve(tf.constant(audio[None]), tf.constant([n], tf.int32))
        k = int(reference["output_lengths"][0])
        got = lite.log_probs([audio])[0]
        worst = max(worst, float(np.abs(got - reference["log_probs"].numpy()[0, :k]).max()))
    return worst


# -- Loading exports -- #

def _read_side_files(export_dir):
    for name in (RunDir.VOCABULARY, FRONTEND_FILE):
        if not os.path.isfile(os.path.join(export_dir, name)):
            raise ExportError(f"{os.path.join(export_dir, name)}: missing; is {export_dir} an ASR export?")
    path = os.path.join(export_dir, RunDir.VOCABULARY)
    try:
        with open(path, encoding="utf-8") as f:
            vocabulary = Vocabulary.from_dict(json.load(f))
    except (ValueError, KeyError) as err:
        raise ExportError(f"{path}: not a vocabulary file ({err})") from None
    path = os.path.join(export_dir, FRONTEND_FILE)
    return vocabulary, from_dict(FrontendConfig, load_yaml(path), source=path)


def _length_batches(lengths, batch_size):
    order = np.argsort(lengths, kind="stable")
    return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]


class ExportedRecognizer:
    """A recogniser backed by an exported SavedModel; same interface as ``Recognizer``.

    Args:
        export_dir: str, written by ``export_asr``.
        batch_size: int > 0, utterances per call of the signature.

    Attributes:
        vocabulary, frontend, run_dir (the export directory), signature (the loaded concrete function).
    """

    def __init__(self, export_dir, *, batch_size=16):
        if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
            raise ExportError(f"{export_dir}: no saved_model.pb; is it an ASR export?")
        self.vocabulary, self.frontend = _read_side_files(export_dir)
        self.run_dir = export_dir
        self.batch_size = int(batch_size)
        self._loaded = tf.saved_model.load(export_dir)
        if SIGNATURE not in self._loaded.signatures:
            raise ExportError(f"{export_dir}: the SavedModel has no '{SIGNATURE}' signature")
        self.signature = self._loaded.signatures[SIGNATURE]

    def run(self, audios):
        """Call the signature on length-sorted padded batches.

        Returns:
            (list of float32 [frames_i, vocab] log-probs, list of str greedy transcripts), input order.
        """
        audios = [audio_io.valid_audio(a, source=f"audio[{i}]") for i, a in enumerate(audios)]
        lengths = np.array([len(a) for a in audios], np.int64)
        log_probs, texts = [None] * len(audios), [None] * len(audios)
        for batch in _length_batches(lengths, self.batch_size):
            padded = np.zeros((len(batch), int(lengths[batch].max())), np.float32)
            for row, i in enumerate(batch):
                padded[row, :lengths[i]] = audios[i]
            out = self.signature(waveform=tf.constant(padded), lengths=tf.constant(lengths[batch], tf.int32))
            lp, n, tx = out["log_probs"].numpy(), out["output_lengths"].numpy(), out["transcripts"].numpy()
            for row, i in enumerate(batch):
                log_probs[i] = lp[row, :n[row]]
                texts[i] = tx[row].decode("utf-8")
        return log_probs, texts

    def log_probs(self, audios):
        """Per-frame log-probabilities over each utterance's true length, in input order."""
        return self.run(audios)[0]

    def transcribe(self, audios, decoder=None):
        """In-graph greedy transcripts when ``decoder`` is None, else ``decoder.decode_batch(log_probs)``."""
        log_probs, texts = self.run(audios)
        return texts if decoder is None else list(decoder.decode_batch(log_probs))


class TFLiteRecognizer:
    """A recogniser backed by ``EXPORT/model.tflite``: one utterance per invocation, same interface.

    Args:
        export_dir: str, an ASR export written with ``tflite=True``.
        num_threads: int or None, interpreter threads.
    """

    def __init__(self, export_dir, *, num_threads=None):
        path = os.path.join(export_dir, TFLITE_FILE)
        if not os.path.isfile(path):
            raise ExportError(f"{path}: missing; the export was made without TFLite")
        self.vocabulary, self.frontend = _read_side_files(export_dir)
        self.run_dir = export_dir
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
            self._interpreter = tf.lite.Interpreter(model_path=path, num_threads=num_threads)
        self._runner = self._interpreter.get_signature_runner(SIGNATURE)

    def log_probs(self, audios):
        """Per-frame log-probabilities for each utterance (float32 [frames_i, vocab]), in input order."""
        results = []
        for i, audio in enumerate(audios):
            audio = audio_io.valid_audio(audio, source=f"audio[{i}]")
            out = self._runner(waveform=audio[None], lengths=np.array([len(audio)], np.int32))
            results.append(np.array(out["log_probs"][0, :int(out["output_lengths"][0])]))
        return results

    def transcribe(self, audios, decoder=None):
        """Greedy transcripts when ``decoder`` is None, else ``decoder.decode_batch(log_probs)``."""
        log_probs = self.log_probs(audios)
        if decoder is None:
            return [greedy_decode(lp, self.vocabulary) for lp in log_probs]
        return list(decoder.decode_batch(log_probs))


def load_exported_asr(export_dir, *, batch_size=16):
    """Load an ASR export as an ``ExportedRecognizer`` (raises ExportError naming what is missing)."""
    return ExportedRecognizer(export_dir, batch_size=batch_size)
