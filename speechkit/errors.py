"""Exception hierarchy: every error a user can trigger names the file or argument and the problem."""

__all__ = ["SpeechkitError", "ConfigError", "AudioError", "TextError", "ManifestError"]


class SpeechkitError(Exception):
    """Base class for errors raised by speechkit; the CLI turns them into exit code 1."""


class ConfigError(SpeechkitError, ValueError):
    """A configuration value or file is invalid."""


class AudioError(SpeechkitError, ValueError):
    """An audio file is missing, unreadable, empty, or not audio."""


class TextError(SpeechkitError, ValueError):
    """A transcript or text corpus cannot be used (for example, it normalises to nothing)."""


class ManifestError(SpeechkitError, ValueError):
    """A manifest line is not valid JSON or lacks required fields."""
