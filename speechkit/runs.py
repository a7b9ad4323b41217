"""The run directory: the one door for a training run's files.

A run directory holds everything a trained model needs to be used, resumed or reported on:

- ``config.yaml``: the resolved training config. The front end is stored here only, in its
  ``frontend`` section, and ``RunDir.frontend`` is the one place a run's front end is parsed.
- ``model.keras``: the trained model, which also carries its own config and front end.
- ``vocabulary.json`` (ASR) or ``speakers.json`` (vocoder): what the output classes or the speaker
  embedding rows mean.
- ``decode.yaml`` (ASR, written by LM tuning): the tuned decoding options; an LM path inside the
  run is stored relative to it, so a run and its LM can move together.
- ``weights.npz`` (released models, ``speechkit.models``): the weights alone, in float32 or
  float16, loaded into the float32 model built from ``config.yaml``; used when there is no
  ``model.keras``. ``card.json`` and ``README.md`` describe a released model.
- ``command.txt``: every command line that wrote to the run, one per line.
- ``train_log.csv`` (one row per epoch), ``batches.jsonl`` (one line per step), ``tensorboard/``,
  ``backup/`` (resume state while training is unfinished), ``skipped.json`` (training items left
  out and why), ``train_summary.json`` and ``DONE`` (written last, when training ends normally).

Every write is atomic (a temporary file in the same directory, then ``os.replace``), so a reader or
a killed writer never leaves half a file under a real name; ``RunDir.remove_partial_files`` clears
the temporary files a kill can leave. Every read checks what it reads and raises ``RunError``
naming the file and the problem.

Example:
    >>> import tempfile
    >>> run = RunDir(tempfile.mkdtemp(), create=True)
    >>> path = run.write_json(RunDir.SUMMARY, {"epochs_done": 3})
    >>> run.read_json(RunDir.SUMMARY)
    {'epochs_done': 3}
"""

import dataclasses
import json
import logging
import os
import re
import shlex
import sys
import zipfile

import keras
import numpy as np
import yaml

from speechkit.asr.beam import load_decode_config, save_decode_config
from speechkit.config import Config, atomic_write_text, to_dict
from speechkit.errors import ConfigError, RunError
from speechkit.frontend import FrontendConfig
from speechkit.text import Vocabulary

__all__ = ["RunDir", "WEIGHT_DTYPES"]

logger = logging.getLogger(__name__)

_PARTIAL = re.compile(r"\.tmp\.\d+(\.keras|\.npz)?$|^tmp-\d+\.weights\.h5$")
_MISSING = "<missing>"
_FLOAT16_MAX = float(np.finfo(np.float16).max)
WEIGHT_DTYPES = ("float32", "float16")


