"""Load a trained Deep Speech 2 run and recognise audio in batches.

The front end runs inside the same ``tf.function`` as the network, on the zero-padded batch, so
serving computes exactly the features training saw (``speechkit.frontend``), and the run's saved
front-end config is checked against the model before anything is recognised.
"""

import json
import logging
import os

import keras
import numpy as np
import tensorflow as tf

from speechkit import audio as audio_io
from speechkit import frontend as fe
from speechkit.asr import deepspeech2  # noqa: F401  (registers the custom layers for loading)
from speechkit.asr.decoding import greedy_decode
from speechkit.config import from_dict, load_yaml
from speechkit.errors import ConfigError, SpeechkitError
from speechkit.frontend import FrontendConfig
from speechkit.text import Vocabulary

__all__ = ["Recognizer", "load_run"]

logger = logging.getLogger(__name__)


class Recognizer:
    """A trained network with its vocabulary and front end.

    Args:
        network: keras.Model from ``build_deepspeech2`` (``[features, feature_lengths] -> [log_probs, lengths]``).
        vocabulary: ``speechkit.text.Vocabulary``; its size must equal the network's output size.
        frontend: ``FrontendConfig`` the network was trained with.
        run_dir: optional str, where the run was loaded from.
        batch_size: int > 0, most utterances per forward pass.
        max_batch_seconds: float > 0, most padded audio seconds per forward pass (bounds memory).

    Attributes:
        vocabulary, frontend, run_dir, network.
    """

    def __init__(self, network, *, vocabulary, frontend, run_dir=None, batch_size=16, max_batch_seconds=400.0):
        out_size = network.outputs[0].shape[-1]
        if out_size != vocabulary.size:
            raise ConfigError(f"{run_dir or 'model'}: network outputs {out_size} classes, vocabulary has {vocabulary.size}")
        in_size = network.inputs[0].shape[-1]
        if in_size != frontend.num_features:
            raise ConfigError(f"{run_dir or 'model'}: network takes {in_size} features per frame, front end gives "
                              f"{frontend.num_features}")
        if batch_size < 1 or max_batch_seconds <= 0:
            raise ConfigError(f"need batch_size >= 1 and max_batch_seconds > 0, received {batch_size}, {max_batch_seconds}")
        self.network = network
        self.vocabulary = vocabulary
        self.frontend = frontend
        self.run_dir = run_dir
        self.batch_size = int(batch_size)
        self.max_batch_samples = int(max_batch_seconds * frontend.sample_rate)

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int32)])
        def forward(audio, lengths):
            feats, frames = fe.features(audio, lengths, config=frontend)
            log_probs, out_lengths = network([feats, frames], training=False)
            return tf.cast(log_probs, tf.float32), out_lengths

        self._forward = forward

    def _batches(self, lengths):
        order = np.argsort(lengths, kind="stable")
        batches, current = [], []
        for i in order:
            if current and (len(current) == self.batch_size or lengths[i] * (len(current) + 1) > self.max_batch_samples):
                batches.append(current)
                current = []
            current.append(int(i))
        if current:
            batches.append(current)
        return batches

    def log_probs(self, audios):
        """Per-frame log-probabilities for each utterance, over its true length only.

        Utterances are sorted by length and batched, so padding stays small; because the network is
        padding-invariant the result does not depend on the batching.

        Args:
            audios: list of float32 [samples] arrays at ``frontend.sample_rate``, in [-1, 1].

        Returns:
            list of float32 [frames_i, vocabulary.size] log-softmax arrays, in input order.

        Raises:
            AudioError: an item is empty, not 1-D, or not finite.
        """
        audios = [audio_io.valid_audio(a, source=f"audio[{i}]") for i, a in enumerate(audios)]
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
                results[i] = log_probs[row, :out_lengths[row]]
        return results

    def transcribe(self, audios, decoder=None):
        """Transcripts of ``audios``: greedy when ``decoder`` is None, else ``decoder.decode_batch(log_probs)``."""
        log_probs = self.log_probs(audios)
        if decoder is None:
            return [greedy_decode(lp, self.vocabulary) for lp in log_probs]
        return list(decoder.decode_batch(log_probs))


def load_run(run_dir, *, expected_frontend=None, batch_size=16):
    """Load ``RUN/model.keras`` with its vocabulary and front end, checking that they agree.

    Args:
        run_dir: str, a directory written by ``speechkit train asr``.
        expected_frontend: optional FrontendConfig the caller's features use; any difference raises.
        batch_size: int, utterances per forward pass.

    Returns:
        Recognizer.

    Raises:
        SpeechkitError: a file is missing; ConfigError: the saved front-end configs disagree with
        each other, with ``expected_frontend`` or with the network's input size.
    """
    paths = {name: os.path.join(run_dir, name) for name in ("model.keras", "frontend.yaml", "vocabulary.json", "config.yaml")}
    for name in ("model.keras", "frontend.yaml", "vocabulary.json"):
        if not os.path.isfile(paths[name]):
            raise SpeechkitError(f"{paths[name]}: missing; is {run_dir} a trained ASR run (speechkit train asr)?")
    frontend = from_dict(FrontendConfig, load_yaml(paths["frontend.yaml"]), source=paths["frontend.yaml"])
    if os.path.isfile(paths["config.yaml"]):
        trained = load_yaml(paths["config.yaml"]).get("frontend")
        if trained is not None:
            frontend.check_matches(from_dict(FrontendConfig, trained, source=paths["config.yaml"]),
                                   source=paths["config.yaml"])
    if expected_frontend is not None:
        frontend.check_matches(expected_frontend, source=paths["frontend.yaml"])
    try:
        with open(paths["vocabulary.json"], encoding="utf-8") as f:
            vocabulary = Vocabulary.from_dict(json.load(f))
    except (ValueError, KeyError) as err:
        raise SpeechkitError(f"{paths['vocabulary.json']}: not a vocabulary file ({err})") from None
    try:
        network = keras.saving.load_model(paths["model.keras"], compile=False)
    except (ValueError, OSError) as err:
        raise SpeechkitError(f"{paths['model.keras']}: cannot load the model ({err})") from None
    logger.info("loaded %s: %d parameters, %s features", paths["model.keras"], network.count_params(), frontend.kind)
    return Recognizer(network, vocabulary=vocabulary, frontend=frontend, run_dir=run_dir, batch_size=batch_size)
