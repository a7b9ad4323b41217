"""Fast CPU generation: the cached WaveNet loop fused into one numba kernel.

A deliberate copy of ``WaveNet.step`` (``speechkit/vocoder/wavenet.py``) and of the TensorFlow loop
in ``speechkit/vocoder/generation.py``, specialised for CPU threads: there is no per-op dispatch,
every product is one BLAS call over a group of rows (numba's ``np.dot``, so a batch is
matrix-matrix and pays), and the element-wise work is in loops that LLVM vectorises (numba's
``error_model="numpy"``: a division that may not raise ``ZeroDivisionError`` needs no branch). A
batch is split into one group of rows per thread (numba ``prange``), with BLAS held to one thread
inside. It reads the Keras model's weights, keeps its state in the same ring-buffer layout as
``WaveNet.initial_state`` (so a state primed by the TensorFlow full pass continues here), and draws
samples with the same inverse-CDF rule from the same uniform noise.
``tests/test_wavenet_generation.py`` proves logits and samples equal to the TensorFlow path, and a
row's samples independent of the batch and the threads.
"""

import logging
import math

import numba
import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (the BLAS numba's np.dot calls: loaded before _BLAS looks)
from threadpoolctl import ThreadpoolController

from speechkit.errors import ConfigError
from speechkit.frontend import mu_law_decode

__all__ = ["FastWaveNet"]

logger = logging.getLogger(__name__)
_BLAS = ThreadpoolController()  # the loaded BLAS libraries, numba's (scipy's, imported above) included

_SCALE = np.float32(math.sqrt(0.5))
_BLOCK = 32  # steps per conditioning projection (one product over the block's steps and rows)


@numba.njit(cache=True, fastmath=True, error_model="numpy", nogil=True, inline="always")
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


@numba.njit(cache=True, fastmath=True, error_model="numpy", nogil=True, inline="always")
def _exp_parts(x):
    """``exp(x)`` for ``x <= 0`` as (a float32 polynomial, the int32 bits of a power of two) whose
    product is the value (Cephes' ``expf``, max relative error 3e-7): written through an int32
    array and read as float32, the power of two needs no libm call, so the loop vectorises."""
    x = max(x, np.float32(-87.0))
    n = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
    r = x - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    return p * r * r + r + np.float32(1.0), (np.int32(n) + np.int32(127)) << np.int32(23)


@numba.njit(cache=True, fastmath=True, error_model="numpy", nogil=True)
def _kernel(n, x_first, buffer, t0, offsets, sizes, dils, table, conv_w, conv_b, proj, out_w, out_b, has_res, skip_ch,
            w1, b1, w2, b2, noise, temperature, forced, use_forced, record, logits_out, out):
    """``n`` cached steps for the rows of ``x_first`` on one thread; returns the last classes.

    Every product is one BLAS call over all rows (``np.dot``): a dilated convolution multiplies the
    rows' taps, side by side, by the layer's stacked kernel ``conv_w[l]`` [K * R, 2G]. ``proj``
    [>= n * rows, layers * 2G] holds every layer's conditioning term at every step (``_project``).
    """
    batch = x_first.shape[0]
    res = table.shape[1]
    layers, taps_res, g2 = conv_w.shape
    k = taps_res // res
    g = g2 // 2
    hid = w1.shape[1]
    classes = w2.shape[1]
    width = out_w.shape[2]
    h = np.empty((batch, res), np.float32)
    taps = np.empty((batch, taps_res), np.float32)
    z = np.empty((batch, g2), np.float32)
    a = np.empty((batch, g), np.float32)
    o = np.empty((batch, width), np.float32)
    skip = np.empty((batch, skip_ch), np.float32)
    u = np.empty((batch, hid), np.float32)
    logits = np.empty((batch, classes), np.float32)
    weight = np.empty(classes, np.float32)
    exponent = np.empty(classes, np.int32)
    power = exponent.view(np.float32)
    x_prev = x_first.copy()
    one = np.float32(1.0)
    half = np.float32(0.5)
    zero = np.float32(0.0)
    scale = np.float32(_SCALE)
    for i in range(n):
        t = t0 + i
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
            for b in range(batch):
                xb = taps[b]
                for j in range(1, k):
                    src = buffer[off + (t - j * d) % size, b]
                    at = (k - 1 - j) * res
                    for r in range(res):
                        xb[at + r] = src[r]
                hb = h[b]
                at = (k - 1) * res
                for r in range(res):
                    xb[at + r] = hb[r]
            np.dot(taps, conv_w[l], z)
            slot = buffer[off + t % size]
            ob = out_b[l]
            for b in range(batch):
                sl = slot[b]
                hb = h[b]
                for r in range(res):
                    sl[r] = hb[r]
                zb = z[b]
                pb = proj[i * batch + b]
                for c in range(g2):
                    zb[c] += cb[c] + pb[base + c]
                ab = a[b]
                for c in range(g):
                    ab[c] = _tanh(zb[c]) * (half + half * _tanh(half * zb[g + c]))
            np.dot(a, out_w[l], o)
            for b in range(batch):
                sb = skip[b]
                obb = o[b]
                for e in range(width):
                    obb[e] += ob[e]
                for c in range(skip_ch):
                    sb[c] += obb[c]
                if has_res[l]:
                    hb = h[b]
                    for r in range(res):
                        hb[r] = (hb[r] + obb[skip_ch + r]) * scale
        for b in range(batch):
            sb = skip[b]
            for c in range(skip_ch):
                sb[c] = max(sb[c], zero)
        np.dot(skip, w1, u)
        for b in range(batch):
            ub = u[b]
            for c in range(hid):
                ub[c] = max(ub[c] + b1[c], zero)
        np.dot(u, w2, logits)
        for b in range(batch):
            lb = logits[b]
            for c in range(classes):
                lb[c] += b2[c]
        for b in range(batch):
            lb = logits[b]
            top = lb[0]
            for c in range(1, classes):
                top = max(top, lb[c])
            if record:
                for c in range(classes):
                    logits_out[b, i, c] = lb[c]
            if temperature > 0:
                inv_t = one / np.float32(temperature)
                for c in range(classes):
                    weight[c], exponent[c] = _exp_parts((lb[c] - top) * inv_t)
                total = zero
                for c in range(classes):
                    weight[c] *= power[c]
                    total += weight[c]
                threshold = np.float32(noise[b, i]) * total
                best = classes - 1
                running = zero
                for c in range(classes):
                    running += weight[c]
                    if running >= threshold:
                        best = c
                        break
            else:
                best = 0
                while best < classes - 1 and lb[best] < top:
                    best += 1
            out[b, i] = best
            x_prev[b] = best
    return x_prev


@numba.njit(cache=True, fastmath=True, error_model="numpy", nogil=True)
def _project(cond, i0, m, cond_w, bias, x, proj):
    """``proj[t * rows + b] = bias[b] + cond[b, i0 + t] @ cond_w`` for ``t < m``: every layer's local
    and global conditioning term for a block of steps, as one product over all ``m * rows`` positions
    (``x`` [>= m * rows, C] is its scratch input), so each weight row is read once per block."""
    rows = cond.shape[0]
    if cond_w.shape[0]:
        for t in range(m):
            for b in range(rows):
                x[t * rows + b] = cond[b, i0 + t]
        np.dot(x[:m * rows], cond_w, proj[:m * rows])
    else:
        proj[:m * rows] = 0
    for t in range(m):
        for b in range(rows):
            pt = proj[t * rows + b]
            bb = bias[b]
            for c in range(pt.shape[0]):
                pt[c] += bb[c]


@numba.njit(cache=True, fastmath=True, error_model="numpy", parallel=True)
def _kernel_groups(n, block, x_first, buffer, t0, offsets, sizes, dils, table, conv_w, conv_b, cond, cond_w, bias,
                   out_w, out_b, has_res, skip_ch, w1, b1, w2, b2, noise, temperature, forced, use_forced, record,
                   logits_out, out):
    """``_kernel`` on groups of rows, one group per thread, ``block`` steps at a time after their
    ``_project``. Every argument with rows carries a leading group axis (``buffer`` [groups,
    buffer_total, rows, R], ``cond`` [groups, rows, n, C], ``out`` [groups, rows, n], ...)."""
    groups, rows = x_first.shape
    x_last = np.empty_like(x_first)
    for gi in numba.prange(groups):
        proj = np.empty((block * rows, cond_w.shape[1]), np.float32)
        scratch = np.empty((block * rows, cond_w.shape[0]), np.float32)
        x = x_first[gi].copy()
        for i0 in range(0, n, block):
            m = min(block, n - i0)
            _project(cond[gi], i0, m, cond_w, bias[gi], scratch, proj)
            x = _kernel(m, x, buffer[gi], t0 + i0, offsets, sizes, dils, table, conv_w, conv_b, proj, out_w, out_b,
                        has_res, skip_ch, w1, b1, w2, b2, noise[gi, :, i0:i0 + m], temperature,
                        forced[gi, :, i0:i0 + m] if use_forced else forced[gi], use_forced, record,
                        logits_out[gi, :, i0:i0 + m] if record else logits_out[gi], out[gi, :, i0:i0 + m])
        x_last[gi] = x
    return x_last


def _one_blas_thread():
    """A context in which BLAS runs on the calling thread only: the kernel's threads are numba's, one
    per group of rows, and a BLAS that started its own would oversubscribe the cores."""
    return _BLAS.limit(limits=1, user_api="blas")


class FastWaveNet:
    """Numba twin of a ``WaveNet``'s cached generation, sharing its weights (copied on construction).

    A batch is split into ``threads`` groups of rows, one group per thread (numba ``prange``);
    within a group every product is one matrix-matrix BLAS call. Rows never interact, so the
    samples do not depend on the grouping.

    Args:
        model: a built ``speechkit.vocoder.wavenet.WaveNet``. Re-create the twin after the model's
            weights change.
        threads: int > 0 or None, the most threads a batch uses (None: numba's thread count, the
            number of cores unless ``NUMBA_NUM_THREADS`` says otherwise).

    Raises:
        ConfigError: ``threads`` is not a positive int or exceeds numba's thread count.
    """

    def __init__(self, model, *, threads=None):
        available = numba.config.NUMBA_NUM_THREADS
        threads = available if threads is None else threads
        if not isinstance(threads, int) or not 1 <= threads <= available:
            raise ConfigError(f"threads must be an int in [1, {available}] (numba's thread count), "
                              f"received: {threads!r}")
        self.threads = threads
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
        self.conv_w = np.ascontiguousarray(  # [layers, K * R, 2G]: the taps stacked, oldest first
            np.stack([l.conv_kernel.numpy().reshape(-1, 2 * cfg.gate_channels) for l in layers]), np.float32)
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
            self.cond_w = np.zeros((0, len(layers) * g2), np.float32)
        self.speaker_w = (np.concatenate([l.speaker_kernel.numpy() for l in layers], axis=1)
                          if model.speaker_embedding is not None else None)
        self.w1 = np.ascontiguousarray(model.head_hidden.kernel.numpy(), np.float32)
        self.b1 = np.ascontiguousarray(model.head_hidden.bias.numpy(), np.float32)
        self.w2 = np.ascontiguousarray(model.head_out.kernel.numpy(), np.float32)
        self.b2 = np.ascontiguousarray(model.head_out.bias.numpy(), np.float32)

    def _global_bias(self, batch, speaker_vector):
        """float32 [batch, layers * 2G]: every layer's speaker term (zeros without speakers)."""
        width = self.num_layers * 2 * self.config.gate_channels
        if speaker_vector is None or self.speaker_w is None:
            return np.zeros((batch, width), np.float32)
        return (np.asarray(speaker_vector, np.float32) @ self.speaker_w).astype(np.float32)

    def run(self, x_first, state, num_samples, *, noise, temperature=1.0, cond=None, speaker_vector=None,
            forced=None, return_logits=False):
        """Generate ``num_samples`` samples from ``state``.

        The rows are split into ``threads`` groups and each group runs on its own thread, 32 steps
        at a time: the block's conditioning projection for every layer (one matrix-matrix product),
        then the fused kernel sample by sample.

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
        groups = min(self.threads, batch)
        per = -(-batch // groups)

        def grouped(array, axis=0):
            """Rows (padded to groups * per) to a leading group axis, contiguous per group."""
            array = np.asarray(array)
            pad = [(0, 0)] * array.ndim
            pad[axis] = (0, groups * per - batch)
            array = np.pad(array, pad)
            shape = array.shape[:axis] + (groups, per) + array.shape[axis + 1:]
            return np.ascontiguousarray(np.moveaxis(array.reshape(shape), axis, 0))

        classes = self.config.num_classes
        cond = np.zeros((batch, num_samples, 0), np.float32) if cond is None else cond[:, :num_samples]
        buffer_g = grouped(buffer, axis=1)
        out = np.zeros((groups, per, num_samples), np.int32)
        logits = (np.zeros((groups, per, num_samples, classes), np.float32) if return_logits
                  else np.zeros((groups, 1, 1, 1), np.float32))
        with _one_blas_thread():
            _kernel_groups(num_samples, _BLOCK, grouped(x_prev), buffer_g, t0, self.offsets, self.sizes, self.dils,
                           self.table, self.conv_w, self.conv_b, grouped(cond), self.cond_w, grouped(bias), self.out_w,
                           self.out_b, self.has_res, self.config.skip_channels, self.w1, self.b1, self.w2, self.b2,
                           grouped(noise), float(temperature),
                           grouped(forced if use_forced else np.zeros((batch, 1), np.int64)), use_forced,
                           return_logits, logits, out)
        out = out.reshape(groups * per, num_samples)[:batch]
        if return_logits:
            logits = logits.reshape(groups * per, num_samples, classes)[:batch]
        buffer = np.moveaxis(buffer_g, 0, 1).reshape(buffer.shape[0], groups * per, -1)
        buffer = np.ascontiguousarray(buffer[:, :batch])
        new_state = {"buffer": buffer, "time": t0 + num_samples}
        return (out, new_state, logits) if return_logits else (out, new_state)
