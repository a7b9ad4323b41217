"""Cached incremental WaveNet generation: an in-graph TensorFlow loop, priming, and the ``Vocoder`` API.

Paine et al., "Fast Wavenet Generation Algorithm" (2016): every layer keeps a queue of its past
inputs, so one new sample costs O(layers) instead of a pass over the whole receptive field. The
loop here is a ``tf.while_loop`` over a packed copy of ``WaveNet.step`` (XLA-compiled by default)
that can be saved in a SavedModel (``VocoderModule``, ``speechkit.export.vocoder``);
``speechkit.vocoder.fast.FastWaveNet`` runs the same algorithm on the same state layout in numba,
faster on a CPU.

Sampling is by inverse CDF from caller-supplied uniform noise, ``class = #{c : cdf_c < u * total}``
over ``softmax(logits / temperature)``, and temperature 0 takes the argmax, so both back ends draw
identical samples from identical noise. ``Vocoder`` draws the noise of utterance ``i`` from
``numpy.random.default_rng([seed, i])``: an utterance's output does not depend on its batch.
"""

import dataclasses
import logging
import os
import time

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from speechkit import audio as audio_io
from speechkit.errors import ConfigError, RunError
from speechkit.frontend import log_mel, mu_law_decode, mu_law_encode
from speechkit.runs import RunDir
from speechkit.vocoder.fast import FastWaveNet
from speechkit.vocoder.lpc import (excitation, lpc_from_log_mel, noise_excitation, source_filter, synthesize,
                                   synthesize_tf)
from speechkit.vocoder.postfilter import match_mel
from speechkit.vocoder.wavenet import WaveNet, WaveNetConfig, conditioning_mel, silence_class

__all__ = [
    "sample_from_logits",
    "TFGenerator",
    "VocoderModule",
    "Vocoder",
    "load_vocoder",
    "restore_waveform",
    "vocode_files",
    "BACKENDS",
]

logger = logging.getLogger(__name__)

BACKENDS = ("fast", "tf")

_RESIDUAL_SCALE = np.float32(np.sqrt(0.5))


def sample_from_logits(logits, noise, temperature):
    """Draw classes by inverse CDF; ``temperature == 0`` gives the argmax.

    Args:
        logits: float32 [batch, classes].
        noise: float32 [batch], uniform in [0, 1).
        temperature: float32 scalar >= 0.

    Returns:
        int32 [batch].
    """
    classes = tf.shape(logits)[-1]
    greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
    scaled = (logits - tf.reduce_max(logits, axis=-1, keepdims=True)) / tf.maximum(temperature, 1e-6)
    cdf = tf.cumsum(tf.exp(scaled), axis=-1)
    threshold = noise[:, tf.newaxis] * cdf[:, -1:]
    drawn = tf.minimum(tf.reduce_sum(tf.cast(cdf < threshold, tf.int32), axis=-1), classes - 1)
    return tf.where(temperature > 0, drawn, greedy)


def _packed_weights(model):
    """The loop-invariant weights of the cached step, packed for ``_packed_step``.

    Built from the model's variables inside the traced function, so a SavedModel keeps the
    variables and the packing runs once per call, outside the sample loop.

    Returns:
        dict: ``table`` float32 [classes, R] (the input embedding of every class), per layer
        ``conv`` float32 [kernel_size * R, 2G] (rows for the input at t, then at t - d, t - 2d, ...),
        ``conv_bias``, ``out`` float32 [G, S (+ R)] and ``out_bias``, and the head's ``w1``, ``b1``,
        ``w2``, ``b2``.
    """
    cfg = model.config
    k = cfg.kernel_size
    if cfg.input_type == "mulaw":
        table = tf.convert_to_tensor(model.input_embedding.embeddings)
    else:
        table = model.embed(mu_law_decode(tf.range(cfg.num_classes), model.frontend.mu))
    return {
        "table": table,
        "conv": [tf.concat([layer.conv_kernel[k - 1 - j] for j in range(k)], axis=0) for layer in model.res_layers],
        "conv_bias": [tf.convert_to_tensor(layer.conv_bias) for layer in model.res_layers],
        "out": [tf.convert_to_tensor(layer.out_kernel) for layer in model.res_layers],
        "out_bias": [tf.convert_to_tensor(layer.out_bias) for layer in model.res_layers],
        "w1": tf.convert_to_tensor(model.head_hidden.kernel), "b1": tf.convert_to_tensor(model.head_hidden.bias),
        "w2": tf.convert_to_tensor(model.head_out.kernel), "b2": tf.convert_to_tensor(model.head_out.bias),
    }


