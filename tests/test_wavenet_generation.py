"""Cached generation back ends: numba == TensorFlow step == full pass; sampling; batching and threads; priming;
SavedModel."""

import functools
import os

import numpy as np
import pytest
import tensorflow as tf

from speechkit.errors import ConfigError
from speechkit.frontend import FrontendConfig, log_mel, mu_law_decode, mu_law_encode
from speechkit.vocoder.fast import FastWaveNet, _exp_parts
from speechkit.vocoder.lpc import source_filter, synthesize
from speechkit.vocoder.generation import (TFGenerator, Vocoder, VocoderModule, _packed_step, _packed_weights,
                                          sample_from_logits)
from speechkit.vocoder.wavenet import WaveNet, WaveNetConfig, conditioning_mel, silence_class

FRONTEND = FrontendConfig(kind="mel", normalize=False)
compact = functools.partial(WaveNetConfig, layers_per_stack=3, stacks=2, residual_channels=8, gate_channels=8,
                            skip_channels=8, head_channels=16, cond_channels=8)


def _model(seed=0, **overrides):
    model = WaveNet(compact(**overrides), FRONTEND)
    model.build()
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(0.0, 0.4, w.shape).astype(np.float32))
    return model


VARIANTS = [
    pytest.param(dict(conditioning="none"), id="uncond"),
    pytest.param(dict(conditioning="mel", num_speakers=3), id="mel-speaker"),
    pytest.param(dict(conditioning="mel", input_type="raw", kernel_size=3), id="mel-raw-k3"),
    pytest.param(dict(conditioning="mel", lpc_order=8, pulse_input=True), id="mel-pulses"),
]


def _conditioning(model, rng, batch, n, *, keras_inputs=None):
    """Upsampled mel and speaker vectors for the step loops; ``keras_inputs`` (a dict) receives the
    ``mel`` and ``speaker`` inputs that give the same conditioning through the Keras model's call."""
    cond = spk = None
    keras_inputs = {} if keras_inputs is None else keras_inputs
    if model.upsampler is not None:
        audio = rng.uniform(-0.5, 0.5, (batch, n)).astype(np.float32)
        keras_inputs["mel"] = conditioning_mel(audio, frontend=FRONTEND, context=model.config.cond_context)
        cond = model.upsample(keras_inputs["mel"], n)
    if model.speaker_embedding is not None:
        keras_inputs["speaker"] = np.arange(batch) % model.config.num_speakers
        spk = model.speaker_vector(keras_inputs["speaker"])
    return cond, spk


@pytest.mark.parametrize("overrides", VARIANTS)
def test_numba_teacher_forced_logits_equal_full_pass(overrides):
    model = _model(**overrides)
    rng = np.random.default_rng(1)
    batch, n = 2, 400
    classes = rng.integers(0, 256, (batch, n))
    cond, spk = _conditioning(model, rng, batch, n)
    state = {k: v.numpy() for k, v in model.initial_state(batch).items()}
    _, new_state, logits = FastWaveNet(model).run(classes[:, 0], state, n, noise=rng.random((batch, n)),
                                                  cond=None if cond is None else cond.numpy(),
                                                  speaker_vector=None if spk is None else spk.numpy(),
                                                  forced=classes, return_logits=True)
    reference = _full_logits(model, classes, cond, spk)
    np.testing.assert_allclose(logits, reference, atol=1e-4, rtol=0)
    assert reference.std() > 0.5
    assert new_state["time"] == n


def _full_logits(model, classes, cond, spk):
    """Full-pass logits for given upsampled conditioning (the layers' own ``call``, as in ``forward``)."""
    x = model.embed(model.input_from_classes(classes))
    skips = None
    for layer in model.res_layers:
        x, skip = layer(x, cond, spk)
        skips = skip if skips is None else skips + skip
    return model.head(skips).numpy()


