"""Safety: configs load only through ``yaml.safe_load``, manifests are data, and model files run no embedded code."""

import ast
import json
import os
import pathlib

import numpy as np
import pytest

from speechkit.errors import ConfigError, SpeechkitError
from speechkit.frontend import FrontendConfig
from speechkit.text import Vocabulary

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "speechkit"

_BANNED_CALLS = {"eval", "exec", "yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all",
                 "yaml.unsafe_load_all", "yaml.full_load_all", "os.system", "os.popen", "marshal.loads",
                 "torch.load", "jsonpickle.decode"}
_BANNED_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal", "jsonpickle"}
_BANNED_KEYWORDS = {("allow_pickle", True), ("safe_mode", False), ("shell", True)}


def _dotted(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def unsafe_uses(source, filename="<source>"):
    """Lines of ``source`` that deserialise or execute untrusted input: ``file:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [f"{filename}:{node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] in _BANNED_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in _BANNED_MODULES:
            found.append(f"{filename}:{node.lineno}: from {node.module} import")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in _BANNED_CALLS:
                found.append(f"{filename}:{node.lineno}: {name}()")
            for keyword in node.keywords:
                if isinstance(keyword.value, ast.Constant) and (keyword.arg, keyword.value.value) in _BANNED_KEYWORDS:
                    found.append(f"{filename}:{node.lineno}: {keyword.arg}={keyword.value.value}")
    return found


def test_detector_flags_each_unsafe_pattern():
    bad = ("import pickle\nfrom dill import loads\nimport yaml\nyaml.load(open('x'))\nyaml.unsafe_load('a')\n"
           "eval('1')\nexec('x = 1')\nimport numpy as np\nnp.load('a.npy', allow_pickle=True)\n"
           "keras.saving.load_model('m.keras', safe_mode=False)\nsubprocess.run('ls', shell=True)\nos.system('ls')\n")
    assert [line.split(": ", 1)[1] for line in unsafe_uses(bad)] == [
        "import pickle", "from dill import", "yaml.load()", "yaml.unsafe_load()", "eval()", "exec()",
        "allow_pickle=True", "safe_mode=False", "shell=True", "os.system()"]
    assert unsafe_uses("import yaml\nyaml.safe_load(open('x'))\nmodel.eval\nsubprocess.run(['ls'])\n") == []


def test_package_has_no_unsafe_deserialisation_or_eval():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    found = [hit for path in files for hit in unsafe_uses(path.read_text(encoding="utf-8"), str(path))]
    assert found == []


_SAFE_YAML = {"safe_load", "safe_load_all", "safe_dump", "safe_dump_all", "YAMLError", "SafeLoader", "SafeDumper"}


def test_every_use_of_yaml_is_the_safe_api():
    uses = [(str(path.relative_to(PACKAGE)), node.lineno, node.attr)
            for path in sorted(PACKAGE.rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "yaml"]
    assert any(u[0] == "config.py" and u[2] == "safe_load" for u in uses)
    assert [u for u in uses if u[2] not in _SAFE_YAML] == []


EXPLOITS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "epochs: !!python/object/apply:subprocess.check_call [['touch', '{marker}']]",
    "frontend: !!python/name:os.system\n",
    "!!python/object/new:type\n  args: [x, !!python/tuple [], {{}}]\n",
]


@pytest.mark.parametrize("payload", EXPLOITS)
def test_yaml_with_python_tags_is_rejected_and_never_run(tmp_path, capsys, payload):
    from speechkit.asr.train import load_train_config
    from speechkit.cli import main
    from speechkit.config import load_yaml
    from speechkit.vocoder.config import load_vocoder_config

    marker = tmp_path / "pwned"
    preset = tmp_path / "evil.yaml"
    preset.write_text(payload.format(marker=marker))
    for loader in (load_yaml, load_train_config, load_vocoder_config):
        with pytest.raises(ConfigError, match=r"evil\.yaml: not valid YAML.*python"):
            loader(str(preset))
    assert main(["train", "asr", "--config", str(preset), "--train", str(tmp_path / "t.jsonl"), "--out",
                 str(tmp_path / "run")]) == 1
    assert "evil.yaml: not valid YAML" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


def test_manifest_fields_are_data_never_executed(tmp_path):
    from speechkit.asr.evaluate import evaluate
    from speechkit.data.manifest import read_manifest

    marker = tmp_path / "pwned"
    lines = [
        {"id": "a", "audio": f"$(touch {marker}).wav", "duration": 1, "text": "HI", "speaker": "s"},
        {"id": "b", "audio": f"x.wav; touch {marker}", "duration": 1,
         "text": f"__import__('os').system('touch {marker}')",
         "speaker": "s"},
        {"id": "c", "audio": "`id`.wav", "duration": "1", "text": "HI", "speaker": "s", "__class__": "os.system"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    utterances = read_manifest(str(manifest))
    assert [u.audio for u in utterances] == [os.path.join(str(tmp_path), line["audio"]) for line in lines]
    assert all(isinstance(getattr(u, f), str) for u in utterances for f in ("id", "audio", "text", "speaker"))
    with pytest.raises(SpeechkitError, match="no utterance could be scored"):
        evaluate(_Silent(), utterances, out_dir=str(tmp_path / "report"))
    assert not marker.exists()


class _Silent:
    """A recogniser stand-in that answers only the warm-up call: none of the manifest's files exists."""

    frontend = FrontendConfig()
    vocabulary = Vocabulary()

    def log_probs(self, audios):
        return [np.zeros((1, self.vocabulary.size), np.float32) for _ in audios]


def test_model_file_with_embedded_code_is_refused(tmp_path):
    import keras

    from speechkit.asr.inference import load_run
    from speechkit.runs import RunDir

    marker = str(tmp_path / "pwned")
    features = keras.Input((None, 80))
    lengths = keras.Input((), dtype="int32")
    touched = keras.layers.Lambda(lambda x: x + 0 * len(open(marker, "w").name))(features)
    keras.Model([features, lengths], [keras.layers.Dense(29)(touched), lengths]).save(str(tmp_path / "model.keras"))
    os.remove(marker)
    run = RunDir(tmp_path)
    run.save_config({"frontend": FrontendConfig(kind="mel").to_dict()})
    run.save_vocabulary(Vocabulary())
    with pytest.raises(SpeechkitError, match=r"model\.keras: cannot load the model .*unsafe"):
        load_run(str(tmp_path))
    assert not os.path.exists(marker)
