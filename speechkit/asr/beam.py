"""CTC decoding configuration and decoders: greedy, or pyctcdecode beam search with a KenLM model.

The beam search scores a prefix as ``log p_ctc + alpha * log p_lm + beta * words`` (Amodei et al.,
2016, eq. 12), with pyctcdecode's prefix beam search over characters and word-level shallow fusion
of the KenLM model. ``alpha`` and ``beta`` depend on the acoustic model, so ``speechkit lm tune``
grid-searches them on dev data and stores the winners in ``RUN/decode.yaml``; ``load_decode_config``
reads them back, so ``transcribe`` and ``eval`` use tuned values by default.

Conventions pyctcdecode relies on, checked here rather than left to its silent rewrites: the blank
is ``""`` at index 0, the word separator is ``" "``, every other label is one character, and the LM
words are spelt with the same characters (uppercase; apostrophes inside words). pyctcdecode applies
a log-softmax to its input unless the rows sum to one; log-softmax is idempotent on log
probabilities, so the model's log-probs are passed through unchanged.
"""

import dataclasses
import logging
import multiprocessing
import os

import numpy as np
from pyctcdecode import build_ctcdecoder

from speechkit.asr.decoding import greedy_decode
from speechkit.asr.lm import lm_files, read_unigrams
from speechkit.config import Config, save_yaml
from speechkit.errors import ConfigError
from speechkit.text import normalize

__all__ = [
    "DecodeConfig",
    "GreedyDecoder",
    "BeamDecoder",
    "DECODE_YAML",
    "pyctcdecode_labels",
    "build_decoder",
    "load_decode_config",
    "save_decode_config",
    "merge_decode_options",
]

logger = logging.getLogger(__name__)

DECODE_YAML = "decode.yaml"
DECODERS = ("greedy", "beam")


