"""YAML config loading into frozen dataclasses that reject unknown keys."""

import dataclasses
import os
import typing

import yaml

from speechkit.errors import ConfigError

__all__ = ["Config", "from_dict", "to_dict", "load_yaml", "save_yaml", "atomic_write_text"]


def from_dict(cls, data, *, source=None):
    """Build dataclass ``cls`` from a mapping, recursing into nested dataclass fields.

    Unknown keys raise ``ConfigError`` naming the key and the source, so a typo in a YAML
    preset never silently falls back to a default.
    """
    where = f" in {source}" if source else ""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}{where} must be a mapping, received: {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) for {cls.__name__}{where}: {unknown}; expected some of {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            value = from_dict(hint, value, source=source)
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid {cls.__name__}{where}: {err}") from None


def to_dict(config):
    """Plain-dict (YAML-safe) form of a dataclass config; tuples become lists."""

    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def load_yaml(path):
    """Load a YAML file with ``yaml.safe_load``; errors name the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file does not exist") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    path = os.fspath(path)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_yaml(path, data):
    """Atomically write ``data`` (a dict or dataclass) as YAML."""
    if dataclasses.is_dataclass(data):
        data = to_dict(data)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


class Config:
    """Base of speechkit's frozen config dataclasses: a YAML round trip that rejects unknown keys.

    Subclasses are ``@dataclasses.dataclass(frozen=True)`` and check their fields in
    ``__post_init__``; nested dataclass fields are read and written recursively.

    Example:
        >>> import dataclasses
        >>> @dataclasses.dataclass(frozen=True)
        ... class Tiny(Config):
        ...     size: int = 1
        >>> Tiny.from_dict({"size": 2}).to_dict()
        {'size': 2}
    """

    def to_dict(self):
        """Plain-dict (YAML-safe) form; tuples become lists."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data, *, source=None):
        """Build from a mapping; unknown keys raise ``ConfigError`` naming ``source``."""
        return from_dict(cls, data, source=source)

    @classmethod
    def load(cls, path):
        """Read a YAML file; errors name the file."""
        return cls.from_dict(load_yaml(path), source=os.fspath(path))

    def save(self, path):
        """Atomically write the YAML form to ``path``."""
        save_yaml(path, self)
