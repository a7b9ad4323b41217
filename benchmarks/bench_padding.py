"""Padding efficiency (real frames / padded frames) of SortaGrad, bucketed and naive batching on a manifest.

Usage: python benchmarks/bench_padding.py data/mini/train.jsonl [--batch-size 16] [--epochs 3]
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _row import row  # noqa: E402
from speechkit.data import pipeline  # noqa: E402
from speechkit.data.manifest import read_manifest  # noqa: E402
from speechkit.frontend import FrontendConfig  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("manifest")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3, help="bucketed and naive epochs to average")
    args = parser.parse_args()
    utts = read_manifest(args.manifest)
    durations = [u.duration for u in utts]
    frames = pipeline.frame_counts(utts, FrontendConfig())
    batch_size, epochs = args.batch_size, range(1, args.epochs + 1)
    sortagrad = pipeline.padding_efficiency(frames, pipeline.plan_batches(durations, batch_size=batch_size, epoch=0))
    bucketed = np.mean([pipeline.padding_efficiency(frames, pipeline.plan_batches(durations, batch_size=batch_size,
                                                                                  epoch=e)) for e in epochs])
    naive = np.mean([pipeline.padding_efficiency(frames, pipeline.naive_batches(len(utts), batch_size=batch_size,
                                                                                epoch=e)) for e in epochs])
    print(row(f"{len(utts)} utts, batch {args.batch_size}: SortaGrad epoch {sortagrad:.1%}, "
              f"bucketed {bucketed:.1%}, naive {naive:.1%}"))


if __name__ == "__main__":
    main()
