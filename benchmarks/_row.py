"""One BENCHMARKS.md row: date, revision, machine, command, figures."""

import datetime
import os
import platform
import subprocess
import sys

__all__ = ["revision", "machine", "row"]


def revision():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine():
    return f"{os.cpu_count()}-core CPU ({platform.machine()})"


def row(figures):
    command = "python " + " ".join(sys.argv)
    return f"| {datetime.date.today().isoformat()} | {revision()} | {machine()} | `{command}` | {figures} |"
