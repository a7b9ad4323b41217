"""The WaveNet vocoder as a TensorFlow SavedModel: upsampling and the cached generation loop in the graph.

Both signatures run ``speechkit.vocoder.generation.TFGenerator``'s loop (the same compiled
``tf.while_loop`` the library uses), so an exported model at temperature 0 produces the samples
``Vocoder.vocode(..., backend="tf", temperature=0)`` produces, and needs only TensorFlow to run.

Noise: row ``b`` of a batch draws its uniform noise from ``tf.random.stateless_uniform`` with seed
``(seed, b)``, so outputs are reproducible for a given seed. Temperature 0 ignores the noise.
"""

import json
import logging
import os
import time

import numpy as np
import tensorflow as tf

from speechkit import audio as audio_io
from speechkit.config import atomic_write_text, from_dict, load_yaml, save_yaml
from speechkit.errors import ConfigError
from speechkit.export.asr import EXPORT_JSON, FRONTEND_FILE, SIGNATURE, ExportError, write_export_dir
from speechkit.frontend import FrontendConfig, mu_law_decode
from speechkit.frontend import log_mel as frontend_log_mel  # the methods' argument is named log_mel
from speechkit.runs import RunDir
from speechkit.vocoder.generation import TFGenerator, load_vocoder, restore_waveform
from speechkit.vocoder.postfilter import match_mel
from speechkit.vocoder.wavenet import conditioning_mel, silence_class

__all__ = [
    "WAVEFORM_SIGNATURE",
    "PARALLEL",
    "VocoderServingModule",
    "export_vocoder",
    "ExportedVocoder",
    "load_exported_vocoder",
]

logger = logging.getLogger(__name__)

WAVEFORM_SIGNATURE = "vocode_waveform"

PARALLEL = 2
"""Rows of a batch the exported loop generates at the same time: the cores of the target CPU."""


def _row_noise(seed, batch, samples):
    """float32 [batch, samples]; row b is ``stateless_uniform([samples], seed=(seed, b))``."""
    return tf.map_fn(lambda b: tf.random.stateless_uniform([samples], seed=tf.stack([seed, b])),
                     tf.range(batch), fn_output_signature=tf.TensorSpec([None], tf.float32))


