"""Confidence intervals and matched-pairs significance tests for error rates.

- ``bootstrap_sums`` resamples utterances with replacement (the same resamples for every system, which is
  what makes the comparison *paired*), and ``rate_interval`` reads percentile intervals off the sums.
- ``paired_bootstrap``: Bisani and Ney (2004), "Bootstrap estimates for confidence intervals in ASR
  performance evaluation", ICASSP: the distribution of the WER difference over resamples gives its
  confidence interval and the probability that one system is better.
- ``mapsswe``: the Matched Pairs Sentence-Segment Word Error test of Gillick and Cox (1989), as in NIST
  sclite: the reference is cut into segments at runs of at least ``min_good`` words that both systems got
  right, and the per-segment differences in error counts are tested for a zero mean with a normal test.
- ``sign_test``: per utterance, which system made fewer errors; ties are dropped and the wins are tested
  against a fair coin (exact binomial).
"""

import math

import numba
import numpy as np
from scipy import stats

from speechkit.scoring.align import OP_CORRECT, OP_INS

__all__ = ["bootstrap_sums", "rate_interval", "paired_bootstrap", "mapsswe", "sign_test"]


def bootstrap_sums(values, *, resamples=1000, seed=0, chunk=50):
    """Column sums of ``values`` over bootstrap resamples of its rows (utterances).

    Args:
        values: float or int array [utterances, columns], for example each system's errors, the reference
            words and the reference characters of each utterance.
        resamples: int >= 1.
        seed: int; the same seed gives the same resamples for any set of columns, so intervals of
            different systems and their differences come from one set of resamples.
        chunk: int, resamples drawn at once (bounds memory at ``chunk * utterances`` ints).

    Returns:
        float64 [resamples, columns].
    """
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or len(values) == 0:
        raise ValueError(f"values must be a non-empty 2-D array [utterances, columns], received shape {values.shape}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, received: {resamples}")
    n = len(values)
    rng = np.random.default_rng(seed)
    out = np.empty((resamples, values.shape[1]))
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        draws = rng.integers(0, n, size=(rows, n), dtype=np.int32)
        weights = np.empty((rows, n))
        for r in range(rows):
            weights[r] = np.bincount(draws[r], minlength=n)
        out[start:start + rows] = weights @ values
    return out


