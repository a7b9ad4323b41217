"""Parity of exported models with the Keras models they came from, on real utterances.

``check_exports`` is what recipe stage 9 runs after exporting: it reloads the SavedModels (and
``model.tflite`` when present), feeds them padded batches of test utterances, and compares with
the in-process Keras models: ASR log-probabilities over the valid frames, the in-graph greedy
transcripts against ``greedy_decode`` of the same log-probabilities, and vocoder samples at
temperature 0 against ``Vocoder.vocode(..., backend="tf")``.
"""

import json
import logging
import os

import numpy as np

from speechkit import audio as audio_io
from speechkit.asr.decoding import greedy_decode
from speechkit.asr.inference import load_run
from speechkit.config import atomic_write_text
from speechkit.data.manifest import read_manifest
from speechkit.errors import AudioError
from speechkit.export.asr import FRONTEND_FILE, TFLITE_FILE, ExportedRecognizer, ExportError, TFLiteRecognizer
from speechkit.export.vocoder import ExportedVocoder
from speechkit.vocoder.generation import load_vocoder

__all__ = ["check_asr_export", "check_vocoder_export", "check_exports"]

logger = logging.getLogger(__name__)


def _load_audios(utterances, sample_rate, limit, max_seconds=None):
    audios, ids = [], []
    for utt in utterances:
        if len(audios) >= limit:
            break
        try:
            audio = audio_io.load(utt.audio, sample_rate=sample_rate)
        except AudioError as err:
            logger.warning("skipped %s: %s", utt.id, err)
            continue
        if max_seconds is not None:
            audio = audio[:int(max_seconds * sample_rate)]
        audios.append(audio)
        ids.append(utt.id)
    if not audios:
        raise ExportError("no readable utterance in the manifest to check the exports with")
    return audios, ids


def check_asr_export(export_dir, run_dir, utterances, *, limit=4, batch_size=4):
    """Compare an ASR export with its run on up to ``limit`` utterances.

    Returns:
        dict with ``utterances``, ``max_abs_diff`` (SavedModel vs Keras log-probs), ``frame_mismatches``
        (utterances whose frame counts differ), ``transcript_mismatches`` (in-graph greedy vs
        ``greedy_decode`` of the exported log-probs) and, when ``model.tflite`` exists,
        ``tflite_max_abs_diff`` (TFLite vs SavedModel).
    """
    recognizer = load_run(run_dir)
    exported = ExportedRecognizer(export_dir, batch_size=batch_size)
    recognizer.frontend.check_matches(exported.frontend, source=os.path.join(export_dir, FRONTEND_FILE))
    audios, ids = _load_audios(utterances, recognizer.frontend.sample_rate, limit)
    reference = recognizer.log_probs(audios)
    log_probs, texts = exported.run(audios)
    frame_mismatches = [i for i, a, b in zip(ids, reference, log_probs) if a.shape != b.shape]
    diffs = [float(np.abs(a - b).max()) for a, b in zip(reference, log_probs) if a.shape == b.shape and a.size]
    result = {
        "export": export_dir,
        "utterances": len(audios),
        "audio_seconds": sum(len(a) for a in audios) / recognizer.frontend.sample_rate,
        "max_abs_diff": max(diffs, default=0.0),
        "frame_mismatches": frame_mismatches,
        "transcript_mismatches": [i for i, lp, t in zip(ids, log_probs, texts)
                                  if greedy_decode(lp, exported.vocabulary) != t],
        "examples": [{"id": i, "transcript": t} for i, t in zip(ids[:3], texts[:3])],
    }
    if os.path.isfile(os.path.join(export_dir, TFLITE_FILE)):
        lite = TFLiteRecognizer(export_dir).log_probs(audios)
        lite_diffs = [float(np.abs(a - b).max()) for a, b in zip(lite, log_probs) if a.shape == b.shape]
        result["tflite_frame_mismatches"] = [i for i, a, b in zip(ids, lite, log_probs) if a.shape != b.shape]
        result["tflite_max_abs_diff"] = max(lite_diffs, default=0.0)
    return result