class VocoderServingModule(tf.Module):
    """The exportable mel-conditioned WaveNet.

    Signature ``serving_default``:
        inputs: ``log_mel`` float32 [batch, frames, n_mels], the front end's log-mel frames
        (``speechkit.frontend.log_mel``: 10 ms hop, ``normalize: false``); ``speaker`` int32 [batch]
        (speaker-conditioned models only); ``temperature`` float32 scalar (0 = argmax);
        ``seed`` int32 scalar.
        outputs: ``waveform`` float32 [batch, frames * hop] in [-1, 1].
        The ``cond_context`` frames the upsampler needs on each side are copies of the first and
        last frame (a mel from an acoustic model has no frames outside the utterance).

    Signature ``vocode_waveform`` (copy synthesis):
        inputs: ``waveform`` float32 [batch, samples] zero-padded, ``lengths`` int32 [batch],
        (``speaker``), ``temperature``, ``seed``.
        outputs: ``waveform`` float32 [batch, samples], zero beyond ``lengths``. The log-mel is
        computed in the graph (``conditioning_mel``), so row ``b`` equals the vocoded utterance
        alone: the front end pads with zeros and generation is causal.

    Args:
        model: a built, mel-conditioned WaveNet.
        jit_compile: bool, XLA-compile the generation loop (as ``Vocoder`` does by default).
        parallel: int >= 0, rows of a batch generated at the same time, each by its own one-row
            loop (``TFGenerator``); 0 runs the whole batch as one loop.
    """

    def __init__(self, model, *, jit_compile=True, parallel=PARALLEL):
        super().__init__(name="speechkit_vocoder")
        if model.upsampler is None:
            raise ConfigError("only a mel-conditioned WaveNet can be exported as a vocoder; an unconditional model "
                              "has nothing to vocode")
        self.model = model
        self._generator = TFGenerator(model, jit_compile=jit_compile, parallel=parallel)
        self.has_speakers = model.speaker_embedding is not None
        common = [tf.TensorSpec([], tf.float32, name="temperature"), tf.TensorSpec([], tf.int32, name="seed")]
        speaker = [tf.TensorSpec([None], tf.int32, name="speaker")] if self.has_speakers else []
        n_mels = model.frontend.n_mels
        if self.has_speakers:
            self.from_mel = tf.function(
                lambda log_mel, speaker, temperature, seed: self._from_mel(log_mel, speaker, temperature, seed),
                input_signature=[tf.TensorSpec([None, None, n_mels], tf.float32, name="log_mel")] + speaker + common)
            self.from_waveform = tf.function(
                lambda waveform, lengths, speaker, temperature, seed: self._from_waveform(
                    waveform, lengths, speaker, temperature, seed),
                input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform"),
                                 tf.TensorSpec([None], tf.int32, name="lengths")] + speaker + common)
        else:
            self.from_mel = tf.function(
                lambda log_mel, temperature, seed: self._from_mel(log_mel, None, temperature, seed),
                input_signature=[tf.TensorSpec([None, None, n_mels], tf.float32, name="log_mel")] + common)
            self.from_waveform = tf.function(
                lambda waveform, lengths, temperature, seed: self._from_waveform(
                    waveform, lengths, None, temperature, seed),
                input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform"),
                                 tf.TensorSpec([None], tf.int32, name="lengths")] + common)

    def _generate(self, cond, samples, speaker, temperature, seed, mel):
        model = self.model
        batch = tf.shape(cond)[0]
        state = model.initial_state(batch)
        x_first = tf.fill([batch], tf.constant(silence_class(model.frontend), tf.int32))
        speaker_vector = None if speaker is None else model.speaker_vector(speaker)
        classes, _, _ = self._generator.loop(x_first, state["buffer"], state["time"], _row_noise(seed, batch, samples),
                                             temperature, cond, speaker_vector)
        return restore_waveform(model, mu_law_decode(classes, model.frontend.mu), mel, postfilter=0)

    def _postfiltered(self, waveform, mel, lengths=None):
        """The model's mel post-filter passes; with ``lengths``, row by row on each row's own samples and
        frames, so that a padded row gets what it would get alone."""
        frontend, passes = self.model.frontend, self.model.config.mel_postfilter
        if not passes:
            return waveform
        if lengths is None:
            return match_mel(waveform, mel, frontend=frontend, iterations=passes)
        samples = tf.shape(waveform)[1]

        def row(args):
            wave, row_mel, length = args
            out = match_mel(wave[:length], row_mel[:1 + length // frontend.hop_length], frontend=frontend,
                            iterations=passes)
            return tf.pad(out, [[0, samples - length]])

        return tf.map_fn(row, (waveform, mel, lengths), fn_output_signature=tf.TensorSpec([None], tf.float32))

    def _from_mel(self, log_mel, speaker, temperature, seed):
        context = self.model.config.cond_context
        mel = tf.concat([tf.repeat(log_mel[:, :1], context, axis=1), log_mel,
                         tf.repeat(log_mel[:, -1:], context, axis=1)], axis=1)
        cond = self.model.upsample(mel)
        samples = tf.shape(log_mel)[1] * self.model.frontend.hop_length
        return {"waveform": self._postfiltered(self._generate(cond, samples, speaker, temperature, seed, log_mel),
                                               log_mel)}

    def _from_waveform(self, waveform, lengths, speaker, temperature, seed):
        model = self.model
        samples = tf.shape(waveform)[1]
        mask = tf.sequence_mask(lengths, samples, tf.float32)
        masked = waveform * mask
        mel = conditioning_mel(masked, frontend=model.frontend, context=model.config.cond_context)
        cond = model.upsample(mel)[:, :samples]
        raw_mel = frontend_log_mel(masked, config=model.frontend)
        waveform = self._generate(cond, samples, speaker, temperature, seed, raw_mel) * mask
        return {"waveform": self._postfiltered(waveform, raw_mel, lengths)}


def export_vocoder(run_dir, out_dir, *, jit_compile=True, parallel=PARALLEL):
    """Export a vocoder run as a SavedModel with ``serving_default`` and ``vocode_waveform``.

    The run is read through ``RunDir`` (``load_vocoder``). The export directory is self-contained
    and keeps its own files: the SavedModel, ``frontend.yaml``, ``speakers.json`` (speaker names in
    embedding order, when the model has speakers) and ``export.json``.

    Args:
        run_dir: str or RunDir, a directory written by vocoder training.
        out_dir: str, the export directory (replaced atomically if it exists).
        jit_compile: bool, XLA-compile the generation loop in the SavedModel.
        parallel: int >= 0, rows of a batch generated at the same time (``VocoderServingModule``).

    Returns:
        dict, the content of ``export.json``.
    """
    started = time.perf_counter()
    vocoder = load_vocoder(run_dir)
    module = VocoderServingModule(vocoder.model, jit_compile=jit_compile, parallel=parallel)
    model = vocoder.model
    info = {
        "kind": "vocoder",
        "source_run": os.path.abspath(vocoder.run_dir),
        "signatures": {
            SIGNATURE: {"inputs": ["log_mel float32 [batch, frames, n_mels]"]
                        + (["speaker int32 [batch]"] if module.has_speakers else [])
                        + ["temperature float32 []", "seed int32 []"],
                        "outputs": ["waveform float32 [batch, frames * hop]"]},
            WAVEFORM_SIGNATURE: {"inputs": ["waveform float32 [batch, samples]", "lengths int32 [batch]"]
                                 + (["speaker int32 [batch]"] if module.has_speakers else [])
                                 + ["temperature float32 []", "seed int32 []"],
                                 "outputs": ["waveform float32 [batch, samples]"]},
        },
        "sample_rate": model.frontend.sample_rate,
        "hop_length": model.frontend.hop_length,
        "n_mels": model.frontend.n_mels,
        "num_speakers": model.config.num_speakers,
        "parameters": int(model.count_params()),
        "jit_compile": bool(jit_compile),
        "parallel": int(parallel),
        "tensorflow": tf.__version__,
    }

    def build(tmp):
        start = time.perf_counter()
        tf.saved_model.save(module, tmp, signatures={SIGNATURE: module.from_mel,
                                                     WAVEFORM_SIGNATURE: module.from_waveform})
        info["saved_model_seconds"] = time.perf_counter() - start
        save_yaml(os.path.join(tmp, FRONTEND_FILE), model.frontend)
        if vocoder.speakers:
            atomic_write_text(os.path.join(tmp, RunDir.SPEAKERS), json.dumps(vocoder.speakers, indent=1) + "\n")
        info["export_seconds"] = time.perf_counter() - started
        atomic_write_text(os.path.join(tmp, EXPORT_JSON), json.dumps(info, indent=2) + "\n")

    write_export_dir(out_dir, build)
    logger.info("exported %s -> %s in %.1f s", vocoder.run_dir, out_dir, info["export_seconds"])
    return info


class ExportedVocoder:
    """Copy synthesis with an exported vocoder (``vocode_waveform``); mirrors ``Vocoder.vocode``.

    Args:
        export_dir: str, written by ``export_vocoder``.

    Attributes:
        frontend, speakers, has_speakers, signatures (dict of the two loaded concrete functions).
    """

    def __init__(self, export_dir):
        if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
            raise ExportError(f"{export_dir}: no saved_model.pb; is it a vocoder export?")
        path = os.path.join(export_dir, FRONTEND_FILE)
        if not os.path.isfile(path):
            raise ExportError(f"{path}: missing; is {export_dir} a vocoder export?")
        self.frontend = from_dict(FrontendConfig, load_yaml(path), source=path)
        self.run_dir = export_dir
        self.speakers = []
        if os.path.isfile(os.path.join(export_dir, RunDir.SPEAKERS)):
            with open(os.path.join(export_dir, RunDir.SPEAKERS), encoding="utf-8") as f:
                self.speakers = json.load(f)
        loaded = tf.saved_model.load(export_dir)
        missing = {SIGNATURE, WAVEFORM_SIGNATURE} - set(loaded.signatures)
        if missing:
            raise ExportError(f"{export_dir}: the SavedModel lacks signature(s) {sorted(missing)}")
        self._loaded = loaded
        self.signatures = {name: loaded.signatures[name] for name in (SIGNATURE, WAVEFORM_SIGNATURE)}
        self.has_speakers = "speaker" in self.signatures[WAVEFORM_SIGNATURE].structured_input_signature[1]

    def speaker_index(self, speaker):
        """Embedding row for a speaker name or index; None for models without speakers."""
        if not self.has_speakers:
            if speaker is not None:
                raise ConfigError(f"{self.run_dir}: this model has no speaker conditioning; give no speaker")
            return None
        if speaker is None:
            raise ConfigError(f"{self.run_dir}: this model is speaker-conditioned; give a speaker name or index")
        if str(speaker) in self.speakers:
            return self.speakers.index(str(speaker))
        try:
            return int(speaker)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.run_dir}: unknown speaker {speaker!r}; known: {self.speakers[:10]}") from None

    def vocode(self, audios, *, temperature=1.0, seed=0, speaker=None, batch_size=8):
        """Resynthesise each waveform from its own log-mel; returns float32 arrays of the input lengths.

        Utterance ``i`` of the call is row ``i % batch_size`` of its batch (inputs are not
        reordered), so its noise is ``(seed, i % batch_size)``; at temperature 0 batching does not
        change any output.
        """
        audios = [audio_io.valid_audio(a, source=f"utterance {i}") for i, a in enumerate(audios)]
        index = self.speaker_index(speaker)
        results = []
        for start in range(0, len(audios), batch_size):
            chunk = audios[start:start + batch_size]
            lengths = np.array([len(a) for a in chunk], np.int32)
            padded = np.zeros((len(chunk), int(lengths.max())), np.float32)
            for row, a in enumerate(chunk):
                padded[row, :len(a)] = a
            kwargs = {"waveform": tf.constant(padded), "lengths": tf.constant(lengths),
                      "temperature": tf.constant(float(temperature), tf.float32),
                      "seed": tf.constant(int(seed), tf.int32)}
            if index is not None:
                kwargs["speaker"] = tf.fill([len(chunk)], tf.constant(index, tf.int32))
            waves = self.signatures[WAVEFORM_SIGNATURE](**kwargs)["waveform"].numpy()
            results.extend(waves[row, :n] for row, n in enumerate(lengths))
        return results


def load_exported_vocoder(export_dir):
    """Load a vocoder export as an ``ExportedVocoder``."""
    return ExportedVocoder(export_dir)