def _packed_step(model, packed, x, buffer, time, bias_t):
    """``WaveNet.step`` with as few XLA kernels per layer as the algebra allows.

    A deliberate copy of ``WaveNet.step`` and ``ResidualLayer._gate``: the class indices index
    the embedding table directly, and each layer's dilated convolution is one product of the
    concatenated taps ``[h_t, h_{t-d}, ...]`` with the stacked kernel, so a layer compiles to two
    products and two element-wise kernels. Under XLA on a CPU the cost of a generated sample is
    the number of kernels the loop body runs, not its multiply-adds, so this is about three times
    faster than stepping through the Keras layers. ``tests/test_wavenet_generation.py`` proves the
    logits equal to ``WaveNet.step``.

    Args:
        model: the WaveNet; packed: ``_packed_weights(model)``.
        x: int32 [batch], the class of sample t - 1.
        buffer, time: the state tensors (``WaveNet.initial_state``).
        bias_t: float32 [batch, layers, 2G] conditioning bias at time t, or None.

    Returns:
        (logits float32 [batch, classes], new buffer).
    """
    cfg = model.config
    g, s = cfg.gate_channels, cfg.skip_channels
    dil = tf.constant(model.dilations, tf.int32)
    sizes = tf.constant(model.buffer_sizes, tf.int32)
    offsets = tf.constant(model.buffer_offsets, tf.int32)
    taps = [tf.gather(buffer, offsets + tf.math.floormod(time - j * dil, sizes), axis=0)
            for j in range(1, cfg.kernel_size)]
    h = tf.gather(packed["table"], x)
    written, skips = [], None
    last = len(model.res_layers) - 1
    for i in range(last + 1):
        written.append(h)
        z = tf.matmul(tf.concat([h] + [tap[i] for tap in taps], axis=-1), packed["conv"][i]) + packed["conv_bias"][i]
        if bias_t is not None:
            z = z + bias_t[:, i]
        a = tf.tanh(z[:, :g]) * tf.sigmoid(z[:, g:])
        out = tf.matmul(a, packed["out"][i]) + packed["out_bias"][i]
        skips = out[:, :s] if skips is None else skips + out[:, :s]
        if model.res_layers[i].residual:
            h = (h + out[:, s:]) * _RESIDUAL_SCALE
    hidden = tf.nn.relu(tf.matmul(tf.nn.relu(skips), packed["w1"]) + packed["b1"])
    logits = tf.matmul(hidden, packed["w2"]) + packed["b2"]
    slots = (offsets + tf.math.floormod(time, sizes))[:, tf.newaxis]
    return logits, tf.tensor_scatter_nd_update(buffer, slots, tf.stack(written, axis=0))


