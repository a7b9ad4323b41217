"""Cross-check speechkit's scoring against NIST SCTK's ``sclite``, the field's reference scorer.

Debian's ``sctk`` package runs it as ``sctk sclite``; a plain ``sclite`` on the PATH works too. Both sides
get the same already-normalised transcripts in sclite's ``trn`` format, sclite aligns them case-sensitively
(``-s``) as UTF-8, and its per-utterance ``Scores: (#C #S #D #I)`` lines are compared with
``speechkit.scoring.align``'s counts.

Two sclite habits matter when comparing:

- sclite silently skips an utterance that the hypothesis file lacks, so ``run_sclite`` always writes every
  utterance, an empty line for a missing hypothesis (speechkit's ``missing="empty"`` policy).
- sclite gives tokens special meaning: ``(word)`` may be deleted for free and ``@`` is a null word. The
  default normaliser removes that punctuation; the agreement holds for transcripts without such markup.

``adversarial_pairs`` generates the corpus the tests and ``benchmarks/bench_scoring.py`` compare on.
"""

import os
import random
import re
import shutil
import subprocess
import tempfile

import numpy as np

from speechkit.errors import SpeechkitError
from speechkit.scoring.align import SCLITE_WEIGHTS, align_corpus
from speechkit.scoring.formats import Transcript, write_transcripts

__all__ = ["sclite_command", "run_sclite", "crosscheck", "adversarial_pairs"]

_SCORES = re.compile(r"^Scores: \(#C #S #D #I\)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)")
_ID = re.compile(r"^id: \((.*)\)\s*$")


def sclite_command():
    """The command that runs sclite here: ``["sctk", "sclite"]``, ``["sclite"]``, or None when neither exists."""
    if shutil.which("sctk"):
        return ["sctk", "sclite"]
    if shutil.which("sclite"):
        return ["sclite"]
    return None


