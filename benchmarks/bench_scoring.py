"""Scoring: agreement with NIST sclite on 400 adversarial pairs, and the speed of ``speechkit score`` on 100,000 pairs.

Usage: python benchmarks/bench_scoring.py [--pairs 400] [--speed-pairs 100000]

Agreement: speechkit's, sclite's and jiwer's S/D/I split on the same pairs (``adversarial_pairs``, seed 0), and
how many utterances have all four counts equal to sclite's. Speed: ``speechkit score`` in a fresh process on
two files of book-like pairs (Kaldi text format, 5-25 words, about 15% errors), with the default normaliser,
1,000 bootstrap resamples and the Markdown/JSON/HTML reports; the wall time includes Python start-up and
imports. Goal: 100,000 pairs in <= 10 s on 2 cores.
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

import jiwer

sys.path.insert(0, os.path.dirname(__file__))
from _row import row  # noqa: E402
from speechkit.scoring import adversarial_pairs, crosscheck, write_transcripts  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--speed-pairs", type=int, default=100000)
    args = parser.parse_args()
    _, refs, hyps = adversarial_pairs(args.pairs, seed=0)
    hyps = [h or "" for h in hyps]
    check = crosscheck(refs, hyps)
    ours, theirs = check["speechkit"], check["sclite"]
    nonempty = [i for i, r in enumerate(refs) if r]
    jw = jiwer.process_words([refs[i] for i in nonempty], [hyps[i] for i in nonempty])
    n = ours["N"]
    split = lambda d: f"{d['S'] / n * 100:.1f}/{d['D'] / n * 100:.1f}/{d['I'] / n * 100:.1f}"  # noqa: E731
    jiwer_split = f"{jw.substitutions / n * 100:.1f}/{jw.deletions / n * 100:.1f}/{jw.insertions / n * 100:.1f}"
    jiwer_wer = (jw.substitutions + jw.deletions + jw.insertions) / n

    rng = random.Random(1)
    vocab = [f"word{i}" for i in range(2000)]
    with tempfile.TemporaryDirectory() as tmp:
        ref_rows, hyp_rows = [], []
        for i in range(args.speed_pairs):
            words = rng.choices(vocab, k=rng.randint(5, 25))
            hyp = [w if rng.random() > 0.08 else rng.choice(vocab) for w in words if rng.random() > 0.04]
            ref_rows.append((f"s{i % 500}-u{i:06d}", " ".join(words)))
            hyp_rows.append((f"s{i % 500}-u{i:06d}", " ".join(hyp)))
        ref = write_transcripts(os.path.join(tmp, "ref.txt"), ref_rows, format="kaldi")
        hyp = write_transcripts(os.path.join(tmp, "hyp.txt"), hyp_rows, format="kaldi")
        command = [sys.executable, "-m", "speechkit", "score", ref, hyp, "--out", os.path.join(tmp, "out"),
                   "--speaker-pattern", "^[^-]+"]
        subprocess.run(command[:4] + [ref, ref, "--bootstrap", "10"], check=True, capture_output=True)
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        wall = time.perf_counter() - start
    agree = args.pairs if check["agree"] else f"at most {args.pairs - len(check['mismatches'])}"
    print(row(f"{args.pairs} adversarial pairs, N {n}: speechkit S/D/I {split(ours)}% WER {ours['wer'] * 100:.2f}%; "
              f"sclite {split(theirs)}% WER {theirs['wer'] * 100:.2f}%; "
              f"jiwer {jiwer_split}% WER {jiwer_wer * 100:.2f}%; "
              f"utterances with all four counts equal to sclite's: {agree}/{args.pairs}; "
              f"`speechkit score` on {args.speed_pairs:,} pairs (1 system, 1000 bootstrap resamples, 3 reports): "
              f"{wall:.1f} s wall"))


if __name__ == "__main__":
    main()
