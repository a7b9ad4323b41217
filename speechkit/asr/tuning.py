"""Tuning the beam search's LM weight ``alpha`` and word bonus ``beta`` on dev data.

``alpha`` and ``beta`` depend on the acoustic model as much as on the LM (a sharper model needs a
lighter LM), so they are tuned per run: the run's model computes the dev log-probabilities once
(cached in ``RUN/dev_logprobs.npz``), then a grid search re-decodes them at each point with the LM
loaded once. The winners go to ``RUN/decode.yaml``, which ``speechkit.runs.RunDir.decode_config``
reads back, and the whole grid to ``RUN/decode_tuning.json``.
"""

import hashlib
import json
import logging
import os

import numpy as np
from tqdm import tqdm

from speechkit import audio as audio_io
from speechkit.asr.beam import BeamDecoder, DecodeConfig, build_decoder
from speechkit.asr.inference import load_run
from speechkit.asr.lm import lm_files
from speechkit.config import atomic_write_text
from speechkit.data.manifest import read_manifest
from speechkit.errors import ConfigError
from speechkit.metrics import cer, wer
from speechkit.runs import RunDir

__all__ = ["DEFAULT_ALPHAS", "DEFAULT_BETAS", "tune_alpha_beta", "dev_log_probs", "tune_run"]

logger = logging.getLogger(__name__)

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
DEFAULT_BETAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
_LOGPROB_CACHE = "dev_logprobs.npz"
_TUNING_REPORT = "decode_tuning.json"


def _error_rates(references, hypotheses):
    return float(wer(references, hypotheses)), float(cer(references, hypotheses))


def tune_alpha_beta(log_probs_list, references, *, vocabulary, lm_dir, alphas=DEFAULT_ALPHAS, betas=DEFAULT_BETAS,
                    beam_width=64, processes=1, progress=True):
    """Grid-search the LM weight ``alpha`` and word bonus ``beta`` of the beam search for the lowest WER.

    The LM is loaded once; each grid point only resets the two weights and re-decodes the fixed
    log-probabilities, so the acoustic model never runs here.

    Args:
        log_probs_list: list of float32 [frames_i, vocabulary.size] CTC log-probabilities.
        references: list of str, the normalised reference transcripts, same order.
        vocabulary: speechkit.text.Vocabulary of the acoustic model.
        lm_dir: str, an LM directory from ``build_lm``.
        alphas: sequence of float >= 0.
        betas: sequence of float.
        beam_width: int >= 1.
        processes: int >= 1, decoding processes per grid point.
        progress: bool, show a tqdm bar over grid points.

    Returns:
        ``(best, table)``: ``table`` is a list of dicts ``{"alpha", "beta", "wer", "cer"}`` in grid order
        (alphas outer); ``best`` is the row with the lowest WER, ties broken by CER, then by grid order.

    Raises:
        ConfigError: empty or mismatched inputs, or an empty grid.
    """
    if len(log_probs_list) != len(references) or not references:
        raise ConfigError(f"tune_alpha_beta needs one reference per utterance and at least one utterance, "
                          f"received {len(log_probs_list)} log-prob arrays and {len(references)} references")
    alphas, betas = [float(a) for a in alphas], [float(b) for b in betas]
    if not alphas or not betas:
        raise ConfigError(f"the alpha and beta grids must not be empty, received alphas={alphas}, betas={betas}")
    decoder = BeamDecoder(DecodeConfig(decoder="beam", lm=lm_dir, beam_width=beam_width,
                                       alpha=alphas[0], beta=betas[0]), vocabulary)
    table = []
    grid = [(a, b) for a in alphas for b in betas]
    try:
        with tqdm(grid, desc="alpha/beta grid", unit="point", disable=not progress) as bar:
            for alpha, beta in bar:
                decoder.set_weights(alpha=alpha, beta=beta)
                hypotheses = decoder.decode_batch(log_probs_list, processes=processes)
                wer, cer = _error_rates(references, hypotheses)
                table.append({"alpha": alpha, "beta": beta, "wer": wer, "cer": cer})
                best = min(table, key=lambda r: (r["wer"], r["cer"]))
                bar.set_postfix(wer=f"{wer:.4f}", best=f"{best['wer']:.4f}@{best['alpha']:g},{best['beta']:g}")
    finally:
        decoder.close()
    best = min(table, key=lambda r: (r["wer"], r["cer"]))
    logger.info("best alpha=%g beta=%g: WER %.4f, CER %.4f", best["alpha"], best["beta"], best["wer"], best["cer"])
    return dict(best), table


def _run_fingerprint(run_dir):
    """Names, sizes and mtimes of the run's model files, so cached log-probs die with retraining."""
    parts = []
    for name in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, name)
        if os.path.isfile(path) and name.endswith((".keras", ".h5")):
            stat = os.stat(path)
            parts.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "\n".join(parts)