class TFGenerator:
    """The cached generation loop in TensorFlow, one compiled function per model.

    Mel conditioning is projected for every layer once, one frame block at a time (outer loop
    over blocks of ``hop`` samples, inner loop over samples), so memory stays bounded for long
    utterances. The inner loop runs ``_packed_step``.

    Streams are independent. With ``parallel=0`` a batch runs as one loop on [batch, C] x [C, 2G]
    products. With ``parallel=P >= 1`` every row runs its own one-row loop, ``P`` rows at a time
    on TensorFlow's inter-op threads, so a batch uses P cores. On a CPU the one-row
    loop is the fast one: XLA emits its matrix-vector products inline, while its matrix-matrix
    products are library calls whose fixed cost exceeds their arithmetic at these sizes (a row
    of a batch of 4 in one loop costs about three times a lone row).

    Args:
        model: a built WaveNet.
        jit_compile: bool, compile the loop with XLA.
        parallel: int >= 0, rows generated at the same time (0: the whole batch in one loop).
    """

    def __init__(self, model, *, jit_compile=True, parallel=0):
        if not isinstance(parallel, int) or parallel < 0:
            raise ConfigError(f"parallel must be an int >= 0, received: {parallel!r}")
        self.model = model
        self.jit_compile = jit_compile
        self.parallel = parallel
        self._fn = tf.function(self._loop, jit_compile=jit_compile, reduce_retracing=True)
        self._graph = tf.function(self.loop, reduce_retracing=True)

    def _loop(self, x_first, buffer, time, noise, temperature, cond, speaker_vector):
        model = self.model
        packed = _packed_weights(model)
        batch = noise.shape[0] if noise.shape[0] is not None else tf.shape(noise)[0]
        chunk = model.config.hop_length if cond is not None else 1
        total = tf.shape(noise)[1]
        n_chunks = (total + chunk - 1) // chunk
        padded = n_chunks * chunk
        noise = tf.pad(noise, [[0, 0], [0, padded - total]])
        if cond is not None:
            cond = tf.pad(cond[:, :total], [[0, 0], [0, padded - total], [0, 0]])
        const_bias = None
        if cond is None and speaker_vector is not None:
            const_bias = model.conditioning_bias(None, speaker_vector)[:, 0]
        out = tf.TensorArray(tf.int32, size=total, element_shape=tf.TensorShape([None]))

        def outer(c, x, buf, t, out):
            if cond is not None:
                block = tf.slice(cond, [0, c * chunk, 0], [batch, chunk, cond.shape[2]])
                bias = model.conditioning_bias(block, speaker_vector)
            else:
                bias = None

            def inner(j, x, buf, t, out):
                bias_t = bias[:, j] if bias is not None else const_bias
                logits, buf = _packed_step(model, packed, x, buf, t, bias_t)
                i = c * chunk + j
                sample = tf.ensure_shape(sample_from_logits(logits, noise[:, i], temperature), x.shape)
                return j + 1, sample, buf, t + 1, out.write(i, sample)

            _, x, buf, t, out = tf.while_loop(lambda j, *_: tf.logical_and(j < chunk, c * chunk + j < total), inner,
                                              (0, x, buf, t, out))
            return c + 1, x, buf, t, out

        _, _, buffer, time, out = tf.while_loop(lambda c, *_: c < n_chunks, outer,
                                                (0, x_first, buffer, time, out))
        return tf.transpose(out.stack()), buffer, time

    def _rows(self, x_first, buffer, time, noise, temperature, cond, speaker_vector):
        """Each row by its own one-row compiled loop, in ``parallel`` lanes (rows ``lane``, ``lane +
        parallel``, ...). The lanes are independent graph ops, so TensorFlow's executor runs them on
        that many inter-op threads at once; a ``tf.map_fn`` over all rows with ``parallel_iterations``
        ran the compiled calls one after another."""

        def one(b):
            row = tf.reshape(b, [1])
            classes, buf, _ = self._fn(tf.gather(x_first, row), tf.gather(buffer, row, axis=1), time,
                                       tf.gather(noise, row), temperature,
                                       None if cond is None else tf.gather(cond, row),
                                       None if speaker_vector is None else tf.gather(speaker_vector, row))
            return classes[0], buf[:, 0]

        row_buffer = tf.TensorSpec(buffer.shape[:1] + buffer.shape[2:], tf.float32)

        def lane_of(rows):
            """The rows' loops one after another (an empty lane, for a batch under ``parallel``, yields
            empty results: ``map_fn`` cannot stack zero rows of unknown length)."""
            return tf.cond(tf.size(rows) > 0,
                           lambda: tf.map_fn(one, rows, parallel_iterations=1,
                                             fn_output_signature=(tf.TensorSpec([None], tf.int32), row_buffer)),
                           lambda: (tf.zeros([0, tf.shape(noise)[1]], tf.int32),
                                    tf.zeros(tf.concat([[0], tf.shape(buffer)[:1], tf.shape(buffer)[2:]], 0))))

        lanes = [tf.range(lane, tf.shape(noise)[0], self.parallel) for lane in range(self.parallel)]
        results = [lane_of(rows) for rows in lanes]
        classes = tf.dynamic_stitch(lanes, [lane_classes for lane_classes, _ in results])
        buffers = tf.dynamic_stitch(lanes, [lane_buffers for _, lane_buffers in results])
        return classes, tf.transpose(buffers, [1, 0, 2]), time + tf.shape(noise)[1]

    def loop(self, x_first, buffer, time, noise, temperature, cond=None, speaker_vector=None):
        """The compiled loop on tensors, callable inside another ``tf.function`` (SavedModel export).

        Args:
            x_first: int32 [batch], the input before the first generated sample.
            buffer, time: the state tensors (``WaveNet.initial_state``).
            noise: float32 [batch, samples], uniform in [0, 1); its length sets how many samples.
            temperature: float32 scalar >= 0 (0 takes the argmax).
            cond: float32 [batch, >= samples, cond_channels] upsampled conditioning, or None.
            speaker_vector: float32 [batch, speaker_channels], or None.

        Returns:
            (classes int32 [batch, samples], buffer, time).
        """
        if self.parallel == 0:
            return self._fn(x_first, buffer, time, noise, temperature, cond, speaker_vector)
        return self._rows(x_first, buffer, time, noise, temperature, cond, speaker_vector)

    def run(self, x_first, state, num_samples, *, noise, temperature=1.0, cond=None, speaker_vector=None):
        """Generate ``num_samples`` samples; same arguments and result as ``FastWaveNet.run``."""
        batch = int(state["buffer"].shape[1])
        noise = tf.reshape(tf.convert_to_tensor(noise, tf.float32), [batch, num_samples])
        cond = None if cond is None else tf.convert_to_tensor(cond, tf.float32)[:, :num_samples]
        speaker_vector = None if speaker_vector is None else tf.convert_to_tensor(speaker_vector, tf.float32)
        classes, buffer, time = self._graph(tf.reshape(tf.cast(x_first, tf.int32), [batch]),
                                         tf.convert_to_tensor(state["buffer"], tf.float32),
                                         tf.convert_to_tensor(state["time"], tf.int32), noise,
                                         tf.constant(float(temperature), tf.float32), cond, speaker_vector)
        return classes.numpy(), {"buffer": buffer.numpy(), "time": int(time)}