def rate_interval(error_sums, length_sums, *, confidence=0.95):
    """Percentile interval of a corpus rate (total errors / total length) over resamples.

    Args:
        error_sums, length_sums: float [resamples], from ``bootstrap_sums``.
        confidence: float in (0, 1).

    Returns:
        (low, high) floats.
    """
    rates = np.asarray(error_sums) / np.maximum(np.asarray(length_sums), 1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(rates, [alpha, 1.0 - alpha])
    return float(low), float(high)


def paired_bootstrap(errors_a, errors_b, lengths, *, confidence=0.95):
    """Paired bootstrap comparison of two systems (Bisani and Ney 2004) from shared resamples.

    Args:
        errors_a, errors_b: float [resamples], each system's resampled error totals (same resamples).
        lengths: float [resamples], the resampled reference lengths.
        confidence: float in (0, 1).

    Returns:
        dict: ``delta_interval`` (low, high) of rate(A) - rate(B); ``prob_a_better`` the share of resamples
        where A made fewer errors (ties count half); ``p_value`` two-sided, ``2 * min(P(A better),
        P(B better))`` capped at 1; ``significant`` whether the interval excludes 0.
    """
    lengths = np.maximum(np.asarray(lengths), 1)
    delta = (np.asarray(errors_a) - np.asarray(errors_b)) / lengths
    alpha = (1.0 - confidence) / 2.0
    low, high = (float(x) for x in np.quantile(delta, [alpha, 1.0 - alpha]))
    better = float(np.mean(delta < 0) + 0.5 * np.mean(delta == 0))
    return {"delta_interval": [low, high], "prob_a_better": better,
            "p_value": min(1.0, 2.0 * min(better, 1.0 - better)), "significant": bool(low > 0 or high < 0)}


@numba.njit(cache=True)
def _segments(ops_a, offsets_a, ops_b, offsets_b, ref_lengths, min_good, out_a, out_b):
    n_pairs = ref_lengths.shape[0]
    max_n = 0
    for i in range(n_pairs):
        max_n = max(max_n, ref_lengths[i])
    wrong_a = np.zeros(max_n, np.int64)
    wrong_b = np.zeros(max_n, np.int64)
    ins_a = np.zeros(max_n + 1, np.int64)
    ins_b = np.zeros(max_n + 1, np.int64)
    sep = np.zeros(max_n, np.bool_)
    k = 0
    for i in range(n_pairs):
        n = ref_lengths[i]
        for side in range(2):
            ops = ops_a if side == 0 else ops_b
            lo = offsets_a[i] if side == 0 else offsets_b[i]
            hi = offsets_a[i + 1] if side == 0 else offsets_b[i + 1]
            wrong = wrong_a if side == 0 else wrong_b
            ins = ins_a if side == 0 else ins_b
            wrong[:n] = 0
            ins[:n + 1] = 0
            pos = 0
            for j in range(lo, hi):
                op = ops[j]
                if op < 0:
                    break
                if op == OP_INS:
                    ins[pos] += 1
                else:
                    if op != OP_CORRECT:
                        wrong[pos] = 1
                    pos += 1
        j = 0
        while j < n:
            if wrong_a[j] == 0 and wrong_b[j] == 0:
                e = j + 1
                while e < n and wrong_a[e] == 0 and wrong_b[e] == 0 and ins_a[e] == 0 and ins_b[e] == 0:
                    e += 1
                good = e - j >= min_good
                for t in range(j, e):
                    sep[t] = good
                j = e
            else:
                sep[j] = False
                j += 1
        seg_a = 0
        seg_b = 0
        for g in range(n + 1):
            seg_a += ins_a[g]
            seg_b += ins_b[g]
            if g == n or sep[g]:
                if seg_a > 0 or seg_b > 0:
                    out_a[k] = seg_a
                    out_b[k] = seg_b
                    k += 1
                seg_a = 0
                seg_b = 0
            else:
                seg_a += wrong_a[g]
                seg_b += wrong_b[g]
    return k


def mapsswe(alignment_a, alignment_b, *, min_good=2):
    """Matched Pairs Sentence-Segment Word Error test (Gillick and Cox 1989), as sclite's MAPSSWE.

    Args:
        alignment_a, alignment_b: ``speechkit.scoring.align.CorpusAlignment`` of both systems against the
            same references, in the same utterance order.
        min_good: int >= 1, correct words (in both systems, with no insertion between them) that end a segment.

    Returns:
        dict: ``segments`` (count), ``mean_difference`` (errors of A minus B per segment), ``z``, ``p_value``
        (two-sided, normal), ``significant`` (p < 0.05).

    Raises:
        ValueError: the alignments do not share their references.
    """
    if not np.array_equal(alignment_a.ref_lengths, alignment_b.ref_lengths):
        raise ValueError("both alignments must cover the same references in the same order")
    size = int(alignment_a.ref_lengths.sum()) + len(alignment_a.counts)
    out_a = np.zeros(size, np.int64)
    out_b = np.zeros(size, np.int64)
    k = _segments(alignment_a.ops, alignment_a.op_offsets, alignment_b.ops, alignment_b.op_offsets,
                  alignment_a.ref_lengths, int(min_good), out_a, out_b)
    diff = (out_a[:k] - out_b[:k]).astype(np.float64)
    result = {"segments": int(k), "mean_difference": float(diff.mean()) if k else 0.0}
    if k < 2:
        z, p = 0.0, 1.0
    else:
        sd = float(diff.std(ddof=1))
        mean = float(diff.mean())
        if sd == 0.0:
            z, p = (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
        else:
            z = mean / (sd / math.sqrt(k))
            p = float(2.0 * stats.norm.sf(abs(z)))
    result.update(z=float(z), p_value=float(p), significant=bool(p < 0.05))
    return result


def sign_test(errors_a, errors_b):
    """Two-sided sign test on per-utterance error counts.

    Args:
        errors_a, errors_b: int [utterances], each system's errors on the same utterances.

    Returns:
        dict: ``a_better`` and ``b_better`` (utterances where that system made fewer errors), ``ties``,
        ``p_value`` (exact binomial, two-sided), ``significant`` (p < 0.05).
    """
    errors_a, errors_b = np.asarray(errors_a), np.asarray(errors_b)
    a_better = int(np.sum(errors_a < errors_b))
    b_better = int(np.sum(errors_a > errors_b))
    ties = len(errors_a) - a_better - b_better
    trials = a_better + b_better
    p = 1.0 if trials == 0 else float(stats.binomtest(a_better, trials, 0.5).pvalue)
    return {"a_better": a_better, "b_better": b_better, "ties": ties, "p_value": p, "significant": bool(p < 0.05)}