def run_sclite(refs, hyps, *, workdir=None, command=None):
    """Score pairs with sclite and read back its per-utterance counts.

    Args:
        refs, hyps: equal-length lists of str, normalised transcripts (empty allowed).
        workdir: optional str, where the ``trn`` files and sclite's ``.pra`` output are kept; a temporary
            folder (removed afterwards) when None.
        command: optional list of str, how to run sclite; ``sclite_command()`` when None.

    Returns:
        int64 [pairs, 4], sclite's (C, S, D, I) per pair, in input order.

    Raises:
        SpeechkitError: sclite is not installed, fails, or its output misses utterances.
    """
    if len(refs) != len(hyps):
        raise SpeechkitError(f"need as many hypotheses as references, received {len(hyps)} and {len(refs)}")
    command = command or sclite_command()
    if command is None:
        raise SpeechkitError("sclite is not installed: install Debian's 'sctk' package (apt-get install sctk; "
                             "'make install' does it)")
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="speechkit-sclite-") as tmp:
            return run_sclite(refs, hyps, workdir=tmp, command=command)
    os.makedirs(workdir, exist_ok=True)
    ids = [f"utt{i:07d}" for i in range(len(refs))]
    ref_path = write_transcripts(os.path.join(workdir, "ref.trn"),
                                 [Transcript(id=u, text=t) for u, t in zip(ids, refs)], format="trn")
    hyp_path = write_transcripts(os.path.join(workdir, "hyp.trn"),
                                 [Transcript(id=u, text=t) for u, t in zip(ids, hyps)], format="trn")
    args = command + ["-r", ref_path, "trn", "-h", hyp_path, "trn", "-i", "rm", "-e", "utf-8", "-s",
                      "-o", "pra", "-O", workdir, "-n", "sclite"]
    proc = subprocess.run(args, capture_output=True, text=True, errors="replace")
    pra = os.path.join(workdir, "sclite.pra")
    if proc.returncode != 0 or not os.path.isfile(pra):
        raise SpeechkitError(f"sclite failed (exit {proc.returncode}): {' '.join(args)}\n"
                             f"{(proc.stdout + proc.stderr)[-2000:]}")
    counts = {}
    current = None
    with open(pra, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _ID.match(line)
            if m:
                current = m.group(1)
                continue
            m = _SCORES.match(line)
            if m and current is not None:
                counts[current] = [int(x) for x in m.groups()]
                current = None
    absent = [u for u in ids if u not in counts]
    if absent:
        raise SpeechkitError(f"{pra}: sclite reported no scores for {len(absent)} utterance(s) (first: {absent[:5]})")
    return np.array([counts[u] for u in ids], np.int64).reshape(len(ids), 4)


def crosscheck(refs, hyps, *, workdir=None, command=None):
    """Compare speechkit's alignment counts with sclite's on the same pairs.

    Args:
        refs, hyps: equal-length lists of str, normalised transcripts.
        workdir, command: as ``run_sclite``.

    Returns:
        dict: ``pairs``, ``speechkit`` and ``sclite`` totals (``C``, ``S``, ``D``, ``I``, ``N``, ``wer``),
        ``agree`` (every pair's four counts equal), ``mismatches`` (up to 20 differing pairs, with both counts).
    """
    ours = align_corpus(refs, hyps, unit="word", weights=SCLITE_WEIGHTS).counts
    theirs = run_sclite(refs, hyps, workdir=workdir, command=command)
    n_words = int(sum(len(r.split()) for r in refs))

    def totals(counts):
        c, s, d, i = (int(x) for x in counts.sum(axis=0))
        return {"C": c, "S": s, "D": d, "I": i, "N": n_words, "wer": (s + d + i) / max(n_words, 1)}

    differ = np.flatnonzero((ours != theirs).any(axis=1))
    return {"pairs": len(refs), "speechkit": totals(ours), "sclite": totals(theirs), "agree": len(differ) == 0,
            "mismatches": [{"index": int(i), "ref": refs[i], "hyp": hyps[i], "speechkit": ours[i].tolist(),
                            "sclite": theirs[i].tolist()} for i in differ[:20]]}


_WORDS = ("THE", "A", "OF", "AND", "TO", "IN", "HE", "SHE", "IT", "WAS", "THAT", "HIS", "HER", "WITH", "AS", "FOR",
          "HAD", "YOU", "NOT", "BE", "ON", "AT", "BY", "WHICH", "HAVE", "FROM", "THIS", "HIM", "BUT", "ALL", "SAID",
          "WERE", "THEY", "ARE", "ONE", "MY", "SO", "THERE", "WHEN", "WHAT", "COULD", "WOULD", "LITTLE", "GREAT",
          "TIME", "MAN", "BEFORE", "HOUSE", "NIGHT", "DON'T", "O'CLOCK", "WELL", "WHERE", "OLD", "NEVER", "AGAIN")
_NON_ASCII = ("CAFÉ", "NAÏVE", "STRASSE", "STRAßE", "ÜBER", "ZOË", "JOSÉ", "ЖИЗНЬ", "ДОМ", "日本", "東京", "ΛΟΓΟΣ",
              "ÅR")


def _perturb(rng, words, sub, dele, ins, vocab):
    out = []
    for w in words:
        r = rng.random()
        if r < dele:
            continue
        out.append(rng.choice(vocab) if r < dele + sub else w)
        while rng.random() < ins:
            out.append(rng.choice(vocab))
    return out


def adversarial_pairs(count=400, *, seed=0):
    """Random transcript pairs plus the cases scorers get wrong, for cross-checking against sclite.

    About a quarter of the pairs are special: empty references, empty hypotheses, both empty, repeated
    words (``THE THE THE``), shifted word sequences (where sclite's weights prefer deletions plus insertions
    over substitutions), non-ASCII words (accents, Cyrillic, CJK), very long utterances (500-1500 words),
    and utterances missing from the hypothesis side (returned as None). The rest are book-like sentences
    with random substitutions, deletions and insertions at mixed error rates.

    Args:
        count: int >= 20, pairs.
        seed: int.

    Returns:
        (ids list of str, refs list of str, hyps list of str or None).
    """
    if count < 20:
        raise ValueError(f"count must be >= 20, received: {count}")
    rng = random.Random(seed)
    vocab = list(_WORDS)
    mixed = vocab + list(_NON_ASCII)
    special = [
        lambda: ("", " ".join(rng.choices(vocab, k=rng.randint(1, 6)))),
        lambda: (" ".join(rng.choices(vocab, k=rng.randint(1, 12))), ""),
        lambda: ("", ""),
        lambda: (" ".join([rng.choice(vocab)] * rng.randint(2, 8)),
                 " ".join([rng.choice(vocab[:3])] * rng.randint(1, 9))),
        lambda: _shifted(rng, vocab),
        lambda: _pair(rng, mixed, (3, 15), (0.2, 0.1, 0.1)),
        lambda: _pair(rng, vocab, (500, 1500), (0.15, 0.08, 0.05)),
        None,
    ]
    ids, refs, hyps = [], [], []
    for i in range(count):
        kind = i % 32
        if kind < len(special):
            make = special[kind]
            if make is None:
                ref, hyp = " ".join(rng.choices(vocab, k=rng.randint(3, 15))), None
            else:
                ref, hyp = make()
        else:
            rates = rng.choice([(0.05, 0.02, 0.02), (0.15, 0.08, 0.04), (0.3, 0.15, 0.1), (0.5, 0.2, 0.3)])
            ref, hyp = _pair(rng, vocab, (3, 30), rates)
        ids.append(f"spk{i % 10:02d}-utt{i:04d}")
        refs.append(ref)
        hyps.append(hyp)
    return ids, refs, hyps


def _pair(rng, vocab, length, rates):
    words = rng.choices(vocab, k=rng.randint(*length))
    return " ".join(words), " ".join(_perturb(rng, words, *rates, vocab))


def _shifted(rng, vocab):
    k = rng.randint(1, 4)
    core = rng.choices(vocab, k=rng.randint(2, 6))
    head = rng.choices(vocab, k=k)
    tail = rng.choices(vocab, k=k)
    return " ".join(head + core), " ".join(core + tail)
