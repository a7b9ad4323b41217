"""The exported vocoder (XLA-compiled packed loop, rows in parallel) against the in-process numba generator."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from speechkit import audio as audio_io
from speechkit.data.manifest import Utterance, write_manifest
from speechkit.export.check import check_exports
from speechkit.export.vocoder import PARALLEL, WAVEFORM_SIGNATURE, export_vocoder
from speechkit.frontend import FrontendConfig, log_mel, mu_law_decode
from speechkit.runs import RunDir
from speechkit.vocoder.fast import FastWaveNet
from speechkit.vocoder.generation import Vocoder
from speechkit.vocoder.wavenet import WaveNet, WaveNetConfig, silence_class

# Loads the export with nothing but TensorFlow and NumPy, as a deployment would.
_FRESH = """
import sys
import numpy as np
import tensorflow as tf
with np.load(sys.argv[2]) as data:
    arrays = {name: tf.constant(data[name]) for name in data.files}
out = tf.saved_model.load(sys.argv[1]).signatures[sys.argv[4]](**arrays)
np.savez(sys.argv[3], **{name: value.numpy() for name, value in out.items()})
assert not any(name.startswith("speechkit") for name in sys.modules)
"""


def _random_run(path, config, *, seed):
    """A mel-conditioned WaveNet with random weights, saved in the run layout ``export_vocoder`` reads."""
    frontend = FrontendConfig(kind="mel", normalize=False)
    model = WaveNet(config, frontend)
    model.build()
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(0.0, 0.4, w.shape).astype(np.float32))
    run = RunDir(path, create=True)
    run.save_model(model)
    run.save_config({"frontend": frontend.to_dict(), "model": config.to_dict()})
    return model, run


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny mel-conditioned WaveNet with random weights, its run and its default (XLA) export."""
    root = tmp_path_factory.mktemp("vocoder_export")
    model, run = _random_run(root / "run", WaveNetConfig(layers_per_stack=3, stacks=2, residual_channels=8,
                                                         gate_channels=8, skip_channels=8, head_channels=16,
                                                         cond_channels=8), seed=11)
    info = export_vocoder(run.path, str(root / "export"))
    return model, str(root / "export"), info


def _call_fresh(export_dir, arrays, tmp_path, signature=WAVEFORM_SIGNATURE):
    np.savez(str(tmp_path / "in.npz"), **arrays)
    done = subprocess.run([sys.executable, "-c", _FRESH, export_dir, str(tmp_path / "in.npz"),
                           str(tmp_path / "out.npz"), signature], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(str(tmp_path / "out.npz")) as data:
        return {name: data[name] for name in data.files}


def test_exported_batch_samples_like_numba_in_a_fresh_process(exported, tmp_path):
    """A padded batch of three through ``vocode_waveform`` (XLA, rows two at a time) draws, row by row,
    the samples the threaded numba generator draws from the same conditioning and noise."""
    model, export_dir, info = exported
    assert info["jit_compile"] and info["parallel"] == PARALLEL == 2
    rng = np.random.default_rng(12)
    audios = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (700, 1100, 430)]
    lengths = np.array([len(a) for a in audios], np.int32)
    waveform = np.zeros((3, lengths.max()), np.float32)
    for row, a in enumerate(audios):
        waveform[row, :len(a)] = a
    seed, temperature = 5, 0.9
    got = _call_fresh(export_dir, {"waveform": waveform, "lengths": lengths, "temperature": np.float32(temperature),
                                   "seed": np.int32(seed)}, tmp_path)["waveform"]

    vocoder = Vocoder(model)
    longest = int(lengths.max())
    cond = np.zeros((3, longest, model.config.cond_channels), np.float32)
    for row, a in enumerate(audios):
        cond[row, :len(a)] = vocoder.conditioning(a)
    noise = np.stack([tf.random.stateless_uniform([longest], seed=[seed, row]).numpy() for row in range(3)])
    classes, _ = FastWaveNet(model, threads=2).run(np.full(3, silence_class(model.frontend)),
                                                   model.initial_state(3), longest, noise=noise,
                                                   temperature=temperature, cond=cond)
    expected = mu_law_decode(classes, model.frontend.mu).numpy()
    for row, n in enumerate(lengths):
        # Mu-law levels are >= 1.7e-4 apart, so atol=1e-6 demands the same classes.
        np.testing.assert_allclose(got[row, :n], expected[row, :n], atol=1e-6, rtol=0)
        assert np.all(got[row, n:] == 0.0)
        assert len(np.unique(got[row, :n])) > 20