class VocoderModule(tf.Module):
    """A SavedModel-ready vocoder: waveform in, copy-synthesised waveform out, all in one graph.

    The front end, the upsampling and the cached loop are TensorFlow ops, so the exported model
    needs nothing but TensorFlow.

    Args:
        model: a built, mel-conditioned WaveNet without speakers.
        jit_compile: bool.
    """

    def __init__(self, model, *, jit_compile=True):
        super().__init__()
        if model.upsampler is None or model.speaker_embedding is not None:
            raise ConfigError("VocoderModule needs a mel-conditioned WaveNet without speaker conditioning")
        self.model = model
        self._generator = TFGenerator(model, jit_compile=jit_compile)
        self.vocode = tf.function(self._vocode, input_signature=[
            tf.TensorSpec([None], tf.float32, name="audio"),
            tf.TensorSpec([], tf.int32, name="seed"),
            tf.TensorSpec([], tf.float32, name="temperature")])

    def _vocode(self, audio, seed, temperature):
        model = self.model
        n = tf.shape(audio)[0]
        mel = conditioning_mel(audio[tf.newaxis], frontend=model.frontend, context=model.config.cond_context)
        cond = model.upsample(mel)[:, :n]
        noise = tf.random.stateless_uniform([1, n], seed=tf.stack([seed, 0]))
        state = model.initial_state(1)
        x_first = tf.fill([1], tf.constant(silence_class(model.frontend), tf.int32))
        classes, _, _ = self._generator._fn(x_first, state["buffer"], state["time"], noise, temperature, cond, None)
        return restore_waveform(model, mu_law_decode(classes, model.frontend.mu), log_mel(
            audio[tf.newaxis], config=model.frontend))[0]


def restore_waveform(model, generated, mel, *, postfilter=None):
    """The waveform from a model's generated samples: they are it, or (``lpc_order`` > 0) its LPC
    residual; then the model's mel post-filter, if it has one.

    Args:
        model: WaveNet.
        generated: float32 tensor [batch, samples], mu-law decoded.
        mel: float32 tensor [batch, frames, n_mels], the front end's log-mel the samples were conditioned on.
        postfilter: int >= 0 or None, post-filter passes (None: the model's ``mel_postfilter``).

    Returns:
        float32 tensor [batch, samples] in [-1, 1].
    """
    order = model.config.lpc_order
    waveform = generated
    if order:
        if model.config.lpc_normalize:
            predictors, gain = lpc_from_log_mel(mel, frontend=model.frontend, order=order, return_gain=True)
        else:
            predictors, gain = lpc_from_log_mel(mel, frontend=model.frontend, order=order), None
        waveform = tf.clip_by_value(_synthesize_xla(generated, predictors, hop=model.frontend.hop_length, gain=gain),
                                    -1.0, 1.0)
    passes = model.config.mel_postfilter if postfilter is None else postfilter
    return match_mel(waveform, mel, frontend=model.frontend, iterations=passes)


# The filter is a loop over samples: compiled, a step is a few fused ops; in a plain graph each step
# pays op dispatch (10 s of audio: 10 ms against 2.3 s).
_synthesize_xla = tf.function(synthesize_tf, jit_compile=True)


