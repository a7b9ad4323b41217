"""Word (or character) alignment of references and hypotheses with NIST sclite's weights and tie-breaking.

WER only needs the number of errors, but the split into substitutions, deletions and insertions, the
confusion pairs and the alignments people read all depend on which of several equally cheap alignments
is chosen. sclite (SCTK ``net_dp.c``) scores a correct word 0, a substitution 4 and an insertion or a
deletion 3, and breaks ties at every cell in this order: substitution (or match), then deletion, then
insertion, tracing back from the end. Plain Levenshtein (jiwer, weights 1/1/1) splits the same errors
differently, and can even count fewer errors: against sclite's weights, three deletions and three
insertions (cost 18) beat five substitutions (cost 20). This module reproduces sclite's choice exactly,
which ``tests/test_scoring_sclite.py`` checks against ``sctk sclite`` itself.

All pairs of a corpus are aligned in one numba-compiled pass over integer token ids, so 100,000 pairs
take well under a second.
"""

import dataclasses

import numba
import numpy as np

__all__ = ["SCLITE_WEIGHTS", "UNIT_WEIGHTS", "OP_CORRECT", "OP_SUB", "OP_DEL", "OP_INS", "CorpusAlignment",
           "align_corpus", "tokenize_words", "tokenize_chars", "format_alignment"]

SCLITE_WEIGHTS = (4, 3, 3)
"""(substitution, deletion, insertion) costs used by sclite; a match costs 0."""
UNIT_WEIGHTS = (1, 1, 1)
"""Plain Levenshtein costs (as jiwer's WER)."""

OP_CORRECT, OP_SUB, OP_DEL, OP_INS = 0, 1, 2, 3
_OP_NAMES = "CSDI"


@numba.njit(cache=True, nogil=True)
def _align_all(ref_tokens, ref_offsets, hyp_tokens, hyp_offsets, w_sub, w_del, w_ins, counts, ops, op_ref, op_hyp,
               op_offsets):
    """Fill ``counts[i] = (C, S, D, I)`` and the op sequence of every pair (numba kernel).

    ``ops[op_offsets[i]:op_offsets[i + 1]]`` receives pair i's ops in order, padded at the end with -1
    (the buffer holds n + m slots, the longest possible alignment); ``op_ref`` and ``op_hyp`` hold the
    flat index of each op's reference and hypothesis token (-1 for none).
    """
    n_pairs = ref_offsets.shape[0] - 1
    max_n = 0
    max_m = 0
    for i in range(n_pairs):
        max_n = max(max_n, ref_offsets[i + 1] - ref_offsets[i])
        max_m = max(max_m, hyp_offsets[i + 1] - hyp_offsets[i])
    cost = np.empty((max_n + 1) * (max_m + 1), np.int64)
    back = np.empty((max_n + 1) * (max_m + 1), np.int8)
    trace = np.empty(max_n + max_m, np.int8)
    for i in range(n_pairs):
        r0 = ref_offsets[i]
        n = ref_offsets[i + 1] - r0
        h0 = hyp_offsets[i]
        m = hyp_offsets[i + 1] - h0
        width = m + 1
        cost[0] = 0
        back[0] = -1
        for b in range(1, m + 1):
            cost[b] = cost[b - 1] + w_ins
            back[b] = OP_INS
        for a in range(1, n + 1):
            row = a * width
            prev = row - width
            cost[row] = cost[prev] + w_del
            back[row] = OP_DEL
            ra = ref_tokens[r0 + a - 1]
            for b in range(1, m + 1):
                same = ra == hyp_tokens[h0 + b - 1]
                sub = cost[prev + b - 1] + (0 if same else w_sub)
                dele = cost[prev + b] + w_del
                ins = cost[row + b - 1] + w_ins
                if sub <= dele and sub <= ins:
                    cost[row + b] = sub
                    back[row + b] = OP_CORRECT if same else OP_SUB
                elif dele < ins:
                    cost[row + b] = dele
                    back[row + b] = OP_DEL
                else:
                    cost[row + b] = ins
                    back[row + b] = OP_INS
        a = n
        b = m
        k = 0
        while a > 0 or b > 0:
            op = back[a * width + b]
            trace[k] = op
            k += 1
            counts[i, op] += 1
            if op == OP_INS:
                b -= 1
            elif op == OP_DEL:
                a -= 1
            else:
                a -= 1
                b -= 1
        start = op_offsets[i]
        a = r0
        b = h0
        for j in range(k):
            op = trace[k - 1 - j]
            ops[start + j] = op
            if op == OP_INS:
                op_ref[start + j] = -1
            else:
                op_ref[start + j] = a
                a += 1
            if op == OP_DEL:
                op_hyp[start + j] = -1
            else:
                op_hyp[start + j] = b
                b += 1
        for j in range(k, op_offsets[i + 1] - start):
            ops[start + j] = -1
            op_ref[start + j] = -1
            op_hyp[start + j] = -1


