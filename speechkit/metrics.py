"""Recognition metrics: WER and CER via jiwer, per-utterance error counts and bootstrap confidence intervals."""

import jiwer
import numpy as np

from speechkit.errors import SpeechkitError

__all__ = ["wer", "cer", "error_counts", "bootstrap_ci"]


def _check(refs, hyps):
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise SpeechkitError(f"need as many hypotheses as references, received {len(hyps)} and {len(refs)}")
    if not refs:
        raise SpeechkitError("need at least one reference")
    empty = [i for i, r in enumerate(refs) if not r.strip()]
    if empty:
        raise SpeechkitError(f"references must not be empty; empty at positions {empty[:10]}")
    return refs, hyps


def wer(refs, hyps):
    """Corpus word error rate: (substitutions + deletions + insertions) / reference words.

    Args:
        refs: sequence of non-empty str, normalised reference transcripts.
        hyps: sequence of str, hypotheses (may be empty), aligned with ``refs``.

    Returns:
        float >= 0 (can exceed 1 with many insertions).
    """
    refs, hyps = _check(refs, hyps)
    return float(jiwer.wer(refs, hyps))


def cer(refs, hyps):
    """Corpus character error rate (spaces count as characters), as ``wer``."""
    refs, hyps = _check(refs, hyps)
    return float(jiwer.cer(refs, hyps))


def error_counts(refs, hyps, *, unit="word"):
    """Per-utterance edit counts and reference lengths, from jiwer's alignments.

    Args:
        refs, hyps: as for ``wer``.
        unit: ``"word"`` or ``"char"``.

    Returns:
        (errors int64 [n], reference_lengths int64 [n], jiwer output). ``errors.sum() /
        reference_lengths.sum()`` equals ``wer`` (or ``cer``).
    """
    refs, hyps = _check(refs, hyps)
    if unit not in ("word", "char"):
        raise SpeechkitError(f"unit must be 'word' or 'char', received: {unit!r}")
    output = jiwer.process_words(refs, hyps) if unit == "word" else jiwer.process_characters(refs, hyps)
    errors, lengths = [], []
    for chunks, ref in zip(output.alignments, output.references):
        n = 0
        for chunk in chunks:
            if chunk.type in ("substitute", "delete"):
                n += chunk.ref_end_idx - chunk.ref_start_idx
            elif chunk.type == "insert":
                n += chunk.hyp_end_idx - chunk.hyp_start_idx
        errors.append(n)
        lengths.append(len(ref))
    return np.asarray(errors, np.int64), np.asarray(lengths, np.int64), output


def bootstrap_ci(refs, hyps, metric="wer", n=1000, seed=0, confidence=0.95):
    """Percentile bootstrap confidence interval of a corpus error rate, resampling utterances.

    Each of ``n`` resamples draws utterances with replacement and recomputes the corpus rate
    (total errors over total reference length), so long utterances weigh as they do in the rate.

    Args:
        refs, hyps: as for ``wer``.
        metric: ``"wer"``, ``"cer"``, or the function ``wer`` or ``cer``.
        n: int > 0, resamples.
        seed: int, the result is deterministic for a seed.
        confidence: float in (0, 1).

    Returns:
        (low, high) floats.
    """
    names = {wer: "word", cer: "char", "wer": "word", "cer": "char"}
    if metric not in names:
        raise SpeechkitError(f"metric must be 'wer', 'cer' or one of those functions, received: {metric!r}")
    if n < 1 or not 0 < confidence < 1:
        raise SpeechkitError(f"need n >= 1 and 0 < confidence < 1, received: n={n}, confidence={confidence}")
    errors, lengths, _ = error_counts(refs, hyps, unit=names[metric])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(errors), size=(n, len(errors)))
    rates = errors[idx].sum(axis=1) / np.maximum(lengths[idx].sum(axis=1), 1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(rates, [alpha, 1.0 - alpha])
    return float(low), float(high)
