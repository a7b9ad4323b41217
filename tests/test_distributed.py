"""Distributed training: MirroredStrategy over 2 logical CPU devices, and 2 local MultiWorkerMirroredStrategy workers.

Both see the same global batches as a single device (each replica takes half of every planned batch).
Their loss trajectories match single-device training up to batch-norm statistics, which are computed
per replica; the two strategies split batches the same way, so they match each other closely.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from _tiny_asr import speechkit_command, subprocess_env, tiny_config, weights, write_corpus, write_preset

STEPS = 4  # 8 utterances, global batch 4, 2 epochs

_TWO_CPUS = """
import sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from speechkit.cli import main

preset, manifest, root = sys.argv[1:4]
for strategy in ("default", "mirrored"):
    code = main(["train", "asr", "--config", preset, "--train", manifest, "--out", f"{root}/{strategy}", "--quiet",
                 "--strategy", strategy])
    assert code == 0, strategy
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(run):
    return [json.loads(line)["loss"] for line in open(os.path.join(run, "batches.jsonl"))]


def _final_weights(run):
    state = json.load(open(os.path.join(run, "backup", "state.json")))
    return state, weights(os.path.join(run, "backup", state["weights"]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three trainings started together: default and mirrored (2 logical CPUs) in one process, and 2 workers."""
    root = tmp_path_factory.mktemp("distributed")
    manifest = write_corpus(str(root / "data"), ["AB", "CAB", "BAD", "DAB", "ACE", "BED", "FED", "CAFE"])
    preset = write_preset(str(root / "tiny.yaml"), tiny_config(batch_size=4, epochs=2, checkpoint_every=1))
    mirrored = subprocess.Popen([sys.executable, "-c", _TWO_CPUS, preset, manifest, str(root)], env=subprocess_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    scratch = root / "worker-tmp"
    scratch.mkdir()
    # A generous budget: the workers agree on it at every step, and it never stops them.
    workers = _workers(preset, manifest, root / "multi-worker", scratch, budgets=("30", "30"))
    outputs = {"mirrored": mirrored.communicate(timeout=500)[0]}
    assert mirrored.returncode == 0, outputs["mirrored"][-4000:]
    for index, worker in enumerate(workers):
        outputs[f"worker{index}"] = worker.communicate(timeout=500)[0]
        assert worker.returncode == 0, outputs[f"worker{index}"][-4000:]
    return root, outputs


def _workers(preset, manifest, out, scratch, *, budgets):
    """Start one ``train asr --strategy multi-worker`` process per entry of ``budgets`` (minutes)."""
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in budgets]}
    workers = []
    for index, budget in enumerate(budgets):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = subprocess_env(TF_CONFIG=config, TMPDIR=str(scratch))
        command = speechkit_command("train", "asr", "--config", preset, "--train", manifest, "--out", str(out),
                                    "--strategy", "multi-worker", "--quiet", "--time-budget", budget)
        workers.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return workers


@pytest.mark.slow
def test_mirrored_two_devices_matches_one_device(runs):
    root, _ = runs
    one, two = str(root / "default"), str(root / "mirrored")
    assert json.load(open(os.path.join(one, "train_summary.json")))["replicas"] == 1
    assert json.load(open(os.path.join(two, "train_summary.json")))["replicas"] == 2
    single, mirrored = _losses(one), _losses(two)
    assert len(single) == len(mirrored) == STEPS
    np.testing.assert_allclose(mirrored, single, rtol=0.02)
    ids = [[json.loads(line)["ids"] for line in open(os.path.join(run, "batches.jsonl"))] for run in (one, two)]
    assert ids[0] == ids[1]
    (state_one, w_one), (state_two, w_two) = _final_weights(one), _final_weights(two)
    assert state_one["step"] == state_two["step"] == STEPS and w_one.keys() == w_two.keys()
    # Adam turns small gradient differences into full-size steps on single weights, so compare the whole model.
    keys = [key for key in w_one if not key.startswith("optimizer/")]
    one_vector = np.concatenate([w_one[key].ravel() for key in keys])
    two_vector = np.concatenate([w_two[key].ravel() for key in keys])
    assert np.linalg.norm(two_vector - one_vector) / np.linalg.norm(one_vector) < 0.03


@pytest.mark.slow
def test_multi_worker_writes_one_consistent_checkpoint(runs):
    root, outputs = runs
    run = root / "multi-worker"
    backup = sorted(os.listdir(run / "backup"))
    assert backup == [f"ckpt-{STEPS:08d}.weights.h5", "state.json"]
    state, trained = _final_weights(str(run))
    assert state["step"] == STEPS and state["epoch"] == 2 and state["batch"] == 0
    summary = json.load(open(run / "train_summary.json"))
    assert summary["strategy"] == "multi-worker" and summary["replicas"] == 2 and summary["step"] == STEPS
    assert os.listdir(root / "worker-tmp") == [], "a worker left its scratch run directory behind"
    for name in ("model.keras", "DONE", "config.yaml", "batches.jsonl", "train_log.csv"):
        assert (run / name).exists(), name
    # The workers split every global batch exactly as the two mirrored devices do.
    np.testing.assert_allclose(_losses(str(run)), _losses(str(root / "mirrored")), rtol=1e-4)
    _, mirrored = _final_weights(str(root / "mirrored"))
    for key in trained:
        np.testing.assert_allclose(trained[key], mirrored[key], rtol=1e-4, atol=1e-5, err_msg=key)
    import keras

    network = keras.saving.load_model(str(run / "model.keras"), compile=False)
    assert network.count_params() == summary["parameters"]
    assert "resuming" not in outputs["worker1"]


def test_multi_worker_needs_tf_config(tmp_path, monkeypatch):
    from speechkit.errors import ConfigError
    from speechkit.training import make_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        make_strategy("multi-worker")


@pytest.mark.slow
def test_multi_worker_time_budget_stops_every_worker_at_the_same_step(runs):
    """Worker 0 runs out of time at once, worker 1 has plenty: both must stop after the same step, not hang."""
    root, _ = runs
    manifest = str(root / "data" / "train.jsonl")
    out, scratch = root / "budget", root / "budget-tmp"
    scratch.mkdir()
    workers = _workers(str(root / "tiny.yaml"), manifest, out, scratch, budgets=("0.0001", "30"))
    for index, worker in enumerate(workers):
        output = worker.communicate(timeout=300)[0]
        assert worker.returncode == 0, f"worker {index}: {output[-4000:]}"
    summary = json.load(open(out / "train_summary.json"))
    assert summary["stopped"] == "time_budget" and 1 <= summary["step"] < STEPS
    assert len(_losses(str(out))) == summary["step"]
