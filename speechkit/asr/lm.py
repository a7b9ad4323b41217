"""Word n-gram language models: build with KenLM's ``lmplz``/``build_binary``, query with ``kenlm``.

An LM directory holds everything the beam search needs and nothing it must guess:

- ``lm.binary``: the KenLM binary model (what ``kenlm.Model`` and pyctcdecode load);
- ``unigrams.txt``: every word of the model, one per line. pyctcdecode cannot read the word list
  back from a binary model, and without it every partial word counts as out of vocabulary, which
  quietly makes the LM hurt instead of help;
- ``lm.json``: how it was built (order, pruning, corpus size) and its perplexity on a held-out
  slice of the text that was kept out of training. It is written last, so its presence marks a
  complete directory.

The text is normalised with ``speechkit.text.normalize``, the same function that normalises the
transcripts, so LM words and CTC output share one spelling (uppercase, apostrophes inside words).
"""

import datetime
import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile

import kenlm
import numpy as np
from tqdm import tqdm

from speechkit.config import atomic_write_text
from speechkit.errors import ConfigError, KenLMError, TextError
from speechkit.text import ALPHABET, normalize

__all__ = [
    "LM_BINARY",
    "LM_UNIGRAMS",
    "LM_INFO",
    "find_kenlm_tool",
    "build_lm",
    "load_lm_info",
    "lm_files",
    "read_unigrams",
    "perplexity",
]

logger = logging.getLogger(__name__)

LM_BINARY = "lm.binary"
LM_UNIGRAMS = "unigrams.txt"
LM_INFO = "lm.json"
_ARPA = "lm.arpa"
_BINARY_TYPES = ("probing", "trie")
_DISCOUNT_FALLBACK = ("auto", "always", "never")


# -- Tools -- #


def find_kenlm_tool(name):
    """Locate a KenLM executable (``lmplz`` or ``build_binary``).

    The tool built by ``make kenlm`` lives next to the environment's Python, which need not be on
    ``PATH`` (for example when speechkit is run as ``.venv/bin/speechkit``), so that folder is
    searched first, then ``PATH``.

    Args:
        name: str, the executable name.

    Returns:
        str, the absolute path of the executable.

    Raises:
        KenLMError: the tool is in neither place; the message says to run ``make kenlm``.
    """
    local = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.isfile(local) and os.access(local, os.X_OK):
        return local
    found = shutil.which(name)
    if found:
        return found
    raise KenLMError(
        f"KenLM tool {name!r} not found next to {sys.executable} nor on PATH; "
        "run 'make kenlm' (scripts/build_kenlm.sh .venv) to build lmplz and build_binary")