def check_vocoder_export(export_dir, run_dir, utterances, *, limit=2, max_seconds=0.5):
    """Compare a vocoder export with its run at temperature 0 on up to ``limit`` utterance heads.

    Returns:
        dict with ``utterances``, ``samples`` and ``max_abs_diff`` (exported ``vocode_waveform`` vs
        ``Vocoder.vocode(..., backend="tf", temperature=0)``).
    """
    vocoder = load_vocoder(run_dir)
    exported = ExportedVocoder(export_dir)
    vocoder.frontend.check_matches(exported.frontend, source=os.path.join(export_dir, FRONTEND_FILE))
    audios, ids = _load_audios(utterances, vocoder.frontend.sample_rate, limit, max_seconds)
    speaker = 0 if exported.has_speakers else None
    reference = vocoder.vocode(audios, temperature=0.0, speaker=speaker, backend="tf", batch_size=len(audios))
    got = exported.vocode(audios, temperature=0.0, speaker=speaker, batch_size=len(audios))
    difference = np.concatenate([a - b for a, b in zip(reference, got)])
    return {
        "export": export_dir,
        "utterances": len(audios),
        "samples": int(sum(len(a) for a in audios)),
        "lpc_order": vocoder.config.lpc_order,
        "max_abs_diff": max(float(np.abs(a - b).max()) for a, b in zip(reference, got)),
        "differing_samples": int(sum(int(np.sum(np.abs(a - b) > 1e-4)) for a, b in zip(reference, got))),
        "relative_rms_diff": float(np.sqrt(np.mean(difference ** 2) / max(np.mean(np.concatenate(reference) ** 2),
                                                                          1e-20))),
    }


def check_exports(export_root, *, manifest, asr_run=None, vocoder_run=None, limit=4, vocoder_limit=2,
                  vocoder_seconds=0.5, atol=1e-4, tflite_atol=1e-3, lpc_rtol=1e-3):
    """Check ``EXPORT_ROOT/asr`` against ``asr_run`` and ``EXPORT_ROOT/vocoder`` against ``vocoder_run``.

    Writes ``EXPORT_ROOT/check.json``.

    Args:
        export_root: str, folder holding ``asr/`` and/or ``vocoder/`` exports.
        manifest: str, JSONL manifest; its first readable utterances are used.
        asr_run, vocoder_run: str or None; a part is checked only when its run is given.
        limit: int, ASR utterances. vocoder_limit, vocoder_seconds: vocoder utterances and the
            seconds kept from the start of each (generation is sample by sample).
        atol: float, largest allowed difference for SavedModel vs Keras (log-probs and samples).
        tflite_atol: float, largest allowed difference for TFLite vs SavedModel log-probs.
        lpc_rtol: float, largest allowed RMS of the difference over the RMS of the waveform for a vocoder
            of the LPC residual, whose samples cannot agree to ``atol``.

    Returns:
        dict report with ``passed`` and ``failures`` (list of str).
    """
    if asr_run is None and vocoder_run is None:
        raise ExportError("nothing to check: give an ASR run, a vocoder run, or both")
    utterances = read_manifest(manifest)
    report = {"manifest": manifest, "atol": atol, "tflite_atol": tflite_atol, "lpc_rtol": lpc_rtol, "failures": []}
    failures = report["failures"]
    if asr_run is not None:
        asr = report["asr"] = check_asr_export(os.path.join(export_root, "asr"), asr_run, utterances, limit=limit)
        if asr["max_abs_diff"] > atol:
            failures.append(f"ASR log-probs differ by {asr['max_abs_diff']:.3g} > {atol:g}")
        if asr["frame_mismatches"]:
            failures.append(f"ASR frame counts differ for {asr['frame_mismatches']}")
        if asr["transcript_mismatches"]:
            failures.append(f"in-graph greedy transcripts differ for {asr['transcript_mismatches']}")
        if asr.get("tflite_max_abs_diff", 0.0) > tflite_atol or asr.get("tflite_frame_mismatches"):
            failures.append(f"TFLite log-probs differ by {asr['tflite_max_abs_diff']:.3g} > {tflite_atol:g} "
                            f"(frame mismatches: {asr.get('tflite_frame_mismatches')})")
    if vocoder_run is not None:
        voc = report["vocoder"] = check_vocoder_export(os.path.join(export_root, "vocoder"), vocoder_run, utterances,
                                                       limit=vocoder_limit, max_seconds=vocoder_seconds)
        if voc["lpc_order"]:
            # The exported filter takes its coefficients from the graph's mel, whose last bits differ from the
            # eager one (1e-6), and order-16 coefficients magnify that (1e-3): same draws, slightly other filter.
            # Draws that part ways make the waveforms unrelated (relative difference near 1).
            if voc["relative_rms_diff"] > lpc_rtol:
                failures.append(f"LPC vocoder waveforms differ by {voc['relative_rms_diff']:.3g} of their RMS > "
                                f"{lpc_rtol:g}")
        elif voc["max_abs_diff"] > atol:
            failures.append(f"vocoder samples differ by {voc['max_abs_diff']:.3g} > {atol:g} "
                            f"({voc['differing_samples']} of {voc['samples']} samples)")
    report["passed"] = not failures
    atomic_write_text(os.path.join(export_root, "check.json"), json.dumps(report, indent=2) + "\n")
    return report