@pytest.mark.parametrize("overrides", VARIANTS)
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_numba_and_tensorflow_loops_draw_the_same_samples(overrides, temperature):
    model = _model(**overrides)
    rng = np.random.default_rng(2)
    batch, n = 2, 230
    keras_inputs = {}
    cond, spk = _conditioning(model, rng, batch, n, keras_inputs=keras_inputs)
    noise = rng.random((batch, n), dtype=np.float32)
    state = {k: v.numpy() for k, v in model.initial_state(batch).items()}
    x0 = np.full(batch, silence_class(FRONTEND))
    kwargs = dict(noise=noise, temperature=temperature, cond=None if cond is None else cond.numpy(),
                  speaker_vector=None if spk is None else spk.numpy())
    fast, fast_state = FastWaveNet(model).run(x0, state, n, **kwargs)
    graph, graph_state = TFGenerator(model, jit_compile=False).run(x0, state, n, **kwargs)
    np.testing.assert_array_equal(fast, graph)
    np.testing.assert_allclose(fast_state["buffer"], graph_state["buffer"], atol=1e-4)
    assert fast_state["time"] == graph_state["time"] == n
    if temperature > 0:
        assert len(np.unique(fast)) > 5
    # Fed back, the generated samples are what the Keras model's full pass predicts: its
    # teacher-forced logits on the drawn sequence give the same draws from the same noise.
    forced = np.concatenate([x0[:, None], fast[:, :-1]], axis=1)
    logits = model({"audio": model.input_from_classes(forced), **keras_inputs}).numpy()
    redrawn = sample_from_logits(tf.constant(logits.reshape(batch * n, -1)), tf.constant(noise.reshape(-1)),
                                 tf.constant(temperature, tf.float32)).numpy().reshape(batch, n)
    np.testing.assert_array_equal(redrawn, fast)