def _run_tool(cmd, *, step):
    """Run a KenLM tool, relaying its stage banners to the log; return its stderr text.

    lmplz reports progress on stderr (``=== 1/5 Counting and sorting n-grams ===`` and star bars);
    the banners go to INFO so a long build shows where it is, everything else to DEBUG.
    """
    logger.debug("running %s", " ".join(cmd))
    lines = []
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          errors="replace") as proc:
        for line in proc.stderr:
            line = line.rstrip("\n")
            lines.append(line)
            if line.startswith("==="):
                logger.info("%s: %s", step, line.strip("= "))
            elif line.strip():
                logger.debug("%s: %s", step, line)
    stderr = "\n".join(lines)
    if proc.returncode != 0:
        tail = "\n".join(lines[-15:])
        raise KenLMError(f"{step} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return stderr


# -- Text -- #


def _read_corpus(text_path):
    """Normalise ``text_path`` line by line; return (sentences, lines_read, lines_dropped)."""
    if not os.path.isfile(text_path):
        raise TextError(f"{text_path}: LM text file does not exist")
    sentences = []
    read = dropped = 0
    size = os.path.getsize(text_path)
    with open(text_path, encoding="utf-8", errors="replace") as f, \
            tqdm(total=size, unit="B", unit_scale=True, desc="normalise LM text", disable=None, leave=False) as bar:
        for line in f:
            bar.update(len(line.encode("utf-8", errors="replace")))
            if not line.strip():
                continue
            read += 1
            text = normalize(line, allow_empty=True)
            if text:
                sentences.append(text)
            else:
                dropped += 1
    if read == 0:
        raise TextError(f"{text_path}: LM text is empty (no non-blank lines)")
    if not sentences:
        raise TextError(
            f"{text_path}: none of the {read} line(s) has any word in the vocabulary {ALPHABET!r} after "
            "normalisation (digits, symbols and non-Latin letters are dropped); the LM needs text spelt "
            "like the transcripts")
    if dropped:
        logger.warning("%s: %d of %d line(s) normalise to nothing and are skipped", text_path, dropped, read)
    return sentences, read, dropped


def _split_heldout(sentences, *, fraction, max_sentences, seed):
    """Pick a deterministic held-out slice for perplexity; return (train, heldout).

    The slice is a seeded random sample rather than the tail of the file, so that it covers every
    book of a concatenated corpus instead of the last one only.
    """
    n = len(sentences)
    k = min(int(round(n * fraction)), max_sentences)
    if fraction > 0 and n >= 20:
        k = max(k, 1)
    if k <= 0 or k >= n:
        if fraction > 0:
            logger.warning("LM text has only %d sentence(s): no held-out slice, perplexity not measured", n)
        return sentences, []
    picked = np.zeros(n, dtype=bool)
    picked[np.random.default_rng(seed).choice(n, size=k, replace=False)] = True
    train = [s for s, p in zip(sentences, picked) if not p]
    heldout = [s for s, p in zip(sentences, picked) if p]
    return train, heldout


# -- Building -- #


def _check_prune(prune, order):
    if prune is None:
        return ()
    prune = tuple(int(p) for p in prune)
    if not prune:
        return ()
    if len(prune) > order:
        raise ConfigError(f"prune: at most one threshold per order ({order}), received: {list(prune)}")
    if any(p < 0 for p in prune) or list(prune) != sorted(prune):
        raise ConfigError(f"prune: thresholds must be >= 0 and non-decreasing, received: {list(prune)}")
    if prune[0] != 0:
        raise ConfigError(f"prune: KenLM cannot prune unigrams, the first threshold must be 0, received: {list(prune)}")
    return prune


def build_lm(text_path, out_dir, *, order=4, prune=None, discount_fallback="auto", memory="1G",
             binary_type="probing", heldout_fraction=0.02, max_heldout=2000, seed=0, keep_arpa=False):
    """Build a KenLM word n-gram model from a text file into ``out_dir``.

    Estimation is modified Kneser-Ney by ``lmplz`` (Heafield et al., 2013). On small corpora the
    discount estimate can fail (``BadDiscountException``: some count-of-counts is zero); with
    ``discount_fallback="auto"`` the build is retried with lmplz's fallback discounts, KenLM's
    documented remedy, and lm.json records that it was used.

    Args:
        text_path: str, raw text, one sentence per line; normalised here.
        out_dir: str, the LM directory to write (created if needed).
        order: int in [2, 6], the n-gram order (the tools are built with KENLM_MAX_ORDER=6).
        prune: sequence of int or None, lmplz ``--prune`` count thresholds per order, e.g. ``(0, 0, 1)``
            drops trigrams and above seen only once. The first must be 0.
        discount_fallback: ``"auto"`` (retry with it on failure), ``"always"`` or ``"never"``.
        memory: str, lmplz ``-S`` sort memory (``"1G"``, ``"20%"``); lmplz's own default is 80% of RAM,
            too greedy on a shared machine.
        binary_type: ``"probing"`` (fastest queries) or ``"trie"`` (smaller).
        heldout_fraction: float in [0, 0.5), share of sentences kept out of training to measure
            perplexity on.
        max_heldout: int >= 0, cap on held-out sentences.
        seed: int, seed of the held-out sample.
        keep_arpa: bool, keep the ARPA text model next to the binary.

    Returns:
        dict, the contents of ``lm.json``.

    Raises:
        TextError: the text is missing, empty, or has no in-vocabulary word after normalisation.
        ConfigError: an argument is out of range.
        KenLMError: a KenLM tool is missing or fails.
    """
    if not isinstance(order, int) or not 2 <= order <= 6:
        raise ConfigError(f"order must be an int in [2, 6], received: {order!r}")
    prune = _check_prune(prune, order)
    if discount_fallback not in _DISCOUNT_FALLBACK:
        raise ConfigError(f"discount_fallback must be one of {_DISCOUNT_FALLBACK}, received: {discount_fallback!r}")
    if binary_type not in _BINARY_TYPES:
        raise ConfigError(f"binary_type must be one of {_BINARY_TYPES}, received: {binary_type!r}")
    if not 0 <= heldout_fraction < 0.5:
        raise ConfigError(f"heldout_fraction must be in [0, 0.5), received: {heldout_fraction}")
    lmplz = find_kenlm_tool("lmplz")
    build_binary = find_kenlm_tool("build_binary")

    sentences, lines_read, lines_dropped = _read_corpus(text_path)
    train, heldout = _split_heldout(sentences, fraction=heldout_fraction, max_sentences=max_heldout, seed=seed)
    n_words = sum(s.count(" ") + 1 for s in train)
    logger.info("%s: %d training sentences (%d words), %d held out", text_path, len(train), n_words, len(heldout))

    os.makedirs(out_dir, exist_ok=True)
    info_path = os.path.join(out_dir, LM_INFO)
    if os.path.exists(info_path):
        os.remove(info_path)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as work:
        corpus = os.path.join(work, "train.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            f.writelines(s + "\n" for s in train)
        arpa = os.path.join(work, _ARPA)
        base = [lmplz, "-o", str(order), "-S", str(memory), "-T", work, "--text", corpus, "--arpa", arpa]
        if prune:
            base += ["--prune", *map(str, prune)]
        used_fallback = discount_fallback == "always"
        try:
            _run_tool(base + (["--discount_fallback"] if used_fallback else []), step="lmplz")
        except KenLMError as err:
            if discount_fallback != "auto" or "discount" not in str(err).lower():
                raise
            logger.warning("lmplz could not estimate discounts on this small corpus; retrying with fallback discounts")
            used_fallback = True
            _run_tool(base + ["--discount_fallback"], step="lmplz")

        unigrams = _arpa_unigrams(arpa)
        ngram_counts = _arpa_counts(arpa)
        binary_tmp = os.path.join(work, LM_BINARY)
        logger.info("build_binary: %s model", binary_type)
        _run_tool([build_binary, "-S", str(memory), "-T", work, binary_type, arpa, binary_tmp], step="build_binary")
        os.replace(binary_tmp, os.path.join(out_dir, LM_BINARY))
        if keep_arpa:
            os.replace(arpa, os.path.join(out_dir, _ARPA))
    atomic_write_text(os.path.join(out_dir, LM_UNIGRAMS), "".join(w + "\n" for w in unigrams))

    heldout_stats = perplexity(os.path.join(out_dir, LM_BINARY), heldout) if heldout else None
    info = {
        "order": order,
        "prune": list(prune),
        "discount_fallback": used_fallback,
        "binary_type": binary_type,
        "source": os.path.abspath(text_path),
        "source_sha256": _sha256(text_path),
        "lines_read": lines_read,
        "lines_dropped": lines_dropped,
        "sentences": len(train),
        "words": n_words,
        "vocabulary_size": len(unigrams),
        "ngrams": ngram_counts,
        "heldout_sentences": len(heldout),
        "heldout_words": heldout_stats["words"] if heldout_stats else 0,
        "heldout_oov_rate": heldout_stats["oov_rate"] if heldout_stats else None,
        "perplexity": heldout_stats["perplexity"] if heldout_stats else None,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_text(info_path, json.dumps(info, indent=2) + "\n")
    ppl = "n/a" if info["perplexity"] is None else f"{info['perplexity']:.1f}"
    logger.info("%s: order %d, %d words in vocabulary, held-out perplexity %s", out_dir, order, len(unigrams), ppl)
    return info


def _arpa_sections(arpa):
    """Yield (order, line) for each n-gram line of an ARPA file."""
    current = 0
    with open(arpa, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\") and line.endswith("-grams:"):
                current = int(line[1:line.index("-")])
            elif line == "\\end\\":
                return
            elif current and line:
                yield current, line


def _arpa_unigrams(arpa):
    """Words of the ARPA 1-gram section, without ``<s>``, ``</s>`` and ``<unk>``, sorted."""
    words = set()
    for order, line in _arpa_sections(arpa):
        if order > 1:
            break
        word = line.split("\t")[1]
        if word not in ("<s>", "</s>", "<unk>"):
            words.add(word)
    return sorted(words)


def _arpa_counts(arpa):
    """The ``ngram N=count`` header of an ARPA file, as {str(N): count}."""
    counts = {}
    with open(arpa, encoding="utf-8") as f:
        for line in f:
            if line.startswith("ngram "):
                n, count = line[6:].strip().split("=")
                counts[n] = int(count)
            elif line.startswith("\\1-grams:"):
                break
    return counts


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# -- Reading -- #


def lm_files(lm_dir):
    """Return ``(binary_path, unigrams_path)`` of a complete LM directory.

    Raises:
        KenLMError: the directory or one of its files is missing (an interrupted or foreign build).
    """
    if not os.path.isdir(lm_dir):
        raise KenLMError(f"{lm_dir}: LM directory does not exist; build one with 'speechkit lm build'")
    paths = [os.path.join(lm_dir, name) for name in (LM_BINARY, LM_UNIGRAMS, LM_INFO)]
    missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
    if missing:
        raise KenLMError(f"{lm_dir}: incomplete LM directory, missing {missing}; rebuild it with 'speechkit lm build'")
    return paths[0], paths[1]


def load_lm_info(lm_dir):
    """Return the ``lm.json`` dict of an LM directory."""
    lm_files(lm_dir)
    path = os.path.join(lm_dir, LM_INFO)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise KenLMError(f"{path}: not valid JSON ({err.msg})") from None


def read_unigrams(lm_dir):
    """Return the list of words in ``LM_DIR/unigrams.txt``."""
    _, path = lm_files(lm_dir)
    with open(path, encoding="utf-8") as f:
        return [w for w in (line.strip() for line in f) if w]


def perplexity(model, sentences):
    """Corpus perplexity of normalised sentences under a KenLM model.

    Every sentence is scored with its ``<s>`` and ``</s>``, so the exponent's denominator is the word
    count plus one end token per sentence (the SRILM ``ppl`` convention). Out-of-vocabulary words are
    scored as KenLM's ``<unk>`` and counted.

    Args:
        model: str (a model file) or ``kenlm.Model``.
        sentences: list of str, normalised text.

    Returns:
        dict with ``perplexity`` (float), ``words`` (int), ``oov`` (int) and ``oov_rate`` (float).
    """
    if isinstance(model, (str, os.PathLike)):
        model = kenlm.Model(os.fspath(model))
    log10_total = 0.0
    words = oov = 0
    for sentence in sentences:
        log10_total += model.score(sentence, bos=True, eos=True)
        tokens = sentence.split()
        words += len(tokens)
        oov += sum(1 for w in tokens if w not in model)
    tokens_scored = words + len(sentences)
    if tokens_scored == 0:
        raise TextError("perplexity needs at least one sentence")
    return {
        "perplexity": float(math.pow(10.0, -log10_total / tokens_scored)),
        "words": words,
        "oov": oov,
        "oov_rate": oov / words if words else 0.0,
    }