class Vocoder:
    """A trained WaveNet ready for copy synthesis and free-running generation.

    Args:
        model: a built WaveNet.
        speakers: list of str, speaker names in embedding order (speaker-conditioned models).
        run_dir: str or None, where the model came from (for messages).
    """

    def __init__(self, model, *, speakers=None, run_dir=None):
        self.model = model
        self.config = model.config
        self.frontend = model.frontend
        self.speakers = list(speakers or [])
        self.run_dir = run_dir
        self._fast = None
        self._tf = None

    def _backend(self, name):
        if name == "fast":
            if self._fast is None:
                self._fast = FastWaveNet(self.model)
            return self._fast
        if name == "tf":
            if self._tf is None:
                self._tf = TFGenerator(self.model)
            return self._tf
        raise ConfigError(f"backend must be one of {BACKENDS}, received: {name!r}")

    def speaker_index(self, speaker):
        """Embedding row for ``speaker`` (a name from training, or an int index as int or str)."""
        if self.model.speaker_embedding is None:
            if speaker is not None:
                raise ConfigError(f"{self.run_dir}: this model has no speaker conditioning; give no speaker")
            return None
        if speaker is None:
            raise ConfigError(f"{self.run_dir}: this model is speaker-conditioned; give a speaker "
                              f"(one of {self.speakers[:10]}{'...' if len(self.speakers) > 10 else ''} or an index)")
        if str(speaker) in self.speakers:
            return self.speakers.index(str(speaker))
        try:
            index = int(speaker)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.run_dir}: unknown speaker {speaker!r}; known: {self.speakers[:10]}") from None
        if not 0 <= index < self.config.num_speakers:
            raise ConfigError(f"{self.run_dir}: speaker index {index} outside [0, {self.config.num_speakers})")
        return index

    def _speaker_vector(self, speaker, batch):
        index = self.speaker_index(speaker)
        if index is None:
            return None
        return self.model.speaker_vector(np.full([batch], index, np.int32)).numpy()

    def conditioning(self, audio):
        """Upsampled conditioning float32 [samples, cond_channels] for one waveform (the front end's mel)."""
        audio = audio_io.valid_audio(audio)
        mel = conditioning_mel(audio[np.newaxis], frontend=self.frontend, context=self.config.cond_context)
        return self.model.upsample(mel)[0, :len(audio)].numpy()

    def mel_conditioning(self, mel):
        """Upsampled conditioning float32 [frames * hop, cond_channels] for log-mel frames with no audio.

        The ``cond_context`` frames on each side are the edge frames repeated, as in the exported
        vocoder's ``serving_default``; a text-to-speech model's predicted mel has nothing else.
        """
        mel = np.asarray(mel, np.float32)
        context = self.config.cond_context
        padded = np.concatenate([np.repeat(mel[:1], context, 0), mel, np.repeat(mel[-1:], context, 0)])
        return self.model.upsample(padded[np.newaxis], len(mel) * self.frontend.hop_length)[0].numpy()

    def quantised(self, audio):
        """``audio`` as the model's classes represent it at best: the floor of any copy synthesis.

        The waveform's mu-law round trip, or for an ``lpc_order`` model its residual's, filtered back.
        """
        audio = audio_io.valid_audio(audio)
        mu = self.frontend.mu
        if not self.config.lpc_order:
            return mu_law_decode(mu_law_encode(audio, mu), mu).numpy()
        (predictors, gain), residual = self._residual(audio)
        return np.clip(synthesize(mu_law_decode(mu_law_encode(residual, mu), mu).numpy(), predictors,
                                  hop=self.frontend.hop_length, gain=gain), -1.0, 1.0)

    def noise_excited(self, audio, *, seed=0):
        """An ``lpc_order`` model's filter driven by white noise at ``audio``'s residual level, frame by frame.

        What the filter restores without the network (``speechkit.vocoder.lpc.noise_excitation``): the
        reference the network's excitation has to beat.
        """
        if not self.config.lpc_order:
            raise ConfigError(f"{self.run_dir}: this model has no LPC filter (lpc_order 0)")
        (predictors, gain), residual = self._residual(audio_io.valid_audio(audio))
        hop = self.frontend.hop_length
        return np.clip(synthesize(noise_excitation(residual, hop=hop, seed=seed), predictors, hop=hop, gain=gain),
                       -1.0, 1.0)

    def postfiltered(self, audio, mel, *, passes=None):
        """``audio`` through the mel post-filter towards log-mel ``mel`` (``speechkit.vocoder.postfilter``).

        Args:
            audio: float32 [samples].
            mel: float32 [frames, n_mels], the front end's log-mel the audio was generated from.
            passes: int >= 0 or None (the model's ``mel_postfilter``).

        Returns:
            float32 numpy [samples] in [-1, 1] (``audio`` itself when there are no passes).
        """
        passes = self.config.mel_postfilter if passes is None else passes
        if not passes:
            return audio
        return match_mel(audio, mel, frontend=self.frontend, iterations=passes).numpy()

    def _source_filter(self, mel):
        """``(lpc, gain)`` of the filter for log-mel ``mel`` (``speechkit.vocoder.lpc.source_filter``)."""
        return source_filter(mel, frontend=self.frontend, order=self.config.lpc_order,
                             normalize=self.config.lpc_normalize)

    def _residual(self, audio):
        """``((lpc, gain), residual)``: the filter of ``audio`` and the samples the network models for it."""
        predictors, gain = self._source_filter(log_mel(audio, config=self.frontend))
        return (predictors, gain), excitation(audio, predictors, hop=self.frontend.hop_length, gain=gain)

    def vocode(self, audios, *, temperature=1.0, seed=0, speaker=None, backend="fast", batch_size=8,
               progress=False, postfilter=None):
        """Copy synthesis: resynthesise each waveform from its own log-mel.

        Args:
            audios: list of float32 [samples] at the front end's rate.
            temperature: float >= 0.
            seed: int; utterance ``i`` draws its noise from ``default_rng([seed, i])``.
            speaker: speaker name or index for speaker-conditioned models.
            backend: ``"fast"`` (numba) or ``"tf"`` (compiled TensorFlow loop).
            batch_size: int > 0, utterances generated together (sorted by length).
            progress: bool, show a tqdm bar.
            postfilter: int >= 0 or None, mel post-filter passes (None: the model's ``mel_postfilter``).

        Returns:
            list of float32 [samples] in [-1, 1], one per input, same lengths.
        """
        audios = [audio_io.valid_audio(a, source=f"utterance {i}") for i, a in enumerate(audios)]
        return self._generate_conditioned([len(a) for a in audios], lambda i: self.conditioning(audios[i]),
                                          lambda i: log_mel(audios[i], config=self.frontend).numpy(),
                                          temperature=temperature, seed=seed, speaker=speaker, backend=backend,
                                          batch_size=batch_size, progress=progress, postfilter=postfilter)

    def vocode_mels(self, mels, *, temperature=1.0, seed=0, speaker=None, backend="fast", batch_size=8,
                    progress=False, postfilter=None):
        """Waveforms for log-mel frames alone (``mel_conditioning``), for example a TTS model's prediction.

        Args:
            mels: list of float32 [frames, n_mels], the front end's log-mel.
            temperature, seed, speaker, backend, batch_size, progress, postfilter: as in ``vocode``.

        Returns:
            list of float32 [frames * hop] in [-1, 1].
        """
        hop = self.frontend.hop_length
        return self._generate_conditioned([len(m) * hop for m in mels], lambda i: self.mel_conditioning(mels[i]),
                                          lambda i: np.asarray(mels[i], np.float32),
                                          temperature=temperature, seed=seed, speaker=speaker, backend=backend,
                                          batch_size=batch_size, progress=progress, postfilter=postfilter)

    def _generate_conditioned(self, lengths, conditioning, mel, *, temperature, seed, speaker, backend, batch_size,
                              progress, postfilter):
        """One waveform per item: ``lengths[i]`` samples conditioned on ``conditioning(i)``, batched by length.

        ``mel(i)`` gives item ``i``'s log-mel, from which an ``lpc_order`` model's filter is taken.
        """
        if self.model.upsampler is None:
            raise ConfigError(f"{self.run_dir}: an unconditional model cannot vocode; use generate")
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        results = [None] * len(lengths)
        engine = self._backend(backend)
        bar = tqdm(total=sum(lengths), unit="sample", unit_scale=True, disable=not progress, desc="vocode")
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            longest = max(lengths[i] for i in idx)
            cond = np.zeros((len(idx), longest, self.config.cond_channels), np.float32)
            noise = np.zeros((len(idx), longest), np.float32)
            for row, i in enumerate(idx):
                n = lengths[i]
                cond[row, :n] = conditioning(i)
                noise[row, :n] = np.random.default_rng([seed, i]).random(n, dtype=np.float32)
            state = self.model.initial_state(len(idx))
            x_first = np.full([len(idx)], silence_class(self.frontend), np.int64)
            classes, _ = engine.run(x_first, state, longest, noise=noise, temperature=temperature, cond=cond,
                                    speaker_vector=self._speaker_vector(speaker, len(idx)))
            waves = mu_law_decode(classes, self.frontend.mu).numpy()
            for row, i in enumerate(idx):
                wave, item_mel = waves[row, :lengths[i]], mel(i)
                if self.config.lpc_order:
                    predictors, gain = self._source_filter(item_mel)
                    wave = np.clip(synthesize(wave, predictors, hop=self.frontend.hop_length, gain=gain), -1.0, 1.0)
                results[i] = self.postfiltered(wave, item_mel, passes=postfilter)
            bar.update(sum(lengths[i] for i in idx))
        bar.close()
        return results

    def prime(self, audio, *, batch_size=1, speaker=None):
        """Feed a seed waveform through the full model; return ``(x_first, state)`` to continue from.

        The seed is mu-law quantised as in training. The state equals the one reached by stepping
        through the seed sample by sample.
        """
        if self.model.upsampler is not None:
            raise ConfigError(f"{self.run_dir}: priming is for unconditional models; a mel-conditioned model "
                              "follows its mel (use vocode)")
        classes = mu_law_encode(audio_io.valid_audio(audio, source="prime"), self.frontend.mu).numpy()
        classes = np.tile(classes[np.newaxis], [batch_size, 1])
        inputs = {"audio": self.model.input_from_classes(_shift_right(classes, silence_class(self.frontend)))}
        index = self.speaker_index(speaker)
        if index is not None:
            inputs["speaker"] = np.full([batch_size], index, np.int32)
        _, state = self.model.prime(inputs)
        return classes[:, -1].astype(np.int64), {k: v.numpy() for k, v in state.items()}

    def generate(self, num_samples, *, prime=None, batch_size=1, temperature=1.0, seed=0, speaker=None,
                 backend="fast"):
        """Free-running generation from an unconditional (optionally speaker-conditioned) model.

        Args:
            num_samples: int > 0, samples to generate after the seed.
            prime: optional float32 [samples] seed waveform; generation continues from its end. Without
                one, generation starts after a receptive field of silence, primed like a seed: training
                windows at a clip's onset carry silent history, and every layer's cached input of that
                silence (the activations of the silence class, with the speaker's bias) differs from the
                zeros of ``WaveNet.initial_state``. A chord model started from zeros never strikes.
            batch_size: int > 0, independent streams (stream ``b`` uses ``default_rng([seed, b])``).
            temperature, seed, speaker, backend: as for ``vocode``.

        Returns:
            float32 [batch_size, num_samples], the continuation only.
        """
        if self.model.upsampler is not None:
            raise ConfigError(f"{self.run_dir}: this model is mel-conditioned; it needs a mel to vocode, "
                              "not free-running generation")
        if prime is None:
            prime = np.zeros(self.model.receptive_field().samples, np.float32)
        x_first, state = self.prime(prime, batch_size=batch_size, speaker=speaker)
        noise = np.stack([np.random.default_rng([seed, b]).random(num_samples, dtype=np.float32)
                          for b in range(batch_size)])
        classes, _ = self._backend(backend).run(x_first, state, num_samples, noise=noise, temperature=temperature,
                                                speaker_vector=self._speaker_vector(speaker, batch_size))
        return mu_law_decode(classes, self.frontend.mu).numpy()