def dev_log_probs(run_dir, manifest, *, recognizer=None, batch_size=16):
    """CTC log-probabilities of every utterance of ``manifest`` under the run's model, cached.

    The cache ``RUN/dev_logprobs.npz`` is keyed by the manifest's bytes and the run's model files,
    and holds plain arrays (concatenated frames plus lengths, no pickles).

    Args:
        run_dir: str, a trained run (``speechkit.asr.inference.load_run`` reads it).
        manifest: str, a JSONL manifest (``speechkit.data.manifest``).
        recognizer: optional already-loaded Recognizer for ``run_dir``.
        batch_size: int, utterances per model call.

    Returns:
        ``(log_probs_list, utterances)``: list of float32 [frames_i, vocab] and the manifest entries.
    """
    utterances = read_manifest(manifest)
    if not utterances:
        raise ConfigError(f"{manifest}: manifest has no utterances to tune on")
    digest = hashlib.sha256()
    with open(manifest, "rb") as f:
        digest.update(f.read())
    digest.update(_run_fingerprint(run_dir).encode())
    key = digest.hexdigest()
    cache = os.path.join(run_dir, _LOGPROB_CACHE)
    if os.path.isfile(cache):
        with np.load(cache, allow_pickle=False) as data:
            if str(data["key"]) == key:
                lengths = data["lengths"]
                frames = data["log_probs"]
                logger.info("%s: using cached log-probs of %d utterances", cache, len(lengths))
                return np.split(frames, np.cumsum(lengths)[:-1]), utterances
        logger.info("%s: cache is stale (manifest or model changed); recomputing", cache)

    if recognizer is None:
        recognizer = load_run(run_dir)
    log_probs = []
    with tqdm(total=len(utterances), desc="dev log-probs", unit="utt", disable=None) as bar:
        for start in range(0, len(utterances), batch_size):
            chunk = utterances[start:start + batch_size]
            audios = [audio_io.load(u.audio, sample_rate=recognizer.frontend.sample_rate) for u in chunk]
            log_probs.extend(recognizer.log_probs(audios))
            bar.update(len(chunk))
    lengths = np.array([len(lp) for lp in log_probs], dtype=np.int64)
    tmp = f"{cache}.tmp.{os.getpid()}.npz"
    np.savez(tmp, key=np.array(key), lengths=lengths, log_probs=np.concatenate(log_probs).astype(np.float32))
    os.replace(tmp, cache)
    return [np.asarray(lp, dtype=np.float32) for lp in log_probs], utterances


def tune_run(run_dir, *, lm_dir, manifest, alphas=DEFAULT_ALPHAS, betas=DEFAULT_BETAS, beam_width=64,
             processes=1, recognizer=None):
    """Tune alpha and beta for a trained run on a dev manifest and store them in ``RUN/decode.yaml``.

    Also writes ``RUN/decode_tuning.json`` with the whole grid and the greedy and LM-free beam WER
    on the same data, so the LM's contribution is on record. A best LM WER above the greedy WER is
    logged as a warning: it means the grid, the LM or its vocabulary needs attention.

    Args:
        run_dir: str, a trained run.
        lm_dir: str, an LM directory from ``build_lm``.
        manifest: str, the dev manifest.
        alphas, betas, beam_width, processes: as for ``tune_alpha_beta``.
        recognizer: optional Recognizer already loaded from ``run_dir``.

    Returns:
        dict, the tuning report (also written to ``decode_tuning.json``).
    """
    lm_files(lm_dir)
    if recognizer is None:
        recognizer = load_run(run_dir)
    log_probs, utterances = dev_log_probs(run_dir, manifest, recognizer=recognizer)
    references = [u.text for u in utterances]
    vocabulary = recognizer.vocabulary
    greedy = build_decoder(None, vocabulary).decode_batch(log_probs)
    no_lm = build_decoder(DecodeConfig(decoder="beam", beam_width=beam_width), vocabulary)
    try:
        beam_hyps = no_lm.decode_batch(log_probs, processes=processes)
    finally:
        no_lm.close()
    greedy_wer, greedy_cer = _error_rates(references, greedy)
    beam_wer, beam_cer = _error_rates(references, beam_hyps)
    best, table = tune_alpha_beta(log_probs, references, vocabulary=vocabulary, lm_dir=lm_dir, alphas=alphas,
                                  betas=betas, beam_width=beam_width, processes=processes)
    if best["wer"] > greedy_wer:
        logger.warning("the best LM setting (WER %.4f) is worse than greedy decoding (WER %.4f)",
                       best["wer"], greedy_wer)
    config = DecodeConfig(decoder="beam", lm=os.path.abspath(lm_dir), beam_width=beam_width,
                          alpha=best["alpha"], beta=best["beta"])
    decode_yaml = RunDir(run_dir).save_decode_config(config)
    report = {
        "manifest": os.path.abspath(manifest),
        "utterances": len(utterances),
        "lm": os.path.abspath(lm_dir),
        "beam_width": beam_width,
        "greedy": {"wer": greedy_wer, "cer": greedy_cer},
        "beam_no_lm": {"wer": beam_wer, "cer": beam_cer},
        "best": best,
        "grid": table,
        "decode_yaml": decode_yaml,
    }
    atomic_write_text(os.path.join(run_dir, _TUNING_REPORT), json.dumps(report, indent=2) + "\n")
    return report
