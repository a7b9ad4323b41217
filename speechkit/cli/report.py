"""``speechkit report EXP/``: the recipe's report page."""

from speechkit.cli import add_defaults_help

__all__ = ["register"]


def register(commands, groups):
    p = add_defaults_help(commands.add_parser(
        "report", help="write EXP/report.md and report.html from a recipe's outputs"))
    p.add_argument("exp", help="experiment folder written by a recipe (e.g. exp/mini)")
    p.set_defaults(func=_report)


def _report(args):
    import os

    from speechkit.errors import SpeechkitError
    from speechkit.report import write_report

    if not os.path.isdir(args.exp):
        raise SpeechkitError(f"{args.exp}: experiment folder does not exist")
    write_report(args.exp)
    print(f"{args.exp}/report.md\n{args.exp}/report.html")
