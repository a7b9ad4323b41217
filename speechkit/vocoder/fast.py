"""Fast CPU generation: the cached WaveNet loop fused into one numba kernel.

A deliberate copy of ``WaveNet.step`` (``speechkit/vocoder/wavenet.py``) and of the TensorFlow loop
in ``speechkit/vocoder/generation.py``, specialised for a CPU thread: every matrix of the mini
preset stays in cache, the per-layer matrix-vector products are written as contiguous
multiply-add loops that LLVM vectorises, and there is no per-op dispatch. It reads the Keras
model's weights, keeps its state in the same ring-buffer layout as ``WaveNet.initial_state``
(so a state primed by the TensorFlow full pass continues here), and draws samples with the same
inverse-CDF rule from the same uniform noise. ``tests/test_wavenet_generation.py`` proves logits and
samples equal to the TensorFlow path.
"""

import logging
import math

import numba
import numpy as np

from speechkit.frontend import mu_law_decode

__all__ = ["FastWaveNet"]

logger = logging.getLogger(__name__)

_SCALE = np.float32(math.sqrt(0.5))


@numba.njit(cache=True, fastmath=True, nogil=True, inline="always")
def _tanh(x):
    """Rational tanh (Eigen's ``ptanh_float``), max abs error 4e-7; unlike libm it vectorises."""
    x = min(max(x, np.float32(-7.90531110763549805)), np.float32(7.90531110763549805))
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return p * x / q


@numba.njit(cache=True, fastmath=True, nogil=True)
def _kernel(n, x_first, buffer, t0, offsets, sizes, dils, table, conv_w, conv_b, out_w, out_b, has_res, skip_ch,
            proj, w1, b1, w2, b2, noise, temperature, forced, use_forced, record, logits_out, out):
    batch = x_first.shape[0]
    layers, k, res, g2 = conv_w.shape
    g = g2 // 2
    hid = w1.shape[1]
    classes = w2.shape[1]
    width = out_w.shape[2]
    h = np.empty((batch, res), np.float32)
    z = np.empty((batch, g2), np.float32)
    o = np.empty((batch, width), np.float32)
    skip = np.empty((batch, skip_ch), np.float32)
    u = np.empty((batch, hid), np.float32)
    logits = np.empty((batch, classes), np.float32)
    a = np.empty(g, np.float32)
    cdf = np.empty(classes, np.float32)
    per_sample = proj.shape[1] > 1
    x_prev = x_first.copy()
    one = np.float32(1.0)
    half = np.float32(0.5)
    zero = np.float32(0.0)
    scale = np.float32(_SCALE)
    for i in range(n):
        t = t0 + i
        pi = i if per_sample else 0
        for b in range(batch):
            cls = forced[b, i] if use_forced else x_prev[b]
            hb = h[b]
            row = table[cls]
            for r in range(res):
                hb[r] = row[r]
            sb = skip[b]
            for c in range(skip_ch):
                sb[c] = zero
        for l in range(layers):
            off = offsets[l]
            size = sizes[l]
            d = dils[l]
            base = l * g2
            cb = conv_b[l]
            wl = conv_w[l]
            wcur = wl[k - 1]
            ol = out_w[l]
            ob = out_b[l]
            ow = width if has_res[l] else skip_ch
            wslot = off + t % size
            for b in range(batch):
                zb = z[b]
                hb = h[b]
                pb = proj[b, pi]
                for c in range(g2):
                    zb[c] = cb[c] + pb[base + c]
                for r in range(res):
                    hv = hb[r]
                    wr = wcur[r]
                    for c in range(g2):
                        zb[c] += hv * wr[c]
                for j in range(1, k):
                    past = buffer[off + (t - j * d) % size, b]
                    wj = wl[k - 1 - j]
                    for r in range(res):
                        hv = past[r]
                        wr = wj[r]
                        for c in range(g2):
                            zb[c] += hv * wr[c]
                slot = buffer[wslot, b]
                for r in range(res):
                    slot[r] = hb[r]
                for c in range(g):
                    a[c] = _tanh(zb[c]) * (half + half * _tanh(half * zb[g + c]))
                obb = o[b]
                for e in range(ow):
                    obb[e] = ob[e]
                for c in range(g):
                    av = a[c]
                    oc = ol[c]
                    for e in range(ow):
                        obb[e] += av * oc[e]
                sb = skip[b]
                for c in range(skip_ch):
                    sb[c] += obb[c]
                if has_res[l]:
                    for r in range(res):
                        hb[r] = (hb[r] + obb[skip_ch + r]) * scale
        for b in range(batch):
            ub = u[b]
            for c in range(hid):
                ub[c] = b1[c]
            sb = skip[b]
            for s in range(skip_ch):
                sv = max(sb[s], zero)
                ws = w1[s]
                for c in range(hid):
                    ub[c] += sv * ws[c]
            lb = logits[b]
            for c in range(classes):
                lb[c] = b2[c]
            for s in range(hid):
                uv = max(ub[s], zero)
                ws = w2[s]
                for c in range(classes):
                    lb[c] += uv * ws[c]
            best = 0
            top = lb[0]
            for c in range(1, classes):
                if lb[c] > top:
                    top = lb[c]
                    best = c
            if record:
                for c in range(classes):
                    logits_out[b, i, c] = lb[c]
            if temperature > 0:
                total = zero
                inv_t = one / np.float32(temperature)
                for c in range(classes):
                    total += math.exp((lb[c] - top) * inv_t)
                    cdf[c] = total
                threshold = np.float32(noise[b, i]) * total
                pick = 0
                for c in range(classes):
                    if cdf[c] < threshold:
                        pick += 1
                best = min(pick, classes - 1)
            out[b, i] = best
            x_prev[b] = best
    return x_prev


