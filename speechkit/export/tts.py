"""The TTS acoustic model as a TensorFlow SavedModel: a string in, a float32 waveform out.

Signature ``serving_default``:
    inputs: ``text`` string scalar (UTF-8).
    outputs: ``waveform`` float32 [samples] in [-1, 1] at the front end's rate, ``(frames - 1) * hop``
    samples; ``log_mel`` float32 [frames, n_mels], the predicted front-end log-mel (for checks, or for
    an exported vocoder's ``serving_default``).

In the graph, the text is upper-cased and every run of characters outside the model's letters and
apostrophe becomes one space (so punctuation separates words, as in ``speechkit synthesize``), one
space is added at each end (the model's input convention, ``speechkit.data.durations.tts_text``),
the acoustic model predicts durations and the log-mel, and Griffin-Lim in ``tf.signal`` ops
(``speechkit.tts.griffinlim.griffinlim_tf``) inverts it. Numbers, abbreviations and symbols are
NOT expanded there (num2words is Python): normalise with ``speechkit.tts.text.normalize_for_tts``
first, as ``speechkit synthesize`` does, and split text longer than ``max_characters`` (in
``export.json``). A WaveNet is not put in this graph: its sample loop runs far faster in the numba
path of ``speechkit synthesize --vocoder wavenet``.
"""

import json
import logging
import os
import re
import time

import tensorflow as tf

from speechkit.config import atomic_write_text, save_yaml
from speechkit.export.asr import EXPORT_JSON, FRONTEND_FILE, SIGNATURE, write_export_dir
from speechkit.runs import RunDir
from speechkit.tts.griffinlim import griffinlim_tf
from speechkit.tts.synthesis import load_acoustic_model

__all__ = ["TTSServingModule", "export_tts", "ExportedTTS"]

logger = logging.getLogger(__name__)


class TTSServingModule(tf.Module):
    """The exportable text-to-waveform graph (see the module docstring for the signature).

    Args:
        model: a built ``speechkit.tts.model.AcousticModel``.
        config: TTSConfig of its run.
        griffinlim_iterations: int > 0.
    """

    def __init__(self, model, *, config, griffinlim_iterations=32):
        super().__init__()
        self.model = model
        self.frontend = config.frontend
        self.iterations = int(griffinlim_iterations)
        characters = config.model.characters
        self.space = characters.index(" ") + 1
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(characters)),
                                                tf.range(1, len(characters) + 1, dtype=tf.int32)),
            default_value=self.space)
        letters = re.escape("".join(ch for ch in characters if ch != " "))
        self.outside = f"[^{letters}]+"
        self.serve = tf.function(self._serve, input_signature=[tf.TensorSpec([], tf.string, name="text")])

    def tokens(self, text):
        """int32 [characters]: the model's input for a string scalar (upper-cased, edge spaces added)."""
        upper = tf.strings.upper(text, encoding="utf-8")
        cleaned = tf.strings.strip(tf.strings.regex_replace(upper, self.outside, " "))
        ids = self.table.lookup(tf.strings.unicode_split(cleaned, "UTF-8"))
        return tf.concat([[self.space], ids, [self.space]], axis=0)

    def _serve(self, text):
        mel, lengths = self.model.infer(self.tokens(text)[tf.newaxis])
        mel = mel[0, :lengths[0]]
        return {"waveform": griffinlim_tf(mel, config=self.frontend, iterations=self.iterations), "log_mel": mel}


def export_tts(run_dir, out_dir, *, griffinlim_iterations=32):
    """Export a TTS run as a SavedModel (``serving_default``: text -> waveform).

    The export directory is self-contained: the SavedModel, ``frontend.yaml``, ``config.yaml`` (the
    run's) and ``export.json``.

    Args:
        run_dir: str, a TTS run directory.
        out_dir: str, the export directory (replaced atomically if it exists).
        griffinlim_iterations: int > 0.

    Returns:
        dict, the content of ``export.json``.

    Raises:
        RunError, ConfigError: the run cannot be loaded.
    """
    started = time.perf_counter()
    model, config = load_acoustic_model(run_dir)
    module = TTSServingModule(model, config=config, griffinlim_iterations=griffinlim_iterations)
    info = {
        "kind": "tts",
        "source_run": os.path.abspath(run_dir),
        "signature": SIGNATURE,
        "signatures": {SIGNATURE: {"inputs": ["text string []"],
                                   "outputs": ["waveform float32 [samples]", "log_mel float32 [frames, n_mels]"]}},
        "sample_rate": config.frontend.sample_rate,
        "hop_length": config.frontend.hop_length,
        "characters": config.model.characters,
        "max_characters": config.model.max_characters,
        "griffinlim_iterations": int(griffinlim_iterations),
        "parameters": int(model.count_params()),
        "tensorflow": tf.__version__,
    }

    def build(tmp):
        tf.saved_model.save(module, tmp, signatures={SIGNATURE: module.serve})
        save_yaml(os.path.join(tmp, FRONTEND_FILE), config.frontend)
        save_yaml(os.path.join(tmp, RunDir.CONFIG), config)
        info["export_seconds"] = time.perf_counter() - started
        atomic_write_text(os.path.join(tmp, EXPORT_JSON), json.dumps(info, indent=2) + "\n")

    write_export_dir(out_dir, build)
    logger.info("exported %s -> %s in %.1f s", run_dir, out_dir, info["export_seconds"])
    return info


class ExportedTTS:
    """Text to waveform with an exported TTS model (TensorFlow only).

    Args:
        export_dir: str, written by ``export_tts``.
    """

    def __init__(self, export_dir):
        self.export_dir = export_dir
        self.signature = tf.saved_model.load(export_dir).signatures[SIGNATURE]
        with open(os.path.join(export_dir, EXPORT_JSON), encoding="utf-8") as f:
            self.info = json.load(f)

    def synthesize(self, text):
        """float32 numpy [samples] for one (normalised) text."""
        return self.signature(text=tf.constant(text))["waveform"].numpy()