@dataclasses.dataclass(frozen=True)
class DecodeConfig(Config):
    """How to turn CTC log-probabilities into text.

    Args:
        decoder: ``"greedy"`` (best path: argmax, collapse repeats, drop blanks) or ``"beam"``.
        beam_width: int >= 1, beams kept per frame (beam only).
        alpha: float >= 0, LM weight (beam with ``lm`` only).
        beta: float, word insertion bonus per word (beam with ``lm`` only); counters the LM's
            preference for fewer, shorter words.
        lm: str or None, an LM directory written by ``speechkit lm build``; None decodes without an LM.
        hotwords: tuple of str, words or phrases to boost (beam only); normalised like transcripts.
        hotword_weight: float, log-score bonus per hotword match.
        beam_prune_logp: float <= 0, beams this far below the best are dropped.
        token_min_logp: float <= 0, characters below this log-prob are not expanded (except the
            frame's argmax).
    """

    decoder: str = "greedy"
    beam_width: int = 64
    alpha: float = 0.5
    beta: float = 1.0
    lm: str | None = None
    hotwords: tuple[str, ...] = ()
    hotword_weight: float = 10.0
    beam_prune_logp: float = -10.0
    token_min_logp: float = -5.0

    def __post_init__(self):
        if self.decoder not in DECODERS:
            raise ConfigError(f"decoder must be one of {DECODERS}, received: {self.decoder!r}")
        if not isinstance(self.beam_width, int) or self.beam_width < 1:
            raise ConfigError(f"beam_width must be an int >= 1, received: {self.beam_width!r}")
        for name in ("alpha", "beta", "hotword_weight", "beam_prune_logp", "token_min_logp"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, received: {value!r}")
            object.__setattr__(self, name, float(value))
        if self.alpha < 0:
            raise ConfigError(f"alpha must be >= 0, received: {self.alpha}")
        if self.beam_prune_logp > 0 or self.token_min_logp > 0:
            raise ConfigError("beam_prune_logp and token_min_logp are log-probabilities and must be <= 0, "
                              f"received: {self.beam_prune_logp}, {self.token_min_logp}")
        if self.lm is not None:
            if not isinstance(self.lm, str) or not self.lm:
                raise ConfigError(f"lm must be an LM directory path or None, received: {self.lm!r}")
        hotwords = tuple(self.hotwords or ())
        normalized = tuple(normalize(h, source="hotwords") for h in hotwords)
        object.__setattr__(self, "hotwords", normalized)
        if self.decoder == "greedy" and (self.lm is not None or self.hotwords):
            raise ConfigError("an LM and hotwords need decoder 'beam'; greedy decoding cannot use them "
                              f"(received lm={self.lm!r}, hotwords={list(self.hotwords)})")


def pyctcdecode_labels(vocabulary):
    """Return the pyctcdecode label list for a CTC vocabulary, checking its conventions.

    pyctcdecode rewrites some labels on its own (``"|"`` becomes the space, ``"_"`` or ``"<pad>"`` the
    blank, ``"##x"`` switches to BPE mode); our character labels must reach it unchanged.

    Raises:
        ConfigError: the blank is not ``""`` at index 0, the space is missing, or a label is not a
            single character that pyctcdecode would keep as is.
    """
    labels = list(vocabulary.labels)
    if not labels or labels[0] != "":
        raise ConfigError(f"vocabulary: the CTC blank must be '' at index 0, received labels {labels[:3]}...")
    if " " not in labels:
        raise ConfigError("vocabulary: no ' ' label, so the beam search cannot separate words for the LM")
    for label in labels[1:]:
        if len(label) != 1 or label in ("|", "_", "\u2581", "\u2047"):
            raise ConfigError(f"vocabulary: label {label!r} would be reinterpreted by pyctcdecode; "
                              "use single plain characters")
    return labels


def _check_log_probs(log_probs, vocabulary):
    log_probs = np.asarray(log_probs, dtype=np.float32)
    if log_probs.ndim != 2 or log_probs.shape[1] != vocabulary.size:
        raise ConfigError(f"log_probs must have shape [frames, {vocabulary.size}], received: {log_probs.shape}")
    return log_probs


class GreedyDecoder:
    """Best-path decoding, with the same interface as ``BeamDecoder``."""

    def __init__(self, vocabulary):
        self.vocabulary = vocabulary

    def decode(self, log_probs):
        """Decode one utterance: float32 [frames, vocab.size] -> str."""
        return greedy_decode(_check_log_probs(log_probs, self.vocabulary), self.vocabulary)

    def decode_batch(self, log_probs_list, *, processes=1):
        """Decode a list of utterances; ``processes`` is accepted for interface parity and ignored."""
        return [self.decode(lp) for lp in log_probs_list]

    def close(self):
        """Nothing to release; present for interface parity."""


class BeamDecoder:
    """pyctcdecode beam search, optionally fused with a KenLM model.

    Args:
        config: DecodeConfig with ``decoder="beam"``.
        vocabulary: speechkit.text.Vocabulary of the acoustic model.

    Raises:
        ConfigError: the vocabulary breaks pyctcdecode's conventions, or the LM's words use
            characters the vocabulary cannot produce (for example a lowercase LM).
        KenLMError: the LM directory is incomplete.
    """

    def __init__(self, config, vocabulary):
        if config.decoder != "beam":
            raise ConfigError(f"BeamDecoder needs decoder 'beam', received: {config.decoder!r}")
        self.config = config
        self.vocabulary = vocabulary
        labels = pyctcdecode_labels(vocabulary)
        model_path = unigrams = None
        if config.lm is not None:
            model_path, _ = lm_files(config.lm)
            unigrams = read_unigrams(config.lm)
            allowed = set(vocabulary.characters) - {" "}
            foreign = sorted({ch for word in unigrams for ch in word} - allowed)
            if foreign:
                raise ConfigError(
                    f"{config.lm}: the LM's words use characters the acoustic model cannot emit: {foreign[:10]}; "
                    "build the LM from text normalised with speechkit.text.normalize (uppercase)")
        self._decoder = build_ctcdecoder(labels, kenlm_model_path=model_path, unigrams=unigrams,
                                         alpha=config.alpha, beta=config.beta)

    def set_weights(self, *, alpha, beta):
        """Change alpha and beta without reloading the LM (used by the grid search)."""
        self.config = dataclasses.replace(self.config, alpha=float(alpha), beta=float(beta))
        self._decoder.reset_params(alpha=float(alpha), beta=float(beta))

    def _kwargs(self):
        c = self.config
        return {"beam_width": c.beam_width, "beam_prune_logp": c.beam_prune_logp,
                "token_min_logp": c.token_min_logp, "hotwords": list(c.hotwords) or None,
                "hotword_weight": c.hotword_weight}

    def decode(self, log_probs):
        """Decode one utterance: float32 [frames, vocab.size] log-probabilities -> str."""
        return self._decoder.decode(_check_log_probs(log_probs, self.vocabulary), **self._kwargs())

    def decode_batch(self, log_probs_list, *, processes=1):
        """Decode a list of utterances, optionally over a pool of forked worker processes.

        Args:
            log_probs_list: list of float32 [frames_i, vocab.size].
            processes: int >= 1. Above 1, a ``fork`` pool decodes utterances in parallel (pyctcdecode
                keeps the LM in a class-level registry, so forked workers share it without copying).
                Fork only from a process that is not running TensorFlow ops concurrently.

        Returns:
            list of str, in input order.
        """
        arrays = [_check_log_probs(lp, self.vocabulary) for lp in log_probs_list]
        if processes <= 1 or len(arrays) < 2:
            return [self._decoder.decode(lp, **self._kwargs()) for lp in arrays]
        with multiprocessing.get_context("fork").Pool(min(processes, len(arrays))) as pool:
            return self._decoder.decode_batch(pool, arrays, **self._kwargs())

    def close(self):
        """Release the LM from pyctcdecode's class-level model registry."""
        self._decoder.cleanup()

    def __del__(self):
        decoder = getattr(self, "_decoder", None)
        if decoder is not None:
            decoder.cleanup()


def build_decoder(config, vocabulary):
    """Return a decoder for ``config``: an object with ``decode(log_probs) -> str`` and
    ``decode_batch(list) -> list[str]``.

    Args:
        config: DecodeConfig, or None for greedy.
        vocabulary: speechkit.text.Vocabulary.
    """
    config = config or DecodeConfig()
    if config.decoder == "greedy":
        return GreedyDecoder(vocabulary)
    return BeamDecoder(config, vocabulary)


# -- Persisted configuration -- #


def load_decode_config(run_dir):
    """Read ``RUN/decode.yaml`` (written by ``speechkit lm tune``); greedy when there is none.

    A relative ``lm`` path in the file is resolved against the run directory, so a run and its LM
    can move together.
    """
    path = os.path.join(run_dir, DECODE_YAML)
    if not os.path.isfile(path):
        return DecodeConfig()
    config = DecodeConfig.load(path)
    if config.lm is not None and not os.path.isabs(config.lm):
        config = dataclasses.replace(config, lm=os.path.normpath(os.path.join(run_dir, config.lm)))
    return config


def save_decode_config(run_dir, config):
    """Atomically write ``config`` to ``RUN/decode.yaml``; the LM path is stored relative to the run
    when the LM lies inside it, absolute otherwise."""
    lm = config.lm
    if lm is not None:
        lm = os.path.abspath(lm)
        rel = os.path.relpath(lm, os.path.abspath(run_dir))
        lm = lm if rel.startswith("..") else rel
    path = os.path.join(run_dir, DECODE_YAML)
    save_yaml(path, dataclasses.replace(config, lm=lm))
    return path


# -- Explicit options over the persisted ones -- #


_OPTION_NAMES = ("decoder", "lm", "alpha", "beta", "beam_width", "hotwords", "hotword_weight")


def merge_decode_options(base, **options):
    """Apply explicitly chosen decoding options over ``base`` (usually the run's ``decode.yaml``).

    Only the options passed count as chosen. Choosing an LM directory or hotwords without a decoder
    selects the beam search; ``lm=None`` removes ``base``'s LM (with ``decoder="beam"`` that is the
    LM-free beam search); ``decoder="greedy"`` drops ``base``'s LM and hotwords, but an LM or
    hotwords chosen together with it raise ConfigError.

    Args:
        base: DecodeConfig, the settings to start from.
        **options: any of ``decoder`` (str), ``lm`` (str directory, or None for no LM), ``alpha``,
            ``beta``, ``hotword_weight`` (float), ``beam_width`` (int) and ``hotwords`` (sequence of str).

    Returns:
        DecodeConfig.

    Raises:
        ConfigError: an unknown option, or a combination that DecodeConfig rejects.
    """
    unknown = sorted(set(options) - set(_OPTION_NAMES))
    if unknown:
        raise ConfigError(f"unknown decoding option(s) {unknown}; expected some of {list(_OPTION_NAMES)}")
    changes = {k: v for k, v in options.items() if k not in ("decoder", "hotwords")}
    if "hotwords" in options:
        changes["hotwords"] = tuple(options["hotwords"] or ())
    decoder = options.get("decoder")
    if decoder is None and (changes.get("lm") or changes.get("hotwords")):
        decoder = "beam"
    if decoder is not None:
        changes["decoder"] = decoder
        if decoder == "greedy":
            changes.setdefault("lm", None)
            changes.setdefault("hotwords", ())
    try:
        return dataclasses.replace(base, **changes)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"decoding options: {err}") from None
