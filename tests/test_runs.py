"""RunDir: layout, atomic writes, config mismatch errors, and checked reads."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import yaml

from speechkit.asr.beam import DecodeConfig
from speechkit.config import Config
from speechkit.errors import ConfigError, RunError
from speechkit.frontend import FrontendConfig
from speechkit.runs import RunDir
from speechkit.text import Vocabulary


@dataclasses.dataclass(frozen=True)
class _Train(Config):
    epochs: int = 2
    lr: float = 0.001


@dataclasses.dataclass(frozen=True)
class _Run(Config):
    frontend: FrontendConfig = FrontendConfig()
    train: _Train = _Train()
    name: str = "a"


@pytest.fixture
def run(tmp_path):
    return RunDir(tmp_path / "run", create=True)


def test_missing_directory_raises_unless_created(tmp_path):
    with pytest.raises(RunError, match="no such run directory"):
        RunDir(tmp_path / "nope")
    assert os.path.isdir(RunDir(tmp_path / "a" / "b", create=True).path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="not a directory"):
        RunDir(tmp_path / "file", create=True)


def test_json_round_trip_and_atomic_write_leaves_no_temp_files(run):
    run.write_json(RunDir.SUMMARY, {"epochs_done": 3, "wer": 0.5})
    assert run.read_json(RunDir.SUMMARY) == {"epochs_done": 3, "wer": 0.5}
    assert sorted(os.listdir(run.path)) == [RunDir.SUMMARY]


def test_missing_and_invalid_files_name_the_file(run):
    with pytest.raises(RunError, match=r"vocabulary\.json: missing"):
        run.vocabulary()
    with open(run.file(RunDir.SUMMARY), "w") as f:
        f.write("{not json")
    with pytest.raises(RunError, match=r"train_summary\.json: not valid JSON"):
        run.summary()
    run.write_json(RunDir.VOCABULARY, {"letters": "AB"})
    with pytest.raises(RunError, match=r"vocabulary\.json: not a vocabulary"):
        run.vocabulary()
    run.write_text(RunDir.SPEAKERS, '{"a": 1}')
    with pytest.raises(RunError, match=r"speakers\.json"):
        run.speakers()
    with pytest.raises(RunError, match=r"config\.yaml: missing"):
        run.frontend()
    with pytest.raises(RunError, match=r"model\.keras: missing"):
        run.load_model()


def test_config_round_trip_and_frontend_from_its_section(run):
    config = _Run(frontend=FrontendConfig(kind="mel"))
    run.save_config(config)
    assert run.load_config(_Run) == config
    assert run.frontend() == FrontendConfig(kind="mel")
    run.check_frontend(FrontendConfig(kind="mel"))
    with pytest.raises(ConfigError, match="kind: 'mel' != 'spectrogram'"):
        run.check_frontend(FrontendConfig(), source="model.keras")


def test_frontend_section_missing_or_invalid(run):
    run.write_text(RunDir.CONFIG, "name: a\n")
    with pytest.raises(RunError, match=r"config\.yaml: no frontend section"):
        run.frontend()
    run.write_text(RunDir.CONFIG, "frontend: {kind: wavelet}\n")
    with pytest.raises(ConfigError, match=r"config\.yaml"):
        run.frontend()
    run.write_text(RunDir.CONFIG, "frontend: [1, 2\n")
    with pytest.raises(RunError, match=r"config\.yaml: not valid YAML"):
        run.frontend()


def test_config_mismatch_lists_every_differing_field(run):
    run.save_config(_Run())
    changed = _Run(frontend=FrontendConfig(n_mels=40), train=_Train(epochs=5, lr=0.01))
    with pytest.raises(RunError) as err:
        run.save_config(changed, mutable=("train.epochs",))
    message = str(err.value)
    assert message.startswith(f"{run.path} holds a run with a different config: ")
    assert "frontend.n_mels: 80 != 40" in message
    assert "train.lr: 0.001 != 0.01" in message
    assert "epochs" not in message
    assert run.load_config(_Run) == _Run()


def test_mutable_fields_may_change_and_are_written(run):
    run.save_config(_Run())
    run.save_config(_Run(train=_Train(epochs=9)), mutable=("train.epochs",))
    assert run.load_config(_Run).train.epochs == 9
    run.save_config(_Run(train=_Train(epochs=1, lr=0.5)), mutable=("train",))
    assert run.load_config(_Run).train == _Train(epochs=1, lr=0.5)


def test_config_mismatch_reports_missing_fields(run):
    run.write_text(RunDir.CONFIG, "name: a\nextra: 1\n")
    with pytest.raises(RunError, match="extra: 1 != '<missing>'"):
        run.save_config({"name": "a"})


def test_a_field_added_since_the_config_was_written_takes_its_default(run):
    """A run written before a new option existed resumes when the option keeps its default, not otherwise."""
    run.save_config(_Run())
    stored = yaml.safe_load(run.read_text(RunDir.CONFIG))
    del stored["frontend"]["n_mels"], stored["train"]["lr"]
    run.write_text(RunDir.CONFIG, yaml.safe_dump(stored))
    run.save_config(_Run())
    assert run.load_config(_Run) == _Run() and "lr" in yaml.safe_load(run.read_text(RunDir.CONFIG))["train"]
    run.write_text(RunDir.CONFIG, yaml.safe_dump(stored))
    with pytest.raises(RunError, match="train.lr: 0.001 != 0.5"):
        run.save_config(_Run(train=_Train(lr=0.5)))


def test_command_is_appended(run):
    run.append_command("speechkit train asr --out x")
    run.append_command("speechkit train asr --out x --epochs 4")
    assert run.read_text(RunDir.COMMAND).splitlines() == ["speechkit train asr --out x",
                                                          "speechkit train asr --out x --epochs 4"]
    run.append_command()
    assert len(run.read_text(RunDir.COMMAND).splitlines()) == 3


def test_done_marker(run):
    assert not run.is_done()
    run.mark_done({"epochs_done": 2})
    assert run.is_done() and run.summary() == {"epochs_done": 2}
    run.clear_done()
    run.clear_done()
    assert not run.is_done() and run.summary() == {"epochs_done": 2}


def test_vocabulary_and_speakers(run):
    assert run.speakers() == []
    run.save_vocabulary(Vocabulary("AB "))
    assert run.vocabulary() == Vocabulary("AB ")
    run.save_speakers(["p1", "p2"])
    assert run.speakers() == ["p1", "p2"]


def test_decode_config_keeps_an_lm_inside_the_run_relative(tmp_path, run):
    assert run.decode_config() == DecodeConfig()
    inside = os.path.join(run.path, "lm")
    run.save_decode_config(DecodeConfig(decoder="beam", lm=inside, alpha=1.5))
    assert "lm: lm\n" in run.read_text(RunDir.DECODE)
    moved = RunDir(tmp_path / "moved", create=True)
    os.replace(run.file(RunDir.DECODE), moved.file(RunDir.DECODE))
    config = moved.decode_config()
    assert config.lm == os.path.join(moved.path, "lm") and config.alpha == 1.5
    outside = str(tmp_path / "shared_lm")
    run.save_decode_config(DecodeConfig(decoder="beam", lm=outside))
    assert run.decode_config().lm == outside


def _tiny_model():
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))


def test_model_save_is_atomic_and_loads_back(run):
    model = _tiny_model()
    run.save_model(model)
    assert sorted(os.listdir(run.path)) == [RunDir.MODEL]
    loaded = run.load_model(cls=keras.Model)
    x = np.ones((1, 3), np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=0, atol=0)
    with pytest.raises(RunError, match=r"model\.keras: not a Sequential"):
        run.load_model(cls=keras.Sequential)


def test_model_that_cannot_be_loaded_names_the_file(run):
    run.write_text(RunDir.MODEL, "not a zip")
    with pytest.raises(RunError, match=r"model\.keras: cannot load the model"):
        run.load_model()


def test_failed_save_keeps_the_old_model(run):
    run.save_model(_tiny_model())
    before = open(run.file(RunDir.MODEL), "rb").read()

    class Broken:
        def save(self, path):
            with open(path, "wb") as f:
                f.write(b"half")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run.save_model(Broken())
    assert open(run.file(RunDir.MODEL), "rb").read() == before
    assert sorted(os.listdir(run.path)) == [RunDir.MODEL]


def test_remove_partial_files_clears_only_temp_names(run):
    os.makedirs(run.backup_dir)
    leftovers = ["config.yaml.tmp.123", "model.tmp.456.keras", "weights.tmp.9.npz",
                 os.path.join(RunDir.BACKUP, "state.json.tmp.7"), os.path.join(RunDir.BACKUP, "tmp-88.weights.h5")]
    kept = ["config.yaml", "model.keras", "notes.tmp.txt", os.path.join(RunDir.BACKUP, "state.json"),
            os.path.join(RunDir.BACKUP, "ckpt-00000200.weights.h5")]
    for name in leftovers + kept:
        run.write_text(name, "x")
    removed = run.remove_partial_files()
    assert sorted(removed) == sorted(run.file(n) for n in leftovers)
    assert all(run.exists(n) for n in kept) and not any(run.exists(n) for n in leftovers)


def test_summary_json_is_plain_json(run):
    run.mark_done({"a": [1, 2]})
    with open(run.file(RunDir.DONE)) as f:
        assert json.load(f) == {"a": [1, 2]}