@pytest.mark.parametrize("overrides", VARIANTS)
def test_packed_tensorflow_step_equals_wavenet_step(overrides):
    """The exported loop's packed step (one product per dilated convolution) is ``WaveNet.step``."""
    model = _model(**overrides)
    rng = np.random.default_rng(8)
    batch = 3
    state = {"buffer": tf.constant(rng.normal(0.0, 0.5, (model.buffer_total, batch, 8)).astype(np.float32)),
             "time": tf.constant(37)}
    x = rng.integers(0, 256, batch).astype(np.int32)
    bias = None
    if model.upsampler is not None or model.speaker_embedding is not None:
        cond, spk = _conditioning(model, rng, batch, 1)
        bias = model.conditioning_bias(cond, spk)[:, 0]
    logits, new_state = model.step(model.input_from_classes(x), state, bias)
    packed, buffer = _packed_step(model, _packed_weights(model), tf.constant(x), state["buffer"], state["time"], bias)
    np.testing.assert_allclose(packed.numpy(), logits.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(buffer.numpy(), new_state["buffer"].numpy(), atol=1e-6, rtol=0)
    assert logits.numpy().std() > 0.5 and np.abs(buffer.numpy() - state["buffer"].numpy()).max() > 0.1


@pytest.mark.parametrize("overrides", VARIANTS)
def test_batches_and_threads_change_no_sample(overrides):
    """A batch split over threads (numba) or run row by row in parallel (TF) draws each row's samples
    as that row alone; the odd batch also exercises the padding of the last thread's group."""
    model = _model(**overrides)
    rng = np.random.default_rng(9)
    batch, n = 5, 180
    cond, spk = _conditioning(model, rng, batch, n)
    kwargs = dict(noise=rng.random((batch, n), dtype=np.float32), temperature=0.9,
                  cond=None if cond is None else cond.numpy(), speaker_vector=None if spk is None else spk.numpy())
    state = {k: v.numpy() for k, v in model.initial_state(batch).items()}
    x0 = np.full(batch, silence_class(FRONTEND))
    threaded, threaded_state = FastWaveNet(model, threads=2).run(x0, state, n, **kwargs)
    assert len(np.unique(threaded)) > 5
    one_thread, one_state = FastWaveNet(model, threads=1).run(x0, state, n, **kwargs)
    np.testing.assert_array_equal(threaded, one_thread)
    np.testing.assert_array_equal(threaded_state["buffer"], one_state["buffer"])
    fast = FastWaveNet(model)
    for row in (0, 3):
        alone = {k: None if v is None or k == "temperature" else v[row:row + 1] for k, v in kwargs.items()}
        alone["temperature"] = kwargs["temperature"]
        single, single_state = fast.run(x0[row:row + 1], {"buffer": state["buffer"][:, row:row + 1], "time": 0}, n,
                                        **alone)
        np.testing.assert_array_equal(single[0], threaded[row])
        # The speaker term is one BLAS product per batch, rounded differently for 1 and 5 rows.
        np.testing.assert_allclose(single_state["buffer"][:, 0], threaded_state["buffer"][:, row], atol=1e-6, rtol=0)
    rows, rows_state = TFGenerator(model, jit_compile=False, parallel=2).run(x0, state, n, **kwargs)
    np.testing.assert_array_equal(rows, threaded)
    np.testing.assert_allclose(rows_state["buffer"], threaded_state["buffer"], atol=1e-4)
    assert rows_state["time"] == n


def test_fast_wavenet_rejects_bad_thread_counts():
    model = _model(conditioning="none")
    for threads in (0, 1000, 1.5):
        with pytest.raises(ConfigError, match="threads"):
            FastWaveNet(model, threads=threads)


def test_generation_continues_across_calls():
    model = _model(conditioning="none")
    rng = np.random.default_rng(3)
    noise = rng.random((1, 300), dtype=np.float32)
    fast = FastWaveNet(model)
    state = {k: v.numpy() for k, v in model.initial_state(1).items()}
    whole, _ = fast.run([128], state, 300, noise=noise)
    first, mid = fast.run([128], state, 120, noise=noise[:, :120])
    second, _ = fast.run(first[:, -1], mid, 180, noise=noise[:, 120:])
    np.testing.assert_array_equal(np.concatenate([first, second], axis=1), whole)


def test_sample_from_logits_inverse_cdf():
    logits = tf.math.log(tf.constant([[0.1, 0.2, 0.3, 0.4]] * 5))
    noise = tf.constant([0.05, 0.15, 0.35, 0.65, 0.999])
    np.testing.assert_array_equal(sample_from_logits(logits, noise, 1.0).numpy(), [0, 1, 2, 3, 3])
    np.testing.assert_array_equal(sample_from_logits(logits, noise, 0.0).numpy(), [3] * 5)


def test_numba_exp_is_exp_to_float32_precision():
    x = np.concatenate([-np.geomspace(1e-6, 87.0, 20001), [0.0, -3.5, -20.25]]).astype(np.float32)
    mantissa, exponent = np.array([_exp_parts.py_func(np.float32(v)) for v in x], dtype=object).T
    value = mantissa.astype(np.float32) * exponent.astype(np.int32).view(np.float32)
    np.testing.assert_allclose(value, np.exp(x.astype(np.float64)), rtol=4e-7, atol=0)


def test_vocode_is_independent_of_batching_and_backend():
    model = _model(conditioning="mel")
    vocoder = Vocoder(model)
    rng = np.random.default_rng(4)
    audios = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (300, 517, 161)]
    together = vocoder.vocode(audios, seed=7, batch_size=3)
    alone = [vocoder.vocode([a], seed=7, batch_size=1)[0] for a in audios]
    assert [len(x) for x in together] == [300, 517, 161]
    # Mu-law levels are >= 1.7e-4 apart, so atol=1e-6 demands the same classes.
    np.testing.assert_allclose(together[1], vocoder.vocode(audios, seed=7, batch_size=1)[1], atol=1e-6)
    # Utterance i's noise depends on its index, so the lone runs (index 0) match utterance 0 only.
    np.testing.assert_allclose(together[0], alone[0], atol=1e-6)
    assert np.abs(together[2] - alone[2]).max() > 1e-3
    via_tf = vocoder.vocode(audios, seed=7, batch_size=3, backend="tf")
    for a, b in zip(together, via_tf):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_primed_generation_continues_from_the_seed():
    model = _model(conditioning="none", num_speakers=2)
    vocoder = Vocoder(model, speakers=["a", "b"])
    seed_audio = (0.5 * np.sin(np.arange(150) / 3.0)).astype(np.float32)
    x_first, state = vocoder.prime(seed_audio, speaker="b")
    seed_classes = mu_law_encode(seed_audio, FRONTEND.mu).numpy()
    assert int(x_first[0]) == seed_classes[-1] and int(state["time"]) == 150
    # Stepping through the seed with the cached step reaches the same state.
    fast = FastWaveNet(model)
    spk = model.speaker_vector(np.array([1])).numpy()
    init = {k: v.numpy() for k, v in model.initial_state(1).items()}
    forced = np.concatenate([[silence_class(FRONTEND)], seed_classes[:-1]])[None]
    _, stepped = fast.run([0], init, 150, noise=np.zeros((1, 150)), speaker_vector=spk, forced=forced)
    np.testing.assert_allclose(state["buffer"], stepped["buffer"], atol=1e-5)
    # The first generated sample's logits equal the full pass at position 150 after the seed.
    _, _, logits = fast.run(x_first, state, 1, noise=np.zeros((1, 1)), speaker_vector=spk, return_logits=True)
    full = model({"audio": np.concatenate([forced, [[seed_classes[-1]]]], axis=1), "speaker": np.array([1])})
    np.testing.assert_allclose(logits[0, 0], full.numpy()[0, 150], atol=1e-4)
    out = vocoder.generate(200, prime=seed_audio, batch_size=2, speaker="b", seed=1)
    assert out.shape == (2, 200) and not np.array_equal(out[0], out[1])
    levels = mu_law_decode(np.arange(256), FRONTEND.mu).numpy()
    assert np.abs(out[..., None] - levels).min(axis=-1).max() < 1e-6


