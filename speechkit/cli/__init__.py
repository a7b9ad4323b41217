"""The ``speechkit`` command line: one verb per library entry point.

Each command module defines ``register(commands, groups)`` and imports TensorFlow lazily inside its
handlers, so ``speechkit --help`` stays fast. Usage errors exit 2, runtime errors exit 1.
"""

import argparse
import importlib
import logging
import os
import sys

from speechkit.errors import SpeechkitError

__all__ = ["main", "build_parser"]

_COMMAND_MODULES = (
    "speechkit.cli.data",
    "speechkit.cli.asr",
    "speechkit.cli.align",
    "speechkit.cli.lm",
    "speechkit.cli.vocoder",
    "speechkit.cli.export",
    "speechkit.cli.report",
    "speechkit.cli.score",
    "speechkit.cli.models",
    "speechkit.cli.music",
    "speechkit.cli.tts",
)
_GROUPS = {
    "data": "prepare corpora and manifests",
    "train": "train a model from a YAML preset",
    "lm": "build and tune KenLM language models",
    "export": "export trained models as SavedModels",
}


def build_parser():
    parser = argparse.ArgumentParser(prog="speechkit", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups = {}
    for name, help_text in _GROUPS.items():
        group = commands.add_parser(name, help=help_text)
        groups[name] = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        module.register(commands, groups)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        result = args.func(args)
    except SpeechkitError as err:
        print(f"speechkit: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("speechkit: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it is None or the help text already states it."""

    def _get_help_string(self, action):
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_defaults_help(parser):
    """Make ``--help`` show every option's default (the ESPnet habit)."""
    parser.formatter_class = _DefaultsHelpFormatter
    return parser