@pytest.mark.slow
def test_exported_rows_do_not_depend_on_their_batch(exported, tmp_path):
    """At temperature 0 an utterance vocoded alone equals the same utterance in a batch: padding and the
    parallel row loops change nothing."""
    _, export_dir, _ = exported
    rng = np.random.default_rng(13)
    waveform = rng.uniform(-0.5, 0.5, (2, 900)).astype(np.float32)
    common = {"temperature": np.float32(0.0), "seed": np.int32(0)}
    both = _call_fresh(export_dir, {"waveform": waveform, "lengths": np.array([900, 600], np.int32), **common},
                       tmp_path)["waveform"]
    alone = _call_fresh(export_dir, {"waveform": waveform[1:, :600], "lengths": np.array([600], np.int32),
                                     **common}, tmp_path)["waveform"]
    np.testing.assert_array_equal(both[1, :600], alone[0])
    assert np.std(alone) > 1e-3


@pytest.mark.slow
def test_exported_lpc_vocoder_filters_like_the_run_in_a_fresh_process(tmp_path):
    """An ``lpc_order`` model's export derives the predictor, its gain, the pitch features and the free pulse train
    from its input, and filters and post-filters in the graph: at temperature 0 it gives what the in-process
    vocoder gives, from a waveform (the padding of a shorter row zeroed before the post-filter) and from a
    log-mel."""
    frontend = FrontendConfig(kind="mel", normalize=False)
    model, run = _random_run(tmp_path / "run", WaveNetConfig(layers_per_stack=2, stacks=1, residual_channels=8,
                                                             gate_channels=8, skip_channels=8, head_channels=16,
                                                             cond_channels=8, lpc_order=12,
                                                             lpc_normalize=True, pitch_features=16,
                                                             mel_postfilter=2, pulse_input=True), seed=21)
    rng = np.random.default_rng(22)
    export_dir = str(tmp_path / "export" / "vocoder")
    export_vocoder(run.path, export_dir)
    t = np.arange(1200) / 16000
    audios = [(0.3 * np.sin(2 * np.pi * 200 * t) + 0.02 * rng.standard_normal(1200)).astype(np.float32),
              rng.uniform(-0.3, 0.3, 700).astype(np.float32)]
    waveform = np.zeros((2, 1200), np.float32)
    waveform[1, :700] = audios[1]
    waveform[0] = audios[0]
    common = {"temperature": np.float32(0.0), "seed": np.int32(0)}
    got = _call_fresh(export_dir, {"waveform": waveform, "lengths": np.array([1200, 700], np.int32),
                                                 **common}, tmp_path)["waveform"]
    vocoder = Vocoder(model)
    expected = vocoder.vocode(audios, temperature=0.0)
    # The graph's mel of a padded batch may differ from the eager one in the last bits: 1e-4, not exact.
    np.testing.assert_allclose(got[0], expected[0], atol=1e-4)
    np.testing.assert_allclose(got[1, :700], expected[1], atol=1e-4)
    assert np.all(got[1, 700:] == 0.0)
    mel = log_mel(audios[0], config=frontend).numpy()
    from_mel = _call_fresh(export_dir, {"log_mel": mel[None], **common}, tmp_path,
                           signature="serving_default")["waveform"]
    np.testing.assert_allclose(from_mel[0], vocoder.vocode_mels([mel], temperature=0.0)[0], atol=1e-4)

    utterances = []
    for i, audio in enumerate(audios):
        audio_io.save(str(tmp_path / f"u{i}.wav"), audio)
        utterances.append(Utterance(f"u{i}", str(tmp_path / f"u{i}.wav"), len(audio) / 16000, "A", "s"))
    write_manifest(str(tmp_path / "m.jsonl"), utterances)
    report = check_exports(str(tmp_path / "export"), manifest=str(tmp_path / "m.jsonl"), vocoder_run=run.path)
    assert report["passed"] and report["vocoder"]["lpc_order"] == 12
    assert report["vocoder"]["relative_rms_diff"] < 1e-4
    for w in model.weights:
        w.assign(w.numpy() + rng.normal(0.0, 0.3, w.shape).astype(np.float32))
    run.save_model(model)
    report = check_exports(str(tmp_path / "export"), manifest=str(tmp_path / "m.jsonl"), vocoder_run=run.path)
    assert not report["passed"] and "LPC vocoder waveforms differ" in report["failures"][0]
