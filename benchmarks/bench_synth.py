"""Wall and CPU time of synthesising the default mini corpus (about 1 h train, 10 min dev, 10 min test).

Usage: python benchmarks/bench_synth.py [--out DIR] [--jobs N] [--seed 0] [--train-hours 1.0]

Without ``--out`` the corpus goes to a temporary folder that is deleted afterwards. An existing
``--out`` with the same settings is resumed, so time a fresh folder for a figure worth reporting.
"""

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _row import row  # noqa: E402
from speechkit.data.mini import synth_mini  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="corpus folder; default a temporary one, deleted afterwards")
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-hours", type=float, default=1.0)
    parser.add_argument("--dev-minutes", type=float, default=10.0)
    parser.add_argument("--test-minutes", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    out = args.out or tempfile.mkdtemp(prefix="bench-synth-")
    try:
        started = time.time()
        summary = synth_mini(out, seed=args.seed, train_hours=args.train_hours, dev_minutes=args.dev_minutes,
                             test_minutes=args.test_minutes, jobs=args.jobs)
        wall = time.time() - started
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    run = summary["last_run"]
    splits = ", ".join(f"{name} {s['hours']:.3f} h ({s['utterances']} utts, {s['speakers']} spk, "
                       f"mean {s['mean_seconds']:.2f} s)" for name, s in summary["splits"].items())
    print(row(f"wall {wall:.0f} s, CPU {run['cpu_seconds']:.0f} s, jobs {run['jobs']}, "
              f"synthesised {run['synthesized']} (reused {run['existing']}, failed {run['failed']}); {splits}"))


if __name__ == "__main__":
    main()