def _shift_right(classes, first):
    """Teacher-forcing input: position t holds class t-1, position 0 holds ``first``."""
    classes = np.asarray(classes)
    return np.concatenate([np.full(classes.shape[:-1] + (1,), first, classes.dtype), classes[..., :-1]], axis=-1)


def _model_from_weights(run):
    """The WaveNet of ``config.yaml`` with the weights of ``weights.npz`` (a released model)."""
    config_path = run.file(RunDir.CONFIG)
    section = run.read_config().get("model")
    if not isinstance(section, dict):
        raise RunError(f"{config_path}: no model section to build the WaveNet from")
    model = WaveNet(WaveNetConfig.from_dict(section, source=config_path), run.frontend(), name="wavenet")
    model.build()
    return run.load_weights(model)


def load_vocoder(run_dir):
    """Load a trained vocoder run through ``RunDir`` and check that its parts agree.

    The WaveNet carries its own config and front end; when the run has a ``config.yaml``, they
    must equal its ``model`` and ``frontend`` sections, and ``speakers.json`` (when present) must
    name one speaker per embedding row. A released model (``speechkit.models``) has no
    ``model.keras``: its WaveNet is built from ``config.yaml`` and its ``weights.npz`` (float32 or
    float16) is loaded into it.

    Args:
        run_dir: str or RunDir, a directory written by vocoder training.

    Returns:
        Vocoder.

    Raises:
        RunError: the run, or its ``model.keras`` (or ``weights.npz`` with ``config.yaml``), is
            missing, a file is unreadable or corrupt, or the model is not a speechkit WaveNet;
            ConfigError: the run's front end, model config or speakers differ from the model's.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not run.exists(RunDir.MODEL) and (run.exists(RunDir.WEIGHTS) or run.exists(RunDir.CARD)):
        model_path = run.file(RunDir.WEIGHTS)
        model = _model_from_weights(run)
    else:
        if not run.exists(RunDir.MODEL):
            raise RunError(f"{run.file(RunDir.MODEL)}: missing; is {run.path} a finished vocoder run?")
        model_path = run.file(RunDir.MODEL)
        model = run.load_model(cls=WaveNet)
    if run.exists(RunDir.CONFIG):
        run.check_frontend(model.frontend, source=model_path)
        saved = run.read_config().get("model")
        if saved is not None:
            saved = WaveNetConfig.from_dict(saved, source=run.file(RunDir.CONFIG))
            if dataclasses.replace(saved, mel_postfilter=model.config.mel_postfilter) != model.config:
                raise ConfigError(f"{model_path}: model config differs from {run.file(RunDir.CONFIG)}")
            # A generation setting, which a resumed run may change (config.yaml has the latest).
            model.config = saved
    speakers = run.speakers()
    if speakers and len(speakers) != model.config.num_speakers:
        raise ConfigError(f"{run.file(RunDir.SPEAKERS)}: names {len(speakers)} speakers, the model has "
                          f"{model.config.num_speakers}")
    return Vocoder(model, speakers=speakers, run_dir=run.path)


def vocode_files(vocoder, paths, out, *, temperature=1.0, seed=0, speaker=None, batch_size=8, backend=None,
                 progress=False, postfilter=None):
    """Copy synthesis of audio files: one output file for one input, a folder of ``<name>.wav`` for several.

    All inputs are read first, then vocoded ``batch_size`` at a time (a batch runs on every core:
    ``Vocoder.vocode``, or the export's parallel rows).

    Args:
        vocoder: ``Vocoder``, or an exported one (``speechkit.export.vocoder.ExportedVocoder``).
        paths: list of str, audio files (any libsndfile format and rate; resampled to the model's).
        out: str, the output file (one input) or folder (several inputs; created if missing).
        temperature, seed, speaker, batch_size: as for ``Vocoder.vocode``.
        backend: ``"fast"`` or ``"tf"`` for a ``Vocoder`` (default ``"fast"``); None for an export.
        progress: bool, a tqdm bar (``Vocoder`` only).
        postfilter: int >= 0 or None, mel post-filter passes (``Vocoder`` only; None: the model's setting,
            which an export carries in its graph).

    Returns:
        dict with ``outputs`` (list of str, in input order), ``seconds`` (float, audio written) and
        ``elapsed`` (float, wall seconds of generation).

    Raises:
        AudioError: an input cannot be read.
        ConfigError: no input, two inputs would write the same output file, or ``postfilter`` was given
            for an export.
    """
    paths = list(paths)
    if postfilter is not None and not isinstance(vocoder, Vocoder):
        raise ConfigError("an exported vocoder applies the post-filter passes it was exported with; "
                          "postfilter applies to a run or a released model")
    if not paths:
        raise ConfigError("no audio file to vocode")
    if len(paths) == 1:
        outputs = [out]
    else:
        outputs = [os.path.join(out, os.path.splitext(os.path.basename(p))[0] + ".wav") for p in paths]
        clash = sorted({o for o in outputs if outputs.count(o) > 1})
        if clash:
            raise ConfigError(f"{clash[0]}: more than one input would be written there; give inputs distinct names")
    rate = vocoder.frontend.sample_rate
    audios = []
    for path in paths:
        audios.append(audio_io.load(path, sample_rate=rate))
    options = {}
    if isinstance(vocoder, Vocoder):
        options = {"backend": backend or "fast", "progress": progress, "postfilter": postfilter}
    started = time.perf_counter()
    waves = vocoder.vocode(audios, temperature=temperature, seed=seed, speaker=speaker, batch_size=batch_size,
                           **options)
    elapsed = time.perf_counter() - started
    if len(paths) > 1:
        os.makedirs(out, exist_ok=True)
    for path, wave in zip(outputs, waves):
        audio_io.save(path, wave, sample_rate=rate)
    return {"outputs": outputs, "seconds": sum(len(w) for w in waves) / rate, "elapsed": elapsed}