def test_generation_from_silence_starts_like_a_training_window_at_an_onset():
    """Windows at a clip's onset train on a receptive field of silent history, so generation without a seed
    must start from that history's state, not from the zeros of the full pass's padding."""
    model = _model(conditioning="none", num_speakers=2)
    vocoder = Vocoder(model, speakers=["a", "b"])
    n, rf = 40, model.receptive_field().samples
    classes = mu_law_encode(vocoder.generate(n, temperature=0.0, speaker="b")[0], FRONTEND.mu).numpy()
    silence = np.full(rf + 1, silence_class(FRONTEND))
    onset_window = np.concatenate([silence, classes[:-1]])[None]
    logits = model({"audio": onset_window, "speaker": np.array([1])}).numpy()[0, rf:]
    np.testing.assert_array_equal(logits.argmax(-1), classes)
    padded_only = model({"audio": onset_window[:, rf:], "speaker": np.array([1])}).numpy()[0]
    assert not np.array_equal(padded_only.argmax(-1), classes)


@pytest.mark.parametrize("lpc_order, lpc_normalize, pitch, pulses",
                         [(0, False, 0, False), (8, False, 0, False), (8, True, 16, True)],
                         ids=["waveform", "lpc", "lpc-normalized-pitch-pulses"])
def test_saved_model_vocodes_like_keras(tmp_path, lpc_order, lpc_normalize, pitch, pulses):
    model = _model(conditioning="mel", lpc_order=lpc_order, lpc_normalize=lpc_normalize, pitch_features=pitch,
                   pulse_input=pulses)
    module = VocoderModule(model, jit_compile=False)
    audio = np.random.default_rng(6).uniform(-0.5, 0.5, 250).astype(np.float32)
    expected = module.vocode(audio, tf.constant(3), tf.constant(0.0)).numpy()
    path = str(tmp_path / "vocoder")
    tf.saved_model.save(module, path)
    loaded = tf.saved_model.load(path)
    got = loaded.vocode(audio, tf.constant(3), tf.constant(0.0)).numpy()
    np.testing.assert_array_equal(got, expected)
    greedy = Vocoder(model).vocode([audio], temperature=0.0)[0]
    # Both filters run in float64 (TensorFlow in the module, numba in process).
    np.testing.assert_allclose(got, greedy, atol=1e-5 if lpc_order else 1e-6)