def _flatten(data, prefix=""):
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are leaves."""
    out = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, prefix=f"{path}."))
        else:
            out[path] = value
    return out


def _is_mutable(path, mutable):
    return any(path == m or path.startswith(f"{m}.") for m in mutable)


class RunDir:
    """A training run's directory: its file layout, atomic writes, and checked reads.

    Args:
        path: str or os.PathLike, the run directory.
        create: bool, create the directory (and its parents) when missing; otherwise a missing
            directory raises.

    Attributes:
        path: str, the run directory.

    Raises:
        RunError: ``path`` is not a directory and ``create`` is false, or it is a file.
    """

    CONFIG = "config.yaml"
    MODEL = "model.keras"
    VOCABULARY = "vocabulary.json"
    SPEAKERS = "speakers.json"
    DECODE = "decode.yaml"
    COMMAND = "command.txt"
    DONE = "DONE"
    SUMMARY = "train_summary.json"
    TRAIN_LOG = "train_log.csv"
    BATCHES = "batches.jsonl"
    TENSORBOARD = "tensorboard"
    BACKUP = "backup"
    SKIPPED = "skipped.json"
    WEIGHTS = "weights.npz"
    CARD = "card.json"
    README = "README.md"

    def __init__(self, path, *, create=False):
        self.path = os.fspath(path)
        if create:
            try:
                os.makedirs(self.path, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise RunError(f"{self.path}: exists and is not a directory") from None
        elif not os.path.isdir(self.path):
            raise RunError(f"{self.path}: no such run directory")

    def __repr__(self):
        return f"RunDir({self.path!r})"

    def __fspath__(self):
        return self.path

    # -- Layout -- #

    def file(self, name):
        """str, the path of ``name`` inside the run."""
        return os.path.join(self.path, name)

    def exists(self, name):
        """bool, whether ``name`` (a file or directory) exists in the run."""
        return os.path.exists(self.file(name))

    @property
    def backup_dir(self):
        """str, ``RUN/backup``: training state for resuming; not created here."""
        return self.file(self.BACKUP)

    @property
    def tensorboard_dir(self):
        """str, ``RUN/tensorboard``: TensorBoard event files; not created here."""
        return self.file(self.TENSORBOARD)

    def _require(self, name, what=None):
        path = self.file(name)
        if not os.path.isfile(path):
            hint = f" ({what})" if what else ""
            raise RunError(f"{path}: missing{hint}; is {self.path} a finished training run?")
        return path

    def remove_partial_files(self):
        """Delete temporary files that a killed atomic write left behind (in the run and ``backup/``).

        That is every ``NAME.tmp.PID`` of this class's writers and the ``tmp-PID.weights.h5`` of the
        training checkpoints (``speechkit.training.Checkpoint``).

        Call it only while no other process writes to the run, for example when training starts.

        Returns:
            list of str, the removed paths.
        """
        removed = []
        for folder in (self.path, self.backup_dir):
            if not os.path.isdir(folder):
                continue
            for entry in os.scandir(folder):
                if entry.is_file() and _PARTIAL.search(entry.name):
                    os.remove(entry.path)
                    removed.append(entry.path)
        if removed:
            logger.info("%s: removed %d partial file(s) left by an interrupted write", self.path, len(removed))
        return removed

    # -- Text and JSON -- #

    def write_text(self, name, text):
        """Atomically write ``text`` (str) to ``RUN/name``; returns the path."""
        path = self.file(name)
        atomic_write_text(path, text)
        return path

    def read_text(self, name):
        """str contents of ``RUN/name``.

        Raises:
            RunError: the file is missing or unreadable.
        """
        path = self._require(name)
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError) as err:
            raise RunError(f"{path}: unreadable ({err})") from None

    def write_json(self, name, data):
        """Atomically write ``data`` as indented JSON to ``RUN/name``; returns the path."""
        return self.write_text(name, json.dumps(data, indent=2) + "\n")

    def read_json(self, name):
        """The parsed JSON of ``RUN/name``.

        Raises:
            RunError: the file is missing, unreadable or not valid JSON.
        """
        text = self.read_text(name)
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise RunError(f"{self.file(name)}: not valid JSON ({err})") from None

    def _read_yaml(self, name):
        text = self.read_text(name)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise RunError(f"{self.file(name)}: not valid YAML ({err})") from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise RunError(f"{self.file(name)}: expected a mapping, found {type(data).__name__}")
        return data

    # -- Config and front end -- #

    def save_config(self, config, *, mutable=()):
        """Write the resolved config to ``config.yaml``, refusing to mix two different runs.

        Args:
            config: a config dataclass (``speechkit.config.Config``) or a plain dict.
            mutable: iterable of dotted field paths (``"epochs"``, ``"train.epochs"``, or a whole
                section such as ``"train"``) that may change between invocations of one run, so a
                finished run can be extended; the new values are written.

        Returns:
            str, the path of ``config.yaml``.

        A field added to ``config``'s class after ``config.yaml`` was written takes its default in the
        comparison (the stored file is read as this version reads it), so a run can be resumed by a
        newer speechkit whose new options keep the old behaviour by default.

        Raises:
            RunError: ``config.yaml`` exists and differs in another field; the message lists each
                differing field with its old and new value.
        """
        data = to_dict(config) if dataclasses.is_dataclass(config) else dict(config)
        if self.exists(self.CONFIG):
            stored = self._read_yaml(self.CONFIG)
            if isinstance(config, Config):
                try:
                    stored = to_dict(type(config).from_dict(stored, source=self.file(self.CONFIG)))
                except ConfigError:
                    pass
            old, new = _flatten(stored), _flatten(data)
            diffs = [f"{key}: {old.get(key, _MISSING)!r} != {new.get(key, _MISSING)!r}"
                     for key in sorted(set(old) | set(new))
                     if old.get(key, _MISSING) != new.get(key, _MISSING) and not _is_mutable(key, mutable)]
            if diffs:
                raise RunError(f"{self.path} holds a run with a different config: " + "; ".join(diffs))
        return self.write_text(self.CONFIG, yaml.safe_dump(data, sort_keys=False))

    def read_config(self):
        """dict, the run's ``config.yaml`` as a plain mapping, for readers that need one section only.

        Raises:
            RunError: the file is missing, not YAML, or not a mapping.
        """
        return self._read_yaml(self.CONFIG)

    def load_config(self, cls):
        """The run's ``config.yaml`` as ``cls``, a ``speechkit.config.Config`` subclass.

        Raises:
            RunError: the file is missing or not YAML; ConfigError: it does not fit ``cls``
                (the message names the file).
        """
        return cls.from_dict(self._read_yaml(self.CONFIG), source=self.file(self.CONFIG))

    def frontend(self):
        """The run's ``FrontendConfig``, from the ``frontend`` section of ``config.yaml``.

        Raises:
            RunError: ``config.yaml`` is missing or has no ``frontend`` section; ConfigError: the
                section is invalid.
        """
        data = self.read_config()
        if "frontend" not in data:
            raise RunError(f"{self.file(self.CONFIG)}: no frontend section")
        return FrontendConfig.from_dict(data["frontend"], source=self.file(self.CONFIG))

    def check_frontend(self, frontend, *, source=None):
        """Check ``frontend`` (for example a loaded model's) against the run's; returns the run's.

        Raises:
            ConfigError: a field differs; the message lists them and names ``source`` (default:
                ``config.yaml``).
        """
        saved = self.frontend()
        saved.check_matches(frontend, source=source or self.file(self.CONFIG))
        return saved

    # -- Command, summary, done marker -- #

    def append_command(self, command=None):
        """Append a command line to ``command.txt`` (one line per invocation, resumes included).

        Args:
            command: str, or None for the current process's ``sys.argv``, shell-quoted.
        """
        if command is None:
            command = shlex.join(sys.argv)
        previous = self.read_text(self.COMMAND) if self.exists(self.COMMAND) else ""
        if previous and not previous.endswith("\n"):
            previous += "\n"
        return self.write_text(self.COMMAND, previous + command.rstrip("\n") + "\n")

    def mark_done(self, summary):
        """Write ``summary`` (a JSON-safe dict) to ``train_summary.json``, then the ``DONE`` marker."""
        self.write_json(self.SUMMARY, summary)
        self.write_json(self.DONE, summary)

    def is_done(self):
        """bool, whether training ended normally (``DONE`` exists)."""
        return self.exists(self.DONE)

    def clear_done(self):
        """Remove ``DONE``, so the run counts as unfinished (for example before training further)."""
        try:
            os.remove(self.file(self.DONE))
        except FileNotFoundError:
            pass

    def summary(self):
        """dict from ``train_summary.json``; raises RunError when missing or invalid."""
        return self.read_json(self.SUMMARY)

    # -- Model -- #

    def save_model(self, model, name=MODEL):
        """Atomically save a Keras model as ``RUN/name`` (a ``.keras`` file); returns the path.

        The model is written under a temporary name in the run directory and renamed, so
        ``RUN/name`` is always a whole model.
        """
        path = self.file(name)
        stem = name[:-len(".keras")] if name.endswith(".keras") else name
        tmp = self.file(f"{stem}.tmp.{os.getpid()}.keras")
        try:
            model.save(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    def load_model(self, name=MODEL, *, cls=None):
        """Load ``RUN/name`` with ``keras.saving.load_model(compile=False)``.

        The custom layers must be registered, that is, their module imported (for example
        ``speechkit.asr.deepspeech2``).

        Args:
            name: str, the model file in the run.
            cls: optional class the model must be an instance of.

        Raises:
            RunError: the file is missing, cannot be loaded, or is not a ``cls``.
        """
        path = self._require(name, "the trained model")
        try:
            model = keras.saving.load_model(path, compile=False)
        except (ValueError, OSError, TypeError, KeyError) as err:
            raise RunError(f"{path}: cannot load the model ({err})") from None
        if cls is not None and not isinstance(model, cls):
            raise RunError(f"{path}: not a {cls.__name__} (found {type(model).__name__})")
        return model

    def save_weights(self, model, *, dtype="float32"):
        """Atomically write the weights of ``model`` alone to ``weights.npz``.

        The arrays are stored in ``model.weights`` order, with their paths and shapes, so that
        ``load_weights`` can check them against a model rebuilt from ``config.yaml``. With
        ``dtype="float16"`` the floating-point arrays are stored at half size; an array that float16
        cannot hold (a value above 65504) stays float32, and non-float arrays keep their type.

        Args:
            model: a built Keras model.
            dtype: ``"float32"`` or ``"float16"``, the storage type of the floating-point arrays.

        Returns:
            dict: ``path`` (str), ``bytes`` (int), ``arrays`` (int), ``kept_float32`` (list of str,
            the arrays float16 could not hold).

        Raises:
            ConfigError: ``dtype`` is not one of ``WEIGHT_DTYPES``.
        """
        if dtype not in WEIGHT_DTYPES:
            raise ConfigError(f"weights dtype must be one of {WEIGHT_DTYPES}, received: {dtype!r}")
        arrays, kept = {}, []
        names = [v.path for v in model.weights]
        for i, (name, value) in enumerate(zip(names, model.get_weights())):
            value = np.asarray(value)
            if dtype == "float16" and np.issubdtype(value.dtype, np.floating):
                if value.size and np.max(np.abs(value)) > _FLOAT16_MAX:
                    kept.append(name)
                else:
                    value = value.astype(np.float16)
            arrays[f"w{i:04d}"] = value
        arrays["names"] = np.array(names, dtype=str)
        path = self.file(self.WEIGHTS)
        tmp = self.file(f"weights.tmp.{os.getpid()}.npz")
        try:
            np.savez_compressed(tmp, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return {"path": path, "bytes": os.path.getsize(path), "arrays": len(names), "kept_float32": kept}

    def load_weights(self, model):
        """Load ``weights.npz`` into ``model`` (built, usually from ``config.yaml``), cast to its dtypes.

        Raises:
            RunError: the file is missing, corrupt or truncated, or its arrays do not fit the model
                (count or shape); the message names the file.
        """
        path = self._require(self.WEIGHTS, "the model weights")
        variables = model.weights
        try:
            with np.load(path, allow_pickle=False) as data:
                names = [str(n) for n in data["names"]]
                if len(names) != len(variables):
                    raise RunError(f"{path}: holds {len(names)} weight arrays, the model built from "
                                   f"{self.file(self.CONFIG)} has {len(variables)}; the files belong to different "
                                   "models")
                values = []
                for i, (name, variable) in enumerate(zip(names, variables)):
                    value = data[f"w{i:04d}"]
                    if tuple(value.shape) != tuple(variable.shape):
                        raise RunError(f"{path}: weight {name} has shape {tuple(value.shape)}, the model built from "
                                       f"{self.file(self.CONFIG)} expects {tuple(variable.shape)} ({variable.path})")
                    values.append(value.astype(variable.dtype))
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
            raise RunError(f"{path}: cannot read the weights, the file is corrupt or truncated "
                           f"({type(err).__name__}: {err})") from None
        model.set_weights(values)
        return model

    # -- Vocabulary, speakers, decoding -- #

    def save_vocabulary(self, vocabulary):
        """Write a ``speechkit.text.Vocabulary`` to ``vocabulary.json``; returns the path."""
        return self.write_json(self.VOCABULARY, vocabulary.to_dict())

    def vocabulary(self):
        """The run's ``Vocabulary``; raises RunError when ``vocabulary.json`` is missing or invalid."""
        data = self.read_json(self.VOCABULARY)
        try:
            return Vocabulary.from_dict(data)
        except (TypeError, KeyError, ValueError) as err:
            raise RunError(f"{self.file(self.VOCABULARY)}: not a vocabulary ({type(err).__name__}: {err})") from None

    def save_speakers(self, names):
        """Write speaker names in embedding order to ``speakers.json``; returns the path."""
        return self.write_text(self.SPEAKERS, json.dumps(list(names), indent=1) + "\n")

    def speakers(self):
        """list of str, the speaker names in embedding order; ``[]`` when the run has no speakers.

        Raises:
            RunError: ``speakers.json`` exists but is not a JSON list of strings.
        """
        if not self.exists(self.SPEAKERS):
            return []
        names = self.read_json(self.SPEAKERS)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise RunError(f"{self.file(self.SPEAKERS)}: expected a JSON list of speaker names")
        return names

    def decode_config(self):
        """The run's ``DecodeConfig`` from ``decode.yaml``; greedy when there is none.

        A relative ``lm`` path is resolved against the run directory
        (``speechkit.asr.beam.load_decode_config``).

        Raises:
            ConfigError: the file is not valid YAML or not a valid decode config (names the file).
        """
        return load_decode_config(self.path)

    def save_decode_config(self, config):
        """Atomically write a ``DecodeConfig`` to ``decode.yaml``; returns the path.

        The LM path is stored relative to the run when the LM lies inside it, absolute otherwise
        (``speechkit.asr.beam.save_decode_config``), so a run and its LM can move together.
        """
        return save_decode_config(self.path, config)