@dataclasses.dataclass
class CorpusAlignment:
    """The alignments of a list of (reference, hypothesis) token sequences.

    Attributes:
        counts: int64 [pairs, 4], correct, substitutions, deletions, insertions per pair.
        ops: int8 [sum(n_i + m_i)], every pair's ops (``OP_*``), each pair's slot padded with -1.
        op_ref, op_hyp: int64, like ``ops``: the flat index of each op's reference / hypothesis token, or -1.
        op_offsets: int64 [pairs + 1], pair i's slot is ``ops[op_offsets[i]:op_offsets[i + 1]]``.
        ref_tokens, hyp_tokens: int64 flat token ids; ``ref_offsets``, ``hyp_offsets`` int64 [pairs + 1].
        vocabulary: list of str, token id -> token.
    """

    counts: np.ndarray
    ops: np.ndarray
    op_ref: np.ndarray
    op_hyp: np.ndarray
    op_offsets: np.ndarray
    ref_tokens: np.ndarray
    ref_offsets: np.ndarray
    hyp_tokens: np.ndarray
    hyp_offsets: np.ndarray
    vocabulary: list

    @property
    def ref_lengths(self):
        """int64 [pairs], reference tokens per pair."""
        return np.diff(self.ref_offsets)

    @property
    def errors(self):
        """int64 [pairs], substitutions + deletions + insertions per pair."""
        return self.counts[:, 1:].sum(axis=1)

    def pair(self, i):
        """Pair i as a list of ``(op, ref_token or None, hyp_token or None)``, op one of ``"CSDI"``."""
        ops = self.ops[self.op_offsets[i]:self.op_offsets[i + 1]]
        ref = self.ref_tokens[self.ref_offsets[i]:self.ref_offsets[i + 1]]
        hyp = self.hyp_tokens[self.hyp_offsets[i]:self.hyp_offsets[i + 1]]
        out, a, b = [], 0, 0
        for op in ops:
            if op < 0:
                break
            r = self.vocabulary[ref[a]] if op != OP_INS else None
            h = self.vocabulary[hyp[b]] if op != OP_DEL else None
            a += op != OP_INS
            b += op != OP_DEL
            out.append((_OP_NAMES[op], r, h))
        return out

    def op_tokens(self):
        """Every op of every pair with its token ids: (op int8, ref id or -1, hyp id or -1), flat arrays.

        Used to count confusion pairs without a Python loop over the corpus.
        """
        valid = self.ops >= 0
        ref_idx, hyp_idx = self.op_ref[valid], self.op_hyp[valid]
        ref_ids = np.where(ref_idx >= 0, self.ref_tokens[np.maximum(ref_idx, 0)] if len(self.ref_tokens) else -1, -1)
        hyp_ids = np.where(hyp_idx >= 0, self.hyp_tokens[np.maximum(hyp_idx, 0)] if len(self.hyp_tokens) else -1, -1)
        return self.ops[valid], ref_ids, hyp_ids


def tokenize_words(texts, vocabulary=None):
    """Split texts on whitespace into flat int64 token ids.

    Args:
        texts: sequence of str.
        vocabulary: optional dict str -> int, extended in place (share it between references and hypotheses).

    Returns:
        (tokens int64 [total], offsets int64 [len(texts) + 1], vocabulary dict).
    """
    vocabulary = {} if vocabulary is None else vocabulary
    lengths = np.empty(len(texts) + 1, np.int64)
    lengths[0] = 0
    ids = []
    setdefault = vocabulary.setdefault
    for i, text in enumerate(texts):
        words = text.split()
        lengths[i + 1] = len(words)
        ids.extend([setdefault(w, len(vocabulary)) for w in words])
    return np.asarray(ids, np.int64), np.cumsum(lengths), vocabulary


