"""Kill -9 and resume: ``speechkit train asr`` in a subprocess, killed mid-epoch, restarted, finishes exactly.

Also: a write interrupted half-way (checkpoint, state, manifest) never replaces the last good file.
"""

import collections
import json
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

from _tiny_asr import TEXTS, speechkit_command, subprocess_env, tiny_config, weights, write_corpus, write_preset

EPOCHS = 2
BATCH = 2
UTTERANCES = 8
STEPS = EPOCHS * UTTERANCES // BATCH


def _train_command(preset, manifest, run):
    return speechkit_command("train", "asr", "--config", preset, "--train", manifest, "--out", run, "--quiet")


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _checkpoint(run):
    state = _read_json(os.path.join(run, "backup", "state.json"))
    return state, weights(os.path.join(run, "backup", state["weights"]))


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_exact(tmp_path):
    manifest = write_corpus(str(tmp_path / "data"), TEXTS[:UTTERANCES])
    preset = write_preset(str(tmp_path / "tiny.yaml"), tiny_config(batch_size=BATCH, epochs=EPOCHS,
                                                                   checkpoint_every=1))
    run, reference = str(tmp_path / "run"), str(tmp_path / "reference")
    env = subprocess_env()
    uninterrupted = subprocess.Popen(_train_command(preset, manifest, reference), env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
    victim = subprocess.Popen(_train_command(preset, manifest, run), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    state_path = os.path.join(run, "backup", "state.json")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and victim.poll() is None:
        if os.path.exists(state_path) and _read_json(state_path)["batch"] > 0:
            victim.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert victim.wait(timeout=60) == -signal.SIGKILL, "training ended before a mid-epoch checkpoint was seen"
    assert not os.path.exists(os.path.join(run, "DONE"))

    killed_state, killed_weights = _checkpoint(run)
    assert 0 < killed_state["step"] < STEPS and killed_state["batch"] > 0
    assert any("optimizer" in key for key in killed_weights)

    resumed = subprocess.run(_train_command(preset, manifest, run), env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (f"resuming {run} at step {killed_state['step']} (epoch {killed_state['epoch']}, "
            f"batch {killed_state['batch']})") in resumed.stderr
    out, _ = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, out[-3000:]

    summary = _read_json(os.path.join(run, "train_summary.json"))
    assert summary["step"] == STEPS and summary["stopped"] == "epochs"
    assert _read_json(os.path.join(run, "DONE")) == summary

    log = [json.loads(line) for line in open(os.path.join(run, "batches.jsonl"))]
    assert [entry["step"] for entry in log] == list(range(1, STEPS + 1))
    for epoch in range(EPOCHS):
        seen = sorted(i for entry in log if entry["epoch"] == epoch for i in entry["ids"])
        assert seen == sorted(f"u{i:02d}" for i in range(UTTERANCES)), epoch
    assert set(collections.Counter(i for entry in log for i in entry["ids"]).values()) == {EPOCHS}
    reference_log = [json.loads(line) for line in open(os.path.join(reference, "batches.jsonl"))]
    assert [e["ids"] for e in log] == [e["ids"] for e in reference_log]
    np.testing.assert_allclose([e["loss"] for e in log], [e["loss"] for e in reference_log], rtol=1e-5)

    final_state, final = _checkpoint(run)
    reference_state, expected = _checkpoint(reference)
    assert final_state["step"] == reference_state["step"] == STEPS
    assert final_state["audio_seconds"] == pytest.approx(reference_state["audio_seconds"])
    assert final.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(final[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert not [name for name in os.listdir(os.path.join(run, "backup")) if name.startswith("tmp-")]


# -- Interrupted writes -- #

class _Killed(BaseException):
    """Stands in for the process dying in the middle of a write."""


@pytest.fixture
def tracker(tmp_path):
    import keras

    from speechkit.asr.ctc import CTCTrainer
    from speechkit.asr.deepspeech2 import build_deepspeech2
    from speechkit.training import Checkpoint, TrainState, make_optimizer

    config = tiny_config()
    network = build_deepspeech2(config.model, frontend=config.frontend)
    trainer = CTCTrainer(network)
    trainer.compile(optimizer=make_optimizer(config.optimizer), jit_compile=False)
    trainer([np.zeros((1, 8, 16), np.float32), np.array([8], np.int32)])
    trainer.optimizer.build(trainer.trainable_variables)
    state = TrainState(epoch=0, batch=1, step=0, audio_seconds=1.0, train_seconds=1.0, fingerprint="abc")
    callback = Checkpoint(str(tmp_path / "backup"), state=state, every=1)
    callback.set_model(trainer)
    yield callback, trainer
    keras.backend.clear_session()


def test_checkpoint_killed_while_writing_weights_keeps_the_last_one(tracker, tmp_path, monkeypatch):
    callback, trainer = tracker
    callback.save()
    good_state, good = _checkpoint(str(tmp_path))
    assert good_state["step"] == 0

    trainer.optimizer.iterations.assign(7)
    callback.state.batch, callback.state.step = 2, 7

    def dies_half_way(path):
        with open(path, "wb") as f:
            f.write(b"\x89HDF\r\n" + b"\0" * 100)
        raise _Killed()

    monkeypatch.setattr(trainer, "save_weights", dies_half_way)
    with pytest.raises(_Killed):
        callback.save()
    monkeypatch.undo()

    state, restored = _checkpoint(str(tmp_path))
    assert state == good_state
    assert restored.keys() == good.keys()
    partial = [n for n in os.listdir(tmp_path / "backup") if n.startswith("tmp-")]
    assert len(partial) == 1
    with pytest.raises(OSError):
        h5py.File(tmp_path / "backup" / partial[0])
    trainer.load_weights(str(tmp_path / "backup" / state["weights"]))
    assert int(trainer.optimizer.iterations.numpy()) == 0

    from speechkit.runs import RunDir

    RunDir(str(tmp_path)).remove_partial_files()
    assert sorted(os.listdir(tmp_path / "backup")) == ["ckpt-00000000.weights.h5", "state.json"]


def test_state_and_manifest_writes_are_all_or_nothing(tmp_path, monkeypatch):
    from speechkit.config import atomic_write_text
    from speechkit.data.manifest import Utterance, read_manifest, write_manifest

    manifest = str(tmp_path / "m.jsonl")
    first = [Utterance("a", "a.wav", 1.0, "A", "s")]
    write_manifest(manifest, first)
    state = str(tmp_path / "state.json")
    atomic_write_text(state, json.dumps({"step": 1}))

    def killed(src, dst):
        raise _Killed()

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(_Killed):
        write_manifest(manifest, first * 1000)
    with pytest.raises(_Killed):
        atomic_write_text(state, json.dumps({"step": 2}))
    monkeypatch.undo()
    assert [u.id for u in read_manifest(manifest)] == ["a"]
    assert _read_json(state) == {"step": 1}


def test_resume_cuts_the_batch_log_back_to_the_checkpoint(tmp_path):
    from speechkit.training import Progress, TrainState

    lines = [json.dumps({"epoch": e, "batch": b, "step": 3 * e + b + 1, "ids": []}) for e in range(2) for b in range(3)]
    (tmp_path / "batches.jsonl").write_text("\n".join(lines) + "\n" + '{"epoch": 1, "ba')
    Progress.truncate(str(tmp_path), TrainState(epoch=1, batch=1))
    kept = [json.loads(line) for line in (tmp_path / "batches.jsonl").read_text().splitlines()]
    assert [(e["epoch"], e["batch"]) for e in kept] == [(0, 0), (0, 1), (0, 2), (1, 0)]
