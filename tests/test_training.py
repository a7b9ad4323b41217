"""The shared training layer on a tiny linear model: the replanning stream, exact resume, time budget, best model."""

import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from speechkit.data.pipeline import plan_batches
from speechkit.errors import SpeechkitError
from speechkit.runs import RunDir
from speechkit.training import EpochPlan, OptimizerConfig, Progress, TrainState, fit_run, make_optimizer

DURATIONS = [0.3 + 0.1 * ((7 * i) % 11) for i in range(10)]  # 10 items in batches of 3: 4 batches per epoch
X = np.linspace(-1.0, 1.0, 20, dtype=np.float32).reshape(10, 2)
Y = X @ np.array([[1.0], [-2.0]], np.float32) + 0.5


def _plans(epochs):
    return [plan_batches(DURATIONS, batch_size=3, epoch=e, seed=1) for e in range(epochs)]


def _plan(epochs=3):
    return EpochPlan(lambda e: plan_batches(DURATIONS, batch_size=3, epoch=e, seed=1), epochs=epochs)


def test_one_stream_gives_the_per_epoch_plans():
    expected = [b for plan in _plans(3) for b in plan]
    plan = _plan()
    assert plan.steps_per_epoch == 4 and len(plan) == 12
    assert [x.numpy().tolist() for x in plan.index_dataset()] == expected
    assert [x.numpy().tolist() for x in plan.index_dataset(1, 2)] == expected[6:]
    remaining = plan.sequence(1, 2)
    assert len(remaining) == 6 and list(remaining) == expected[6:] and remaining[-1] == expected[-1]
    sortagrad = [DURATIONS[i] for b in expected[:4] for i in b]
    assert sortagrad == sorted(sortagrad), "epoch 0 is sorted by duration"
    assert expected[4:8] != expected[8:], "later epochs are replanned"
    with pytest.raises(IndexError):
        remaining[6]


def test_plans_of_unequal_length_are_refused():
    plan = EpochPlan(lambda e: [[0], [1]] if e == 0 else [[0, 1]], epochs=2)
    with pytest.raises(SpeechkitError, match="same number"):
        plan.batches(1)


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=make_optimizer(OptimizerConfig(learning_rate=0.05, warmup_steps=2, schedule="constant")),
                  loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def _train(run_dir, *, epochs=3, metric=None, budget=None, callbacks=(), saves=None):
    run = RunDir(run_dir, create=True)
    plan, model = _plan(epochs), _model()
    state = TrainState.load(run.backup_dir) or TrainState()

    def dataset_at(epoch, batch):
        return plan.index_dataset(epoch, batch).map(lambda i: (tf.gather(X, i), tf.gather(Y, i)))

    def describe(epoch, batch):
        indices = plan.batches(epoch)[batch]
        return [f"u{i}" for i in indices], sum(DURATIONS[i] for i in indices)

    def save():
        if saves is not None:
            saves.append(int(model.optimizer.iterations.numpy()))
        return run.save_model(model)

    summary = fit_run(model, run=run, state=state, dataset_at=dataset_at, steps_per_epoch=plan.steps_per_epoch,
                      epochs=epochs, describe=describe, save_model=save, checkpoint_every=1, log_every=1,
                      metric=metric, time_budget_s=budget, callbacks=callbacks, verbose=0)
    return summary, model


def _log(run_dir):
    return [json.loads(line) for line in open(os.path.join(run_dir, "batches.jsonl"))]


class _Crash(Exception):
    pass


class _CrashAt(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            raise _Crash()


def test_resume_mid_epoch_equals_an_uninterrupted_run(tmp_path):
    straight, reference = _train(tmp_path / "straight")
    assert straight["step"] == 12 and straight["stopped"] == "epochs" and straight["epochs_done"] == 3.0
    with pytest.raises(_Crash):
        _train(tmp_path / "run", callbacks=[_CrashAt(6)])
    state = TrainState.load(str(tmp_path / "run" / "backup"))
    assert (state.step, state.epoch, state.batch) == (6, 1, 2)
    resumed, model = _train(tmp_path / "run")
    assert resumed["step"] == 12
    assert resumed["audio_seconds_trained"] == pytest.approx(straight["audio_seconds_trained"])
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6)
    expected = [b for plan in _plans(3) for b in plan]
    log = _log(tmp_path / "run")
    assert [e["ids"] for e in log] == [[f"u{i}" for i in b] for b in expected]
    assert [e["step"] for e in log] == list(range(1, 13))
    # Without a ``batch_loss`` log the loss is Keras' running mean, which restarts with the resumed part of epoch 1.
    full_epochs = [e["loss"] for e in log if e["epoch"] != 1]
    np.testing.assert_allclose(full_epochs, [e["loss"] for e in _log(tmp_path / "straight") if e["epoch"] != 1],
                               rtol=1e-5)
    rows = list(csv.DictReader(open(tmp_path / "run" / "train_log.csv")))
    assert [(r["epoch"], r["step"]) for r in rows] == [("0", "4"), ("1", "8"), ("2", "12")]
    assert os.listdir(tmp_path / "run" / "tensorboard")
    assert sorted(os.listdir(tmp_path / "run" / "backup")) == ["ckpt-00000012.weights.h5", "state.json"]


def test_time_budget_stops_cleanly_and_a_later_call_finishes_exactly(tmp_path):
    stopped, _ = _train(tmp_path / "run", budget=0.0)
    assert stopped["stopped"] == "time_budget" and stopped["step"] == 1
    assert TrainState.load(str(tmp_path / "run" / "backup")).position() == (0, 1)
    assert os.path.exists(tmp_path / "run" / "model.keras")
    finished, model = _train(tmp_path / "run")
    _, reference = _train(tmp_path / "straight")
    assert finished["step"] == 12 and finished["stopped"] == "epochs"
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6)


def test_dev_metric_saves_the_best_model_only(tmp_path):
    values = iter([0.5, 0.3, 0.4])
    saves = []
    summary, _ = _train(tmp_path / "run", metric=("val_metric", lambda: (next(values), {"val_other": 1.0})),
                        saves=saves)
    assert saves == [4, 8], "saved after epochs 0 and 1, not after the worse epoch 2"
    assert summary["best"] == 0.3 and TrainState.load(str(tmp_path / "run" / "backup")).best == 0.3
    rows = list(csv.DictReader(open(tmp_path / "run" / "train_log.csv")))
    assert [float(r["val_metric"]) for r in rows] == [0.5, 0.3, 0.4] and "learning_rate" in rows[0]


def test_batch_log_is_cut_back_to_the_checkpoint(tmp_path):
    lines = [json.dumps({"epoch": e, "batch": b, "step": 3 * e + b + 1, "ids": []}) for e in range(2) for b in range(3)]
    (tmp_path / "batches.jsonl").write_text("\n".join(lines) + "\n" + '{"epoch": 1, "ba')
    Progress.truncate(str(tmp_path), TrainState(epoch=1, batch=1))
    kept = [json.loads(line) for line in (tmp_path / "batches.jsonl").read_text().splitlines()]
    assert [(e["epoch"], e["batch"]) for e in kept] == [(0, 0), (0, 1), (0, 2), (1, 0)]
