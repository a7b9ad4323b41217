"""Exception hierarchy: every error a user can trigger names the file or argument and the problem."""

__all__ = ["SpeechkitError", "ConfigError", "AudioError", "TextError", "ManifestError", "KenLMError", "ExportError",
           "SynthesisError", "RunError"]


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


class KenLMError(SpeechkitError):
    """A KenLM tool is missing or failed, or an LM directory is incomplete."""


class ExportError(SpeechkitError):
    """An export cannot be written, loaded, or does not match the model it came from."""


class SynthesisError(SpeechkitError):
    """A speech engine is missing, or the corpus cannot be synthesised as asked."""


class RunError(SpeechkitError):
    """A run directory is missing a file, holds a different run, or its files disagree."""
