"""Greedy (best-path) CTC decoding."""

import numpy as np

__all__ = ["greedy_decode", "greedy_decode_batch"]


def greedy_decode(log_probs, vocabulary):
    """Best-path CTC decoding: argmax per frame, collapse repeats, drop blanks.

    Spaces are then collapsed and stripped, so the result is a normalised transcript (a
    ``space, blank, space`` path would otherwise give a double space, i.e. an empty word).

    Args:
        log_probs: float [frames, vocabulary.size], (log-)probabilities of the valid frames only.
        vocabulary: ``speechkit.text.Vocabulary`` (blank at index 0).

    Returns:
        str.
    """
    log_probs = np.asarray(log_probs)
    if log_probs.ndim != 2 or log_probs.shape[1] != vocabulary.size:
        raise ValueError(f"log_probs must have shape [frames, {vocabulary.size}], received {log_probs.shape}")
    best = log_probs.argmax(axis=1)
    if best.size:
        keep = np.concatenate([[True], best[1:] != best[:-1]])
        best = best[keep]
    return " ".join(vocabulary.decode(best.tolist()).split())


def greedy_decode_batch(log_probs_list, vocabulary):
    """``greedy_decode`` over a list of [frames_i, vocabulary.size] arrays."""
    return [greedy_decode(lp, vocabulary) for lp in log_probs_list]