class FastWaveNet:
    """Numba twin of a ``WaveNet``'s cached generation, sharing its weights (copied on construction).

    Args:
        model: a built ``speechkit.vocoder.wavenet.WaveNet``. Re-create the twin after the model's
            weights change.
        chunk_frames: int > 0, conditioning frames whose per-layer projection is computed in one
            BLAS product (bounded memory, BLAS speed).
    """

    def __init__(self, model, *, chunk_frames=4):
        cfg = model.config
        self.model = model
        self.config = cfg
        self.num_layers = len(model.res_layers)
        classes = np.arange(cfg.num_classes)
        if cfg.input_type == "mulaw":
            table = model.input_embedding.embeddings.numpy()
        else:
            kernel, bias = model.input_embedding.kernel.numpy(), model.input_embedding.bias.numpy()
            values = mu_law_decode(classes, model.frontend.mu).numpy()
            table = values[:, None] * kernel[0][None, :] + bias[None, :]
        self.table = np.ascontiguousarray(table, np.float32)
        r, s = cfg.residual_channels, cfg.skip_channels
        layers = model.res_layers
        self.conv_w = np.ascontiguousarray(np.stack([l.conv_kernel.numpy() for l in layers]), np.float32)
        self.conv_b = np.ascontiguousarray(np.stack([l.conv_bias.numpy() for l in layers]), np.float32)
        self.out_w = np.zeros((len(layers), cfg.gate_channels, s + r), np.float32)
        self.out_b = np.zeros((len(layers), s + r), np.float32)
        for i, layer in enumerate(layers):
            w = layer.out_kernel.numpy()
            self.out_w[i, :, :w.shape[1]] = w
            self.out_b[i, :w.shape[1]] = layer.out_bias.numpy()
        self.has_res = np.array([l.residual for l in layers], np.bool_)
        self.offsets = np.array(model.buffer_offsets, np.int64)
        self.sizes = np.array(model.buffer_sizes, np.int64)
        self.dils = np.array(model.dilations, np.int64)
        g2 = 2 * cfg.gate_channels
        if model.upsampler is not None:
            self.cond_w = np.ascontiguousarray(np.concatenate([l.cond_kernel.numpy() for l in layers], axis=1),
                                               np.float32)
        else:
            self.cond_w = np.zeros((1, len(layers) * g2), np.float32)
        self.speaker_w = (np.concatenate([l.speaker_kernel.numpy() for l in layers], axis=1)
                          if model.speaker_embedding is not None else None)
        self.w1 = np.ascontiguousarray(model.head_hidden.kernel.numpy(), np.float32)
        self.b1 = np.ascontiguousarray(model.head_hidden.bias.numpy(), np.float32)
        self.w2 = np.ascontiguousarray(model.head_out.kernel.numpy(), np.float32)
        self.b2 = np.ascontiguousarray(model.head_out.bias.numpy(), np.float32)
        self.chunk = chunk_frames * cfg.hop_length

    def _global_bias(self, batch, speaker_vector):
        width = self.num_layers * 2 * self.config.gate_channels
        if speaker_vector is None or self.speaker_w is None:
            return np.zeros((batch, 1, width), np.float32)
        return (np.asarray(speaker_vector, np.float32) @ self.speaker_w)[:, None, :].astype(np.float32)

    def run(self, x_first, state, num_samples, *, noise, temperature=1.0, cond=None, speaker_vector=None,
            forced=None, return_logits=False):
        """Generate ``num_samples`` samples from ``state``.

        The conditioning of every layer is projected with one BLAS product per block of
        ``chunk_frames`` frames (numpy's BLAS; numba's ``np.dot`` goes through scipy's, which
        oversubscribes threads here), then the fused kernel runs the block sample by sample.

        Args:
            x_first: int [batch], mu-law class of the sample before the first one to generate.
            state: dict ``{"buffer": [buffer_total, batch, R], "time": int}`` (numpy or tensors), as
                from ``WaveNet.initial_state`` or ``prime``; not modified.
            num_samples: int >= 0.
            noise: float [batch, num_samples] uniform in [0, 1), one draw per sample.
            temperature: float >= 0; 0 takes the argmax.
            cond: float32 [batch, >= num_samples, cond_channels] upsampled conditioning
                (``WaveNet.upsample``) starting at the state's time, or None.
            speaker_vector: float32 [batch, speaker_channels] or None.
            forced: optional int [batch, num_samples]: teacher-forced inputs (the samples drawn are
                still returned, but not fed back).
            return_logits: bool, also return float32 [batch, num_samples, classes] logits.

        Returns:
            (classes int32 [batch, num_samples], new state[, logits]).
        """
        buffer = np.array(state["buffer"], np.float32, copy=True, order="C")
        t0 = int(np.asarray(state["time"]))
        batch = buffer.shape[1]
        x_prev = np.asarray(x_first, np.int64).reshape(batch).copy()
        noise = np.asarray(noise, np.float32).reshape(batch, num_samples)
        if cond is not None:
            cond = np.asarray(cond, np.float32)
            if self.model.upsampler is None:
                raise ValueError("cond given, but the model is not mel-conditioned")
            if cond.shape[1] < num_samples:
                raise ValueError(f"cond has {cond.shape[1]} positions, fewer than num_samples={num_samples}")
        elif self.model.upsampler is not None:
            raise ValueError("this model is mel-conditioned: cond is required")
        use_forced = forced is not None
        if use_forced:
            forced = np.asarray(forced, np.int64).reshape(batch, num_samples)
        bias = self._global_bias(batch, speaker_vector)
        out = np.zeros((batch, num_samples), np.int32)
        logits = np.zeros((batch, num_samples, self.config.num_classes), np.float32) if return_logits else None
        dummy_logits = np.zeros((1, 1, 1), np.float32)
        dummy_forced = np.zeros((batch, 1), np.int64)
        step = self.chunk if cond is not None else max(num_samples, 1)
        for i0 in range(0, num_samples, step):
            i1 = min(i0 + step, num_samples)
            proj = bias if cond is None else np.ascontiguousarray(cond[:, i0:i1] @ self.cond_w + bias)
            part_out = np.zeros((batch, i1 - i0), np.int32)
            part_logits = np.zeros((batch, i1 - i0, self.config.num_classes), np.float32) if return_logits \
                else dummy_logits
            x_prev = _kernel(i1 - i0, x_prev, buffer, t0 + i0, self.offsets, self.sizes, self.dils, self.table,
                             self.conv_w, self.conv_b, self.out_w, self.out_b, self.has_res,
                             self.config.skip_channels, proj, self.w1, self.b1, self.w2, self.b2,
                             np.ascontiguousarray(noise[:, i0:i1]), float(temperature),
                             np.ascontiguousarray(forced[:, i0:i1]) if use_forced else dummy_forced, use_forced,
                             return_logits, part_logits, part_out)
            out[:, i0:i1] = part_out
            if return_logits:
                logits[:, i0:i1] = part_logits
        new_state = {"buffer": buffer, "time": t0 + num_samples}
        return (out, new_state, logits) if return_logits else (out, new_state)
