"""LPC split of the vocoder: exact inversion (numpy, numba, XLA), meaningful envelope, stable filters, graph use."""

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

from speechkit.frontend import FrontendConfig, log_mel, power_spectrogram
from speechkit.vocoder.lpc import (EXCITATION_SCALE, excitation, excitation_span, frame_power, lpc_from_log_mel,
                                  noise_excitation, source_filter, synthesize, synthesize_tf)

FRONTEND = FrontendConfig(kind="mel", normalize=False)
SR = FRONTEND.sample_rate
HOP = FRONTEND.hop_length
ORDER = 16
NATS_TO_DB = 10 / np.log(10)


def _vowel(seconds=1.0, *, f0=(110.0, 180.0), f1=(700.0, 400.0), f2=(1220.0, 2000.0), seed=0):
    """A gliding diphthong: harmonics of a rising pitch shaped by moving formants, 0.1 s of silence at each end."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    pitch = np.interp(t, [0, seconds], f0)
    formants = [(np.interp(t, [0, seconds], f1), 130.0), (np.interp(t, [0, seconds], f2), 70.0), (2600.0, 160.0)]
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    x = np.zeros_like(t)
    for h in range(1, int(SR / 2 / min(f0))):
        freq = h * pitch
        envelope = sum(1 / (1 + ((freq - fc) / bw) ** 2) for fc, bw in formants) / np.sqrt(h)
        x += np.where(freq < SR / 2 - 200, envelope, 0.0) * np.sin(h * phase)
    onset = np.clip(np.minimum(t - 0.1, seconds - 0.1 - t) / 0.05, 0.0, 1.0)
    x = 0.5 * x * onset / np.abs(x * onset).max() + 0.002 * rng.standard_normal(t.size) * (onset > 0)
    return x.astype(np.float32)


def _lpc(audio):
    return lpc_from_log_mel(log_mel(audio, config=FRONTEND), frontend=FRONTEND, order=ORDER).numpy()


def _voiced_frames(frames, seconds=1.0):
    centres = np.arange(frames) * HOP / SR
    return (centres > 0.2) & (centres < seconds - 0.2)


def _frame_rms(signal, frames):
    """Per-sample RMS of ``signal`` over the samples that share its nearest frame."""
    index = np.minimum((np.arange(signal.size) + HOP // 2) // HOP, frames - 1)
    energy = np.bincount(index, signal.astype(np.float64) ** 2, minlength=frames) / np.bincount(index, minlength=frames)
    return np.sqrt(energy)[index]


def _log_envelope(lpc, bins=257):
    """-log |A(e^jw)|^2 on ``bins`` frequencies from 0 to Nyquist, per frame."""
    w = np.exp(-1j * np.pi * np.outer(np.linspace(0, 1, bins), np.arange(lpc.shape[-1])))
    return -np.log(np.abs(lpc @ w.T) ** 2)


@pytest.fixture(scope="module")
def vowel():
    return _vowel()


@pytest.fixture(scope="module")
def vowel_lpc(vowel):
    return _lpc(vowel)


def test_synthesize_inverts_excitation(vowel, vowel_lpc):
    assert vowel_lpc.shape == (1 + vowel.size // HOP, ORDER + 1) and vowel_lpc.dtype == np.float32
    np.testing.assert_array_equal(vowel_lpc[:, 0], 1.0)
    residual = excitation(vowel, vowel_lpc, hop=HOP)
    assert residual.dtype == np.float32 and residual.shape == vowel.shape
    np.testing.assert_allclose(synthesize(residual, vowel_lpc, hop=HOP), vowel, rtol=0, atol=1e-4)

    other = _vowel(0.7, f0=(200.0, 150.0), f1=(300.0, 650.0), f2=(2200.0, 1000.0), seed=1)
    other = np.pad(other, (0, vowel.size - other.size))  # zero padding, as in a batch
    other_lpc = _lpc(other)
    batch = np.stack([residual, excitation(other, other_lpc, hop=HOP)])
    out = synthesize(batch, np.stack([vowel_lpc, other_lpc]), hop=HOP)
    assert out.shape == (2, vowel.size) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.stack([vowel, other]), rtol=0, atol=1e-4)
    with pytest.raises(ValueError):
        synthesize(batch, vowel_lpc, hop=HOP)


def test_synthesize_tf_under_xla_matches_numba(vowel, vowel_lpc):
    other = _vowel(seed=2) * 0.3  # a different level and noise, on the other signal's coefficients
    other_lpc = _lpc(_vowel(f0=(220.0, 140.0), f1=(350.0, 750.0), f2=(2100.0, 1100.0), seed=3))
    residuals = np.stack([excitation(vowel, vowel_lpc, hop=HOP), excitation(other, other_lpc, hop=HOP)])
    lpcs = np.stack([vowel_lpc, other_lpc])
    expected = synthesize(residuals, lpcs, hop=HOP)

    compiled = tf.function(lambda e, a: synthesize_tf(e, a, hop=HOP), jit_compile=True,
                           input_signature=[tf.TensorSpec([None, None], tf.float32),
                                            tf.TensorSpec([None, None, ORDER + 1], tf.float32)])
    out = compiled(tf.constant(residuals), tf.constant(lpcs)).numpy()
    assert out.shape == residuals.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(out, np.stack([vowel, other]), rtol=0, atol=1e-4)


def test_excitation_span_is_a_stretch_of_the_whole_residual(vowel):
    audio = vowel[:99 * HOP + 100]  # the last 20 samples are nearer frame 100, which the utterance lacks
    lpc = _lpc(audio)
    full = excitation(audio, lpc, hop=HOP)
    junk = np.tile(np.array([1.0, -1.5] + [0.0] * (ORDER - 1), np.float32), (3, 1))  # must never be read

    def span(first, last, start, stop):
        frames = np.concatenate([junk, lpc, junk])[first + 3:last + 4]
        return excitation_span(audio, frames, hop=HOP, first_frame=first, start=start, stop=stop)

    np.testing.assert_array_equal(span(20, 45, 20 * HOP + 80, 44 * HOP + 79), full[20 * HOP + 80:44 * HOP + 79])
    np.testing.assert_array_equal(span(-3, 10, -1, 9 * HOP), np.concatenate([[0.0], full[:9 * HOP]]))
    np.testing.assert_array_equal(span(90, 101, 90 * HOP, len(audio) + 50),
                                  np.concatenate([full[90 * HOP:], np.zeros(50)]))
    with pytest.raises(ValueError, match="frames"):
        span(21, 45, 20 * HOP + 79, 44 * HOP)  # sample 20 * hop + 79 is still nearer frame 20


def test_residual_is_much_weaker_than_speech(vowel, vowel_lpc):
    residual = excitation(vowel, vowel_lpc, hop=HOP)
    voiced = slice(int(0.2 * SR), int(0.8 * SR))
    ratio = np.sqrt(np.mean(residual[voiced].astype(np.float64) ** 2) / np.mean(vowel[voiced].astype(np.float64) ** 2))
    assert ratio < 0.25  # about 0.09; the identity filter [1, 0, ..., 0] gives 1


def test_envelope_matches_lpc_of_the_true_spectrum(vowel, vowel_lpc):
    """The mel loses the harmonics but keeps the envelope: compare with LPC of the STFT power it came from."""
    power = power_spectrogram(vowel, config=FRONTEND, frame_length=FRONTEND.mel_frame_length,
                              fft_length=FRONTEND.mel_fft_length).numpy().astype(np.float64) + 1e-12
    lags = np.arange(ORDER + 1)
    window = np.exp(-0.5 * (2 * np.pi * 60 * lags / SR) ** 2) * np.where(lags == 0, 1.0001, 1.0)
    r = np.fft.irfft(power, n=FRONTEND.mel_fft_length)[:, :ORDER + 1] * window
    reference = np.stack([np.concatenate([[1.0], scipy.linalg.solve_toeplitz(row[:-1], -row[1:])]) for row in r])

    def error_db(lpc):
        a, b = _log_envelope(lpc), _log_envelope(reference)
        diff = (a - a.mean(-1, keepdims=True)) - (b - b.mean(-1, keepdims=True))  # the gain is not compared
        band = (np.linspace(0, SR / 2, a.shape[-1]) > 300) & (np.linspace(0, SR / 2, a.shape[-1]) < 7000)
        return NATS_TO_DB * np.abs(diff[_voiced_frames(len(lpc))][:, band]).mean()

    assert error_db(vowel_lpc) < 1.0  # about 0.2 dB
    flat = np.zeros_like(vowel_lpc)
    flat[:, 0] = 1.0
    assert error_db(flat) > 10.0


def test_noise_through_the_filter_has_the_original_log_mel(vowel, vowel_lpc):
    """White noise at the residual's frame energy through 1 / A(z) gives the original's log-mel within a few dB."""
    reference = log_mel(vowel, config=FRONTEND).numpy()
    noise = np.random.default_rng(1).standard_normal((4, vowel.size))
    voiced = _voiced_frames(len(reference))

    def error_db(lpc):
        gain = _frame_rms(excitation(vowel, lpc, hop=HOP), len(lpc))
        out = synthesize(noise * gain, np.stack([lpc] * len(noise)), hop=HOP)
        mel = np.log(np.exp(log_mel(out, config=FRONTEND).numpy().astype(np.float64)).mean(0))  # mean of 4 draws
        # Bands 10 and up (centres above 280 Hz): below the pitch an all-pole envelope cannot follow the
        # harmonic signal's empty bands, whatever the coefficients.
        return NATS_TO_DB * np.abs(mel - reference)[voiced][:, 10:].mean()

    assert error_db(vowel_lpc) < 5.0  # about 4 dB; frames of the time-reversed utterance give about 6
    flat = np.zeros_like(vowel_lpc)
    flat[:, 0] = 1.0
    assert error_db(flat) > 10.0


def _max_pole_radius(lpc):
    return max(np.abs(np.roots(row)).max() for row in lpc.reshape(-1, lpc.shape[-1]))


def test_filters_are_stable_for_silence_noise_and_wild_mels(vowel_lpc):
    silence = _lpc(np.zeros(SR // 2, np.float32))
    loud_noise = _lpc(np.clip(np.random.default_rng(0).standard_normal(SR // 2) * 0.9, -1, 1).astype(np.float32))
    wild = lpc_from_log_mel(np.random.default_rng(1).normal(-3.0, 20.0, (50, 80)).astype(np.float32),
                            frontend=FRONTEND, order=ORDER).numpy()  # a mel no audio has, as a bad prediction might be
    for lpc in (silence, loud_noise, wild, vowel_lpc):
        assert np.all(np.isfinite(lpc))
        assert _max_pole_radius(lpc) < 1.0


def test_lpc_from_log_mel_in_a_graph_with_unknown_frames_and_batch(vowel):
    other = _vowel(0.75, f0=(200.0, 150.0), seed=4)
    mels = [log_mel(vowel, config=FRONTEND), log_mel(other, config=FRONTEND)]
    eager = [lpc_from_log_mel(m, frontend=FRONTEND, order=ORDER).numpy() for m in mels]

    single = tf.function(lambda m: lpc_from_log_mel(m, frontend=FRONTEND, order=ORDER),
                         input_signature=[tf.TensorSpec([None, FRONTEND.n_mels], tf.float32)])
    for mel, expected in zip(mels, eager):
        np.testing.assert_allclose(single(mel).numpy(), expected, rtol=0, atol=1e-5)

    batched = tf.function(lambda m: lpc_from_log_mel(m, frontend=FRONTEND, order=8),
                          input_signature=[tf.TensorSpec([None, None, FRONTEND.n_mels], tf.float32)])
    frames = mels[1].shape[0]
    out = batched(tf.stack([mels[0][:frames], mels[1]])).numpy()
    assert out.shape == (2, frames, 9)
    for row, mel in zip(out, mels):
        np.testing.assert_allclose(row, lpc_from_log_mel(mel[:frames], frontend=FRONTEND, order=8).numpy(),
                                   rtol=0, atol=1e-5)


def _gain(audio):
    lpc, gain = lpc_from_log_mel(log_mel(audio, config=FRONTEND), frontend=FRONTEND, order=ORDER, return_gain=True)
    return lpc.numpy(), gain.numpy()


def test_gain_predicts_the_residual_level_at_any_loudness(vowel, vowel_lpc):
    voiced = _voiced_frames(len(vowel_lpc))
    index = np.minimum((np.arange(vowel.size) + HOP // 2) // HOP, len(vowel_lpc) - 1)
    lpc, gain = _gain(vowel)
    np.testing.assert_allclose(lpc, vowel_lpc, rtol=0, atol=1e-6)
    assert gain.shape == (len(vowel_lpc),) and gain.dtype == np.float32 and np.all(gain > 0)
    true_rms = _frame_rms(excitation(vowel, vowel_lpc, hop=HOP), len(vowel_lpc))[voiced[index]]
    error_db = 20 * np.log10(gain[index][voiced[index]] / true_rms)
    assert abs(np.median(error_db)) < 6.0 and np.std(error_db) < 3.0
    for scale in (0.1, 0.01):  # the coefficients ignore the level; the gain follows it
        quieter_lpc, quieter = _gain(vowel * scale)
        np.testing.assert_allclose(quieter_lpc[voiced], vowel_lpc[voiced], rtol=0, atol=5e-3)
        np.testing.assert_allclose(quieter[voiced] / gain[voiced], scale, rtol=1e-3)

    normalized = excitation(vowel, lpc, hop=HOP, gain=gain)
    rms = np.sqrt(np.mean(normalized[voiced[index]].astype(np.float64) ** 2))
    assert 0.3 * EXCITATION_SCALE < rms < 3 * EXCITATION_SCALE
    quiet_lpc, quiet_gain = _gain(vowel * 0.01)
    np.testing.assert_allclose(excitation(vowel * 0.01, quiet_lpc, hop=HOP, gain=quiet_gain)[voiced[index]],
                               normalized[voiced[index]], rtol=0, atol=0.03 * EXCITATION_SCALE)


def test_normalized_excitation_round_trips_in_numpy_and_xla(vowel):
    quiet = _vowel(0.8, f0=(210.0, 160.0), seed=5) * 0.05
    quiet = np.pad(quiet, (0, vowel.size - quiet.size))
    filters = [_gain(vowel), _gain(quiet)]
    residuals = np.stack([excitation(x, a, hop=HOP, gain=g) for x, (a, g) in zip((vowel, quiet), filters)])
    lpcs, gains = np.stack([f[0] for f in filters]), np.stack([f[1] for f in filters])
    np.testing.assert_allclose(synthesize(residuals[0], lpcs[0], hop=HOP, gain=gains[0]), vowel, rtol=0, atol=1e-4)
    expected = synthesize(residuals, lpcs, hop=HOP, gain=gains)
    np.testing.assert_allclose(expected, np.stack([vowel, quiet]), rtol=0, atol=1e-4)
    compiled = tf.function(lambda e, a, g: synthesize_tf(e, a, hop=HOP, gain=g), jit_compile=True)
    out = compiled(tf.constant(residuals), tf.constant(lpcs), tf.constant(gains)).numpy()
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    assert source_filter(log_mel(vowel, config=FRONTEND), frontend=FRONTEND, order=ORDER, normalize=False)[1] is None


def test_normalized_span_is_a_stretch_of_the_whole_normalized_residual(vowel):
    audio = vowel[:60 * HOP]
    lpc, gain = _gain(audio)
    full = excitation(audio, lpc, hop=HOP, gain=gain)
    span = excitation_span(audio, lpc[10:40], hop=HOP, first_frame=10, start=12 * HOP, stop=38 * HOP,
                           gain=gain[10:40])
    np.testing.assert_array_equal(span, full[12 * HOP:38 * HOP])


def test_noise_excitation_keeps_each_frames_level_and_nothing_else():
    """The filter-alone reference: white noise at the residual's per-frame RMS, so a level error shows in dB."""
    hop = 160
    levels = np.repeat([0.0, 0.01, 0.5, 0.05], 10 * hop)
    residual = np.sin(np.arange(len(levels)) * 0.3) * levels * np.sqrt(2)
    power = frame_power(residual, hop=hop, frames=len(levels) // hop)
    np.testing.assert_allclose(power[[5, 15, 25, 35]], levels[[0, 1600, 3200, 4800]] ** 2, rtol=0.05)
    noise = noise_excitation(residual, hop=hop, seed=3)
    rms = np.sqrt(frame_power(noise, hop=hop, frames=len(levels) // hop))
    assert np.all(noise[:9 * hop] == 0)
    for block, level in enumerate((0.01, 0.5, 0.05), start=1):
        inner = rms[block * 10 + 1:block * 10 + 9]
        assert np.all(np.abs(20 * np.log10(inner / level)) < 1.5), inner
    np.testing.assert_array_equal(noise, noise_excitation(residual, hop=hop, seed=3))
    assert abs(np.corrcoef(noise[3200:4800], residual[3200:4800])[0, 1]) < 0.1
