"""Evaluate a recogniser on a manifest: WER/CER with bootstrap intervals, per speaker, worst utterances, RTF.

Unreadable audio never stops an evaluation: the utterance is skipped, counted by reason and listed
in the report, and the totals say how many utterances were scored. References are normalised like
training transcripts (``speechkit.text.normalize``), so accents fold to ASCII; a reference that
holds digits cannot be matched by a character model and is skipped as ``reference_has_digits``.
"""

import collections
import dataclasses
import json
import logging
import os
import re
import time

import numpy as np
from tqdm import tqdm

from speechkit import audio as audio_io
from speechkit import text as text_norm
from speechkit.asr.decoding import greedy_decode
from speechkit.config import atomic_write_text
from speechkit.data.manifest import SkipReport
from speechkit.errors import AudioError, SpeechkitError
from speechkit.metrics import bootstrap_ci, error_counts

__all__ = ["evaluate", "format_alignment"]

logger = logging.getLogger(__name__)


def format_alignment(ref_words, hyp_words, chunks):
    """Three aligned lines (REF, HYP, and S/D/I marks) from one jiwer alignment.

    Args:
        ref_words, hyp_words: lists of str.
        chunks: the jiwer ``AlignmentChunk`` list for this utterance.

    Returns:
        str, e.g. ``"REF: THE CAT ***\\nHYP: THE BAT SAT\\n          S   I"``.
    """
    ref, hyp, ops = [], [], []

    def column(r, h, op):
        width = max(len(r), len(h))
        ref.append(r.ljust(width))
        hyp.append(h.ljust(width))
        ops.append(op.ljust(width))

    for c in chunks:
        if c.type == "equal":
            for r in ref_words[c.ref_start_idx:c.ref_end_idx]:
                column(r, r, "")
        elif c.type == "substitute":
            for r, h in zip(ref_words[c.ref_start_idx:c.ref_end_idx], hyp_words[c.hyp_start_idx:c.hyp_end_idx]):
                column(r, h, "S")
        elif c.type == "delete":
            for r in ref_words[c.ref_start_idx:c.ref_end_idx]:
                column(r, "*" * len(r), "D")
        elif c.type == "insert":
            for h in hyp_words[c.hyp_start_idx:c.hyp_end_idx]:
                column("*" * len(h), h, "I")
    return "\n".join(["REF: " + " ".join(ref), "HYP: " + " ".join(hyp), "     " + " ".join(ops).rstrip()])


def _load(utterances, sample_rate, skips):
    for utt in utterances:
        if re.search(r"[0-9]", utt.text):
            skips.add("reference_has_digits", utt.id, f"{utt.text!r}; spell numbers out")
            continue
        text = text_norm.normalize(utt.text, allow_empty=True)
        if not text:
            skips.add("empty_reference", utt.id, utt.audio)
            continue
        if text != utt.text:
            utt = dataclasses.replace(utt, text=text)
        try:
            yield utt, audio_io.load(utt.audio, sample_rate=sample_rate)
        except AudioError as err:
            skips.add("bad_audio", utt.id, err)


