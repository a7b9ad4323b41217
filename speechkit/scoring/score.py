"""Score one or more systems' transcripts against a reference: WER, CER, intervals, errors by kind and speaker.

``score_sets`` pairs the utterances of a reference and of each hypothesis set by id, normalises both
sides with the same ``Normalizer``, aligns the words with sclite's weights (``speechkit.scoring.align``),
and returns a plain dict (the JSON report) that ``speechkit.scoring.report`` renders as Markdown and HTML.

Definitions:

- WER = (S + D + I) / N over the corpus, N the reference words, from sclite-weighted word alignments.
- CER = character Levenshtein distance (unit weights; single spaces between words count) over reference
  characters, as ``jiwer.cer`` (computed by rapidfuzz, jiwer's engine).
- SER = share of utterances with at least one word error.
- 95% intervals: percentile bootstrap over utterances (``bootstrap`` resamples, shared by all systems).

Utterances missing on either side are listed per system. With ``missing="error"`` any missing utterance
raises ``TextError``; with ``missing="empty"`` a missing hypothesis is scored as empty (all its reference
words are deletions) and a hypothesis without a reference is scored against an empty reference (all its
words are insertions).
"""

import collections
import dataclasses
import logging
import os
import re

import numpy as np
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cpdist

from speechkit.config import Config
from speechkit.errors import ConfigError, TextError
from speechkit.scoring.align import OP_DEL, OP_INS, OP_SUB, SCLITE_WEIGHTS, align_corpus, format_alignment
from speechkit.scoring.formats import read_transcripts
from speechkit.scoring.normalize import Normalizer, NormalizerConfig
from speechkit.scoring.sclite import crosscheck
from speechkit.scoring.significance import bootstrap_sums, mapsswe, paired_bootstrap, rate_interval, sign_test

__all__ = ["ScoreConfig", "MISSING_POLICIES", "score_sets", "score_files", "match_ids"]

logger = logging.getLogger(__name__)

MISSING_POLICIES = ("error", "empty")
_NO_SPEAKER_MATCH = "(no match)"