def tokenize_chars(texts):
    """Characters of each text (single spaces between words count, as in jiwer's CER) as code points.

    Returns:
        (tokens int64 [total], offsets int64 [len(texts) + 1]).
    """
    texts = [" ".join(t.split()) for t in texts]
    lengths = np.fromiter((len(t) for t in texts), np.int64, count=len(texts))
    joined = "".join(texts)
    tokens = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    return tokens, np.r_[0, np.cumsum(lengths)]


def align_corpus(refs, hyps, *, unit="word", weights=SCLITE_WEIGHTS):
    """Align every (reference, hypothesis) pair.

    Args:
        refs, hyps: equal-length sequences of str (already normalised; empty strings allowed on either side).
        unit: ``"word"`` (whitespace tokens) or ``"char"`` (code points, single spaces included).
        weights: (substitution, deletion, insertion) ints >= 1; ``SCLITE_WEIGHTS`` or ``UNIT_WEIGHTS``.

    Returns:
        CorpusAlignment.

    Raises:
        ValueError: the sequences differ in length, an unknown unit, or bad weights.
    """
    if len(refs) != len(hyps):
        raise ValueError(f"need as many hypotheses as references, received {len(hyps)} and {len(refs)}")
    if len(weights) != 3 or any(int(w) != w or w < 1 for w in weights):
        raise ValueError(f"weights must be three ints >= 1 (sub, del, ins), received: {weights!r}")
    if unit == "word":
        ref_tokens, ref_offsets, vocab = tokenize_words(refs)
        hyp_tokens, hyp_offsets, vocab = tokenize_words(hyps, vocab)
        vocabulary = list(vocab)
    elif unit == "char":
        ref_tokens, ref_offsets = tokenize_chars(refs)
        hyp_tokens, hyp_offsets = tokenize_chars(hyps)
        vocabulary = _CodePoints()
    else:
        raise ValueError(f"unit must be 'word' or 'char', received: {unit!r}")
    op_offsets = np.r_[0, np.cumsum(np.diff(ref_offsets) + np.diff(hyp_offsets))].astype(np.int64)
    counts = np.zeros((len(refs), 4), np.int64)
    ops = np.empty(int(op_offsets[-1]), np.int8)
    op_ref = np.empty(int(op_offsets[-1]), np.int64)
    op_hyp = np.empty(int(op_offsets[-1]), np.int64)
    _align_all(ref_tokens, ref_offsets, hyp_tokens, hyp_offsets, int(weights[0]), int(weights[1]),
               int(weights[2]), counts, ops, op_ref, op_hyp, op_offsets)
    return CorpusAlignment(counts=counts, ops=ops, op_ref=op_ref, op_hyp=op_hyp, op_offsets=op_offsets,
                           ref_tokens=ref_tokens, ref_offsets=ref_offsets, hyp_tokens=hyp_tokens,
                           hyp_offsets=hyp_offsets, vocabulary=vocabulary)


class _CodePoints:
    """Token id -> character, for character alignments."""

    def __getitem__(self, code):
        return chr(int(code))


def format_alignment(pairs):
    """sclite-style aligned lines: correct words lower-cased, errors upper-cased, ``***`` for gaps.

    Args:
        pairs: list of ``(op, ref, hyp)`` from ``CorpusAlignment.pair``.

    Returns:
        str, three lines ``REF:``, ``HYP:`` and ``Eval:`` (S, D, I under each error).
    """
    ref, hyp, marks = ["REF: "], ["HYP: "], ["Eval:"]
    for op, r, h in pairs:
        if op == "C":
            r = h = r.lower()
        else:
            r = r.upper() if r is not None else None
            h = h.upper() if h is not None else None
        width = max(len(r or ""), len(h or ""), 1)
        ref.append((r if r is not None else "*" * width).ljust(width))
        hyp.append((h if h is not None else "*" * width).ljust(width))
        marks.append(("" if op == "C" else op).ljust(width))
    return "\n".join(" ".join(line).rstrip() for line in (ref, hyp, marks))