@pytest.mark.parametrize("normalize", [False, True], ids=["residual", "normalized"])
def test_lpc_vocoder_filters_the_residual_the_network_draws(normalize):
    """An ``lpc_order`` model draws the samples a waveform model with its weights would, then filters them
    (scaled by the predictor's gain first, with ``lpc_normalize``)."""
    lpc_model = _model(conditioning="mel", lpc_order=8, lpc_normalize=normalize)
    plain = WaveNet(compact(conditioning="mel"), FRONTEND)
    plain.build()
    for mine, theirs in zip(plain.weights, lpc_model.weights):
        mine.assign(theirs)
    rng = np.random.default_rng(5)
    t = np.arange(900) / 16000
    audios = [(0.4 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(900)).astype(np.float32),
              rng.uniform(-0.3, 0.3, 500).astype(np.float32)]
    drawn = Vocoder(plain).vocode(audios, seed=2)
    for backend in ("fast", "tf"):
        got = Vocoder(lpc_model).vocode(audios, seed=2, backend=backend)
        for audio, residual, out in zip(audios, drawn, got):
            predictors, gain = source_filter(log_mel(audio, config=FRONTEND), frontend=FRONTEND, order=8,
                                             normalize=normalize)
            expected = np.clip(synthesize(residual, predictors, hop=FRONTEND.hop_length, gain=gain), -1, 1)
            np.testing.assert_allclose(out, expected, atol=1e-6)
            assert np.abs(out - residual).max() > 1e-2
    mels = [log_mel(a, config=FRONTEND).numpy()[:-1] for a in audios]
    from_mels = Vocoder(lpc_model).vocode_mels(mels, seed=2)
    assert [len(x) for x in from_mels] == [len(m) * FRONTEND.hop_length for m in mels]
    floor = Vocoder(lpc_model).quantised(audios[0])
    assert np.abs(floor - audios[0]).max() < 0.02 and np.abs(floor - audios[0]).max() > 0


def test_cli_vocodes_several_files_in_batches(tmp_path, capsys):
    """``speechkit vocode RUN a b c --out DIR --batch-size 2``: one wav per input, each equal to the input
    vocoded alone (temperature 0), with a clear error when two inputs share a name."""
    from speechkit import audio as audio_io
    from speechkit.cli import main
    from speechkit.runs import RunDir

    model = _model(conditioning="mel")
    run = RunDir(tmp_path / "run", create=True)
    run.save_model(model)
    run.save_config({"frontend": FRONTEND.to_dict(), "model": model.config.to_dict()})
    rng = np.random.default_rng(14)
    paths = []
    for name, n in (("a", 500), ("b", 260), ("c", 410)):
        paths.append(str(tmp_path / f"{name}.wav"))
        audio_io.save(paths[-1], rng.uniform(-0.5, 0.5, n).astype(np.float32))
    out = tmp_path / "vocoded"
    assert main(["vocode", run.path, *paths, "--out", str(out), "--batch-size", "2", "--temperature", "0"]) == 0
    assert "3 files" in capsys.readouterr().out
    for path, n in zip(paths, (500, 260, 410)):
        assert main(["vocode", run.path, path, "--out", str(tmp_path / "alone.wav"), "--temperature", "0"]) == 0
        together = audio_io.load(str(out / os.path.basename(path)))
        assert len(together) == n
        np.testing.assert_allclose(together, audio_io.load(str(tmp_path / "alone.wav")), atol=1e-4, rtol=0)
    os.makedirs(tmp_path / "other")
    twin = str(tmp_path / "other" / "a.wav")
    audio_io.save(twin, rng.uniform(-0.5, 0.5, 100).astype(np.float32))
    assert main(["vocode", run.path, paths[0], twin, "--out", str(out)]) == 1
    assert "a.wav: more than one input" in capsys.readouterr().err


def test_numba_products_run_on_one_blas_thread_each():
    """The kernel's threads are numba's; a BLAS that threaded each product as well would oversubscribe."""
    from threadpoolctl import threadpool_info

    from speechkit.vocoder.fast import _one_blas_thread

    with _one_blas_thread():
        inside = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert any("scipy" in lib["filepath"] for lib in inside), "numba's BLAS (scipy's) is not controlled"
    assert all(lib["num_threads"] == 1 for lib in inside)