@dataclasses.dataclass(frozen=True)
class ScoreConfig(Config):
    """Scoring options.

    Args:
        normalizer: NormalizerConfig, applied to references and hypotheses alike.
        missing: ``"error"`` (any utterance missing on either side raises) or ``"empty"`` (score it as empty).
        speaker_pattern: str or None, a regular expression searched in each utterance id; the speaker is its
            group ``speaker``, else its first group, else the whole match (for LibriSpeech ids
            ``1089-134686-0000``: ``^[^-]+``). None takes speakers from the reference file (manifests,
            three-column TSV), else from the hypothesis files, else reports no speakers.
        bootstrap: int >= 1, resamples for the intervals and the paired bootstrap.
        confidence: float in (0, 1), for every interval.
        seed: int, bootstrap seed.
        worst: int >= 0, worst utterances shown per system with their alignment.
        confusions: int >= 0, most frequent substitutions (and deletions, insertions) listed per system.
        min_good: int >= 1, MAPSSWE segment boundary (sclite's default is 2).
    """

    normalizer: NormalizerConfig = dataclasses.field(default_factory=NormalizerConfig)
    missing: str = "error"
    speaker_pattern: str | None = None
    bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0
    worst: int = 10
    confusions: int = 20
    min_good: int = 2

    def __post_init__(self):
        if self.missing not in MISSING_POLICIES:
            raise ConfigError(f"missing must be one of {MISSING_POLICIES}, received: {self.missing!r}")
        if self.speaker_pattern is not None:
            try:
                re.compile(self.speaker_pattern)
            except re.error as err:
                raise ConfigError(f"speaker_pattern {self.speaker_pattern!r} is not a valid regular expression: "
                                  f"{err}") from None
        for name in ("bootstrap", "min_good"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be an int >= 1, received: {getattr(self, name)!r}")
        for name in ("worst", "confusions", "seed"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConfigError(f"{name} must be an int >= 0, received: {getattr(self, name)!r}")
        if not 0 < self.confidence < 1:
            raise ConfigError(f"confidence must lie in (0, 1), received: {self.confidence!r}")


def match_ids(reference, hypothesis):
    """Map each hypothesis id to a reference id.

    An id matches itself. When the reference carries audio paths (a manifest) and the hypothesis ids look
    like paths (``speechkit transcribe`` output), a hypothesis id also matches the utterance whose audio
    has that path, or that file name without extension when only one reference audio has it.

    Args:
        reference, hypothesis: TranscriptSet.

    Returns:
        dict hypothesis id -> reference id (ids with no match map to themselves).
    """
    by_path, by_stem = {}, collections.defaultdict(list)
    for utt_id, item in reference.items.items():
        if item.audio:
            by_path[os.path.normpath(item.audio)] = utt_id
            by_stem[os.path.splitext(os.path.basename(item.audio))[0]].append(utt_id)
    mapping = {}
    base = os.path.dirname(os.path.abspath(hypothesis.path))
    for hyp_id in hypothesis.items:
        if hyp_id in reference.items or not by_path:
            mapping[hyp_id] = hyp_id
            continue
        absolute = os.path.normpath(hyp_id if os.path.isabs(hyp_id) else os.path.join(base, hyp_id))
        stem = os.path.splitext(os.path.basename(hyp_id))[0]
        if absolute in by_path:
            mapping[hyp_id] = by_path[absolute]
        elif os.path.abspath(hyp_id) in by_path:
            mapping[hyp_id] = by_path[os.path.abspath(hyp_id)]
        elif len(by_stem.get(stem, ())) == 1:
            mapping[hyp_id] = by_stem[stem][0]
        elif stem in reference.items:
            mapping[hyp_id] = stem
        else:
            mapping[hyp_id] = hyp_id
    return mapping


def _missing_message(name, path, missing, extra):
    parts = []
    if missing:
        parts.append(f"{len(missing)} reference utterance(s) have no hypothesis (first: {missing[:5]})")
    if extra:
        parts.append(f"{len(extra)} hypothesis utterance(s) have no reference (first: {extra[:5]})")
    return f"{path}: system {name!r}: " + "; ".join(parts)


def _speakers(ids, reference, hyps, pattern):
    if pattern is not None:
        regex = re.compile(pattern)
        out = []
        for utt_id in ids:
            m = regex.search(utt_id)
            if m is None:
                out.append(_NO_SPEAKER_MATCH)
            elif "speaker" in regex.groupindex:
                out.append(m.group("speaker"))
            else:
                out.append(m.group(1) if regex.groups else m.group(0))
        return out
    out = []
    for utt_id in ids:
        speaker = reference.items[utt_id].speaker if utt_id in reference.items else None
        for hyp in hyps:
            if speaker is None and utt_id in hyp:
                speaker = hyp[utt_id].speaker
        out.append(speaker)
    return out if any(s is not None for s in out) else None


def score_sets(reference, systems, *, config=None, sclite=False):
    """Score systems against a reference.

    Args:
        reference: ``TranscriptSet`` (read with ``role="ref"``).
        systems: list of ``(name, TranscriptSet)`` (read with ``role="hyp"``), names unique.
        config: ScoreConfig or None (defaults).
        sclite: bool, also score every system with NIST sclite on the same normalised pairs and add its
            counts and the agreement to each system (``sclite``; needs Debian's ``sctk``).

    Returns:
        dict, the JSON report: ``reference``, ``normalizer``, ``utterances``, ``words``, ``characters``,
        ``systems`` (one dict each: ``wer``, ``wer_interval``, ``cer``, ``cer_interval``, ``ser``, counts
        ``correct``/``substitutions``/``deletions``/``insertions``, ``missing``, ``per_speaker``,
        ``confusions``, ``worst``), and ``comparisons`` (each pair: paired bootstrap, MAPSSWE, sign test).

    Raises:
        TextError: utterances are missing and ``config.missing == "error"``, or no utterance is left.
        ConfigError: duplicate system names.
    """
    config = config or ScoreConfig()
    names = [name for name, _ in systems]
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"need at least one system and unique system names, received: {names}")
    normalize = Normalizer(config.normalizer)
    hyp_texts, missing_by_system, problems = [], [], []
    ids = list(reference.items)
    known = set(ids)
    for name, hyp in systems:
        mapping = match_ids(reference, hyp)
        texts = {}
        for hyp_id, item in hyp.items.items():
            ref_id = mapping[hyp_id]
            if ref_id in texts:
                raise TextError(f"{hyp.path}:{item.line}: utterance {hyp_id!r} maps to reference id {ref_id!r}, "
                                "which another line already matched")
            texts[ref_id] = item.text
        missing = [u for u in reference.items if u not in texts]
        extra = [u for u in texts if u not in reference.items]
        if missing or extra:
            problems.append(_missing_message(name, hyp.path, missing, extra))
        for u in extra:
            if u not in known:
                known.add(u)
                ids.append(u)
        hyp_texts.append(texts)
        missing_by_system.append({"missing_hypotheses": missing, "extra_hypotheses": extra})
    if problems and config.missing == "error":
        raise TextError("; ".join(problems) + ". Fix the files, or score missing utterances as empty "
                        "(missing policy 'empty').")
    if not ids:
        raise TextError(f"{reference.path}: no utterances to score")
    refs = normalize.batch([reference.items[u].text if u in reference.items else "" for u in ids])
    hyps_norm = [normalize.batch([t.get(u, "") for u in ids]) for t in hyp_texts]
    speakers = _speakers(ids, reference, [h for _, h in systems], config.speaker_pattern)

    ref_words = np.array([len(r.split()) for r in refs], np.int64)
    ref_chars = np.array([len(r) for r in refs], np.int64)
    alignments = [align_corpus(refs, hyps, unit="word", weights=SCLITE_WEIGHTS) for hyps in hyps_norm]
    char_errors = [np.asarray(cpdist(refs, hyps, scorer=Levenshtein.distance, workers=-1), np.int64)
                   for hyps in hyps_norm]
    columns = [ref_words, ref_chars]
    for al, ce in zip(alignments, char_errors):
        columns += [al.errors, ce]
    sums = bootstrap_sums(np.stack(columns, axis=1), resamples=config.bootstrap, seed=config.seed)

    n_words, n_chars = int(ref_words.sum()), int(ref_chars.sum())
    report = {
        "reference": reference.path,
        "reference_format": reference.format,
        "normalizer": config.normalizer.to_dict(),
        "missing_policy": config.missing,
        "utterances": len(ids),
        "words": n_words,
        "characters": n_chars,
        "bootstrap": config.bootstrap,
        "confidence": config.confidence,
        "speakers": speakers is not None,
        "systems": [],
        "comparisons": [],
    }
    for k, ((name, hyp), al, ce, miss) in enumerate(zip(systems, alignments, char_errors, missing_by_system)):
        c, s, d, i = (int(x) for x in al.counts.sum(axis=0))
        errors = al.errors
        report["systems"].append({
            "name": name,
            "path": hyp.path,
            "format": hyp.format,
            "wer": _rate(s + d + i, n_words),
            "wer_interval": list(rate_interval(sums[:, 2 + 2 * k], sums[:, 0], confidence=config.confidence)),
            "cer": _rate(int(ce.sum()), n_chars),
            "cer_interval": list(rate_interval(sums[:, 3 + 2 * k], sums[:, 1], confidence=config.confidence)),
            "ser": float(np.mean(errors > 0)),
            "correct": c, "substitutions": s, "deletions": d, "insertions": i, "errors": s + d + i,
            "missing": {"missing_hypotheses": miss["missing_hypotheses"],
                        "extra_hypotheses": miss["extra_hypotheses"],
                        "count": len(miss["missing_hypotheses"]) + len(miss["extra_hypotheses"])},
            "per_speaker": _per_speaker(speakers, al, ref_words) if speakers is not None else None,
            "confusions": _confusions(al, config.confusions),
            "worst": _worst(ids, speakers, refs, hyps_norm[k], al, config.worst),
        })
        if sclite:
            check = crosscheck(refs, hyps_norm[k])
            report["systems"][-1]["sclite"] = {"counts": check["sclite"], "agree": check["agree"],
                                               "mismatches": [dict(m, id=ids[m["index"]]) for m in check["mismatches"]]}
    for a in range(len(systems)):
        for b in range(a + 1, len(systems)):
            boot = paired_bootstrap(sums[:, 2 + 2 * a], sums[:, 2 + 2 * b], sums[:, 0], confidence=config.confidence)
            report["comparisons"].append({
                "a": systems[a][0], "b": systems[b][0],
                "wer_difference": report["systems"][a]["wer"] - report["systems"][b]["wer"],
                "paired_bootstrap": boot,
                "mapsswe": mapsswe(alignments[a], alignments[b], min_good=config.min_good),
                "sign_test": sign_test(alignments[a].errors, alignments[b].errors),
            })
    logger.info("scored %d utterances (%d words) of %s: %s", len(ids), n_words, reference.path,
                ", ".join(f"{s['name']} WER {s['wer'] * 100:.2f}%" for s in report["systems"]))
    return report


def _rate(errors, total):
    if total == 0:
        return 0.0 if errors == 0 else float("inf")
    return errors / total


def _per_speaker(speakers, al, ref_words):
    table = collections.defaultdict(lambda: np.zeros(6, np.int64))
    for spk, counts, n in zip(speakers, al.counts, ref_words):
        row = table["(none)" if spk is None else spk]
        row[:4] += counts
        row[4] += n
        row[5] += 1
    out = {}
    for spk in sorted(table):
        c, s, d, i, n, utts = (int(x) for x in table[spk])
        out[spk] = {"utterances": utts, "words": n, "substitutions": s, "deletions": d, "insertions": i,
                    "wer": _rate(s + d + i, n)}
    return out


def _confusions(al, top):
    ops, ref_ids, hyp_ids = al.op_tokens()
    vocab = al.vocabulary

    def most_common(mask, keys):
        if top == 0 or not mask.any():
            return []
        values, counts = np.unique(keys[mask], return_counts=True, axis=0)
        order = np.lexsort((np.arange(len(counts)), -counts))[:top]
        return [(values[j], int(counts[j])) for j in order]

    pairs = np.stack([ref_ids, hyp_ids], axis=1)
    return {
        "substitutions": [{"ref": vocab[r], "hyp": vocab[h], "count": n}
                          for (r, h), n in most_common(ops == OP_SUB, pairs)],
        "deletions": [{"ref": vocab[r], "count": n} for r, n in most_common(ops == OP_DEL, ref_ids)],
        "insertions": [{"hyp": vocab[h], "count": n} for h, n in most_common(ops == OP_INS, hyp_ids)],
    }


def _worst(ids, speakers, refs, hyps, al, count):
    if count == 0:
        return []
    errors = al.errors
    rates = errors / np.maximum(al.ref_lengths, 1)
    order = np.lexsort((np.arange(len(ids)), -errors, -rates))
    out = []
    for j in order[:count]:
        if errors[j] == 0:
            break
        out.append({"id": ids[j], "speaker": None if speakers is None else speakers[j],
                    "errors": int(errors[j]), "words": int(al.ref_lengths[j]), "wer": float(rates[j]),
                    "ref": refs[j], "hyp": hyps[j], "alignment": format_alignment(al.pair(int(j)))})
    return out


def score_files(reference_path, hypothesis_paths, *, names=None, ref_format=None, hyp_format=None, config=None,
                sclite=False):
    """Read a reference and hypothesis files and score them (``score_sets``).

    Args:
        reference_path: str.
        hypothesis_paths: list of str.
        names: optional list of str, one system name per hypothesis file; defaults to the file names
            (with their parent folder when two files share a name).
        ref_format, hyp_format: one of ``speechkit.scoring.formats.FORMATS`` or None to detect each file's.
        config: ScoreConfig or None.
        sclite: bool, as ``score_sets``.

    Returns:
        dict, as ``score_sets``.
    """
    reference = read_transcripts(reference_path, format=ref_format, role="ref")
    hyps = [read_transcripts(p, format=hyp_format, role="hyp") for p in hypothesis_paths]
    if names is None:
        names = _default_names(hypothesis_paths)
    elif len(names) != len(hypothesis_paths):
        raise ConfigError(f"need one name per hypothesis file: {len(names)} name(s) for {len(hypothesis_paths)} "
                          "file(s)")
    return score_sets(reference, list(zip(names, hyps)), config=config, sclite=sclite)


def _default_names(paths):
    names = [os.path.basename(p) for p in paths]
    if len(set(names)) == len(names):
        return names
    names = [os.path.join(os.path.basename(os.path.dirname(os.path.abspath(p))), os.path.basename(p)) for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{i + 1}:{p}" for i, p in enumerate(paths)]