def evaluate(recognizer, utterances, *, out_dir, decoder=None, worst=10, chunk=64, bootstrap=1000, seed=0,
             source=None, skip_report=None):
    """Recognise ``utterances``, score them, and write ``report.json``, ``report.md`` and ``hypotheses.jsonl``.

    Args:
        recognizer: ``speechkit.asr.inference.Recognizer`` (or anything with ``log_probs``,
            ``vocabulary`` and ``frontend``).
        utterances: list of ``Utterance`` with normalised reference text.
        out_dir: str, created if needed.
        decoder: None for greedy decoding, else an object with ``decode_batch(list of log_probs)``.
        worst: int >= 0, how many of the worst utterances (by WER) to show with alignments.
        chunk: int > 0, utterances loaded and recognised together.
        bootstrap: int > 0, bootstrap resamples for the 95% intervals.
        seed: int, bootstrap seed.
        source: optional str (e.g. the manifest path) recorded in the report.
        skip_report: optional ``SkipReport`` already holding skips (e.g. bad manifest lines); the
            report counts them together with the utterances skipped here.

    Returns:
        dict, the content of ``report.json``. ``rtf`` is front end + network wall time over audio
        time, measured after one warm-up call (graph tracing is a one-off cost); ``decode_rtf``
        adds the decoder's time.

    Raises:
        SpeechkitError: no utterance could be scored.
    """
    os.makedirs(out_dir, exist_ok=True)
    skips = skip_report if skip_report is not None else SkipReport()
    scored, hyps = [], []
    audio_seconds = model_seconds = decode_seconds = 0.0
    pending = []

    def flush():
        nonlocal audio_seconds, model_seconds, decode_seconds
        if not pending:
            return
        audios = [a for _, a in pending]
        start = time.perf_counter()
        log_probs = recognizer.log_probs(audios)
        model_seconds += time.perf_counter() - start
        start = time.perf_counter()
        texts = ([greedy_decode(lp, recognizer.vocabulary) for lp in log_probs] if decoder is None
                 else list(decoder.decode_batch(log_probs)))
        decode_seconds += time.perf_counter() - start
        audio_seconds += sum(len(a) for a in audios) / recognizer.frontend.sample_rate
        scored.extend(u for u, _ in pending)
        hyps.extend(texts)
        pending.clear()

    recognizer.log_probs([np.zeros(recognizer.frontend.sample_rate // 2, np.float32)])
    for item in tqdm(_load(utterances, recognizer.frontend.sample_rate, skips), total=len(utterances),
                     desc="recognising", unit="utt"):
        pending.append(item)
        if len(pending) >= chunk:
            flush()
    flush()
    if not scored:
        raise SpeechkitError(f"{source or 'evaluation'}: no utterance could be scored ({skips.summary()})")

    refs = [u.text for u in scored]
    word_errors, word_lengths, words = error_counts(refs, hyps, unit="word")
    char_errors, char_lengths, _ = error_counts(refs, hyps, unit="char")
    report = {
        "source": source,
        "run_dir": getattr(recognizer, "run_dir", None),
        "decoder": "greedy" if decoder is None else type(decoder).__name__,
        "utterances": len(scored),
        "words": int(word_lengths.sum()),
        "characters": int(char_lengths.sum()),
        "wer": float(word_errors.sum() / word_lengths.sum()),
        "cer": float(char_errors.sum() / char_lengths.sum()),
        "wer_ci95": list(bootstrap_ci(refs, hyps, "wer", n=bootstrap, seed=seed)),
        "cer_ci95": list(bootstrap_ci(refs, hyps, "cer", n=bootstrap, seed=seed)),
        "substitutions": int(words.substitutions),
        "deletions": int(words.deletions),
        "insertions": int(words.insertions),
        "audio_seconds": audio_seconds,
        "model_seconds": model_seconds,
        "decode_seconds": decode_seconds,
        "rtf": model_seconds / audio_seconds,
        "decode_rtf": (model_seconds + decode_seconds) / audio_seconds,
        "per_speaker": _per_speaker(scored, word_errors, word_lengths),
        "worst": _worst(scored, hyps, word_errors, word_lengths, words, worst),
        "skipped": skips.to_dict(),
    }
    lines = [json.dumps({"id": u.id, "speaker": u.speaker, "ref": r, "hyp": h}, ensure_ascii=False)
             for u, r, h in zip(scored, refs, hyps)]
    atomic_write_text(os.path.join(out_dir, "hypotheses.jsonl"), "".join(line + "\n" for line in lines))
    atomic_write_text(os.path.join(out_dir, "report.json"), json.dumps(report, indent=2) + "\n")
    atomic_write_text(os.path.join(out_dir, "report.md"), _markdown(report))
    logger.info("WER %.4f CER %.4f on %d utterances (RTF %.4f); %s", report["wer"], report["cer"], len(scored),
                report["rtf"], skips.summary())
    return report


def _per_speaker(scored, errors, lengths):
    totals = collections.defaultdict(lambda: [0, 0, 0])
    for utt, e, n in zip(scored, errors, lengths):
        totals[utt.speaker][0] += int(e)
        totals[utt.speaker][1] += int(n)
        totals[utt.speaker][2] += 1
    return {spk: {"wer": e / n, "words": n, "utterances": k} for spk, (e, n, k) in sorted(totals.items())}


def _worst(scored, hyps, errors, lengths, words, count):
    order = sorted(range(len(scored)), key=lambda i: (-errors[i] / lengths[i], -errors[i], scored[i].id))[:count]
    return [{"id": scored[i].id, "speaker": scored[i].speaker, "wer": float(errors[i] / lengths[i]),
             "errors": int(errors[i]), "ref": scored[i].text, "hyp": hyps[i],
             "alignment": format_alignment(words.references[i], words.hypotheses[i], words.alignments[i])}
            for i in order]


def _markdown(report):
    lo, hi = report["wer_ci95"]
    clo, chi = report["cer_ci95"]
    out = [
        f"# ASR evaluation: {report['source'] or ''}",
        "",
        f"- run: `{report['run_dir']}`, decoder: {report['decoder']}",
        f"- utterances scored: {report['utterances']} ({report['words']} words, "
        f"{report['audio_seconds']:.1f} s of audio); "
        f"skipped: {report['skipped']['skipped']} {report['skipped']['by_reason'] or ''}",
        "",
        "| metric | value | 95% CI (bootstrap) |",
        "|---|---|---|",
        f"| WER | {report['wer'] * 100:.2f}% | {lo * 100:.2f}–{hi * 100:.2f}% |",
        f"| CER | {report['cer'] * 100:.2f}% | {clo * 100:.2f}–{chi * 100:.2f}% |",
        f"| substitutions / deletions / insertions | {report['substitutions']} / {report['deletions']} / "
        f"{report['insertions']} | |",
        f"| RTF (front end + network) | {report['rtf']:.4f} | |",
        f"| RTF (with decoding) | {report['decode_rtf']:.4f} | |",
        "",
        "## Per speaker",
        "",
        "| speaker | utterances | words | WER |",
        "|---|---|---|---|",
    ]
    out += [f"| {spk} | {s['utterances']} | {s['words']} | {s['wer'] * 100:.2f}% |"
            for spk, s in report["per_speaker"].items()]
    out += ["", f"## Worst {len(report['worst'])} utterances", ""]
    for w in report["worst"]:
        out += [f"### {w['id']} (speaker {w['speaker']}, WER {w['wer'] * 100:.1f}%)", "",
                "```", w["alignment"], "```", ""]
    if report["skipped"]["skipped"]:
        out += ["## Skipped", ""]
        out += [f"- {reason}: {item['item']}: {item['detail']}" for reason, items in report["skipped"]["items"].items()
                for item in items]
    return "\n".join(out) + "\n"
