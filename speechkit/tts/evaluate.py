"""TTS evaluation: intelligibility to our own ASR, DTW-aligned mel distance to recordings, and synthesis speed.

For each held-out utterance (sentences never seen in TTS training), the text is synthesised and
compared with the engine's recording of the same sentence by the same voice:

- ASR WER: the released (or any) Deep Speech 2 model transcribes both the synthesised and the
  recorded audio (greedy decoding); the two corpus WERs sit side by side, so the gap is what the TTS
  loses in intelligibility.
- MCD-DTW, in dB: mel-cepstral distortion (``10 / ln 10 * sqrt(2 * sum_d (c_d - c'_d)^2)`` over
  cepstra 1..24 of the natural-log mel amplitude, orthonormal DCT-II, as in
  ``speechkit.vocoder.evaluate``) along the dynamic-time-warping path (``librosa.sequence.dtw``)
  between the recording's log-mel and (a) the predicted log-mel (the acoustic model alone) and
  (b) the log-mel of the synthesised audio (model and vocoder). Powers are floored 80 dB below the
  recording's peak.
- RTF: synthesis wall time (normalisation to waveform) over the seconds synthesised.
"""

import json
import logging
import os

import librosa
import numpy as np

from speechkit import audio as audio_io
from speechkit.config import atomic_write_text
from speechkit.frontend import log_mel
from speechkit.metrics import wer
from speechkit.spectral import cepstral_distortion_db, mel_cepstra, save_mel_pair

__all__ = ["mcd_dtw", "evaluate_tts"]

logger = logging.getLogger(__name__)

_DB = 10.0 / np.log(10.0)


def mcd_dtw(reference, estimate, *, num_cepstra=24, dynamic_range_db=80.0):
    """Mel-cepstral distortion in dB along the DTW path between two log-mels [frames, n_mels].

    Returns:
        float, the mean over the path's frame pairs.
    """
    floor = float(np.max(reference)) - dynamic_range_db / _DB
    ref = mel_cepstra(reference, floor=floor, num_cepstra=num_cepstra)
    est = mel_cepstra(estimate, floor=floor, num_cepstra=num_cepstra)
    _, path = librosa.sequence.dtw(X=ref.T, Y=est.T, metric="euclidean")
    return float(np.mean(cepstral_distortion_db(ref[path[:, 0]], est[path[:, 1]])))


def evaluate_tts(synthesizer, utterances, *, out_dir, recognizer=None, plots=4, command=None):
    """Synthesise held-out sentences and compare them with their recordings.

    Args:
        synthesizer: ``speechkit.tts.synthesis.Synthesizer``.
        utterances: list of ``speechkit.data.manifest.Utterance`` (text and the recording).
        out_dir: str, the report folder: ``report.json``, ``report.md``, ``wav/<id>.wav`` and
            ``png/<id>.png`` (recorded and synthesised spectrograms, the first ``plots`` utterances).
        recognizer: optional ``speechkit.asr.inference.Recognizer`` for the WER pair.
        plots: int >= 0.
        command: optional str, recorded in the report.

    Returns:
        dict with ``summary`` (utterances, seconds, rtf, mcd_dtw_mel_db, mcd_dtw_audio_db, and with a
        recognizer wer_recorded and wer_synthesized) and ``utterances`` (per-utterance figures).

    Raises:
        TextError: a text cannot be spoken; AudioError: a recording cannot be read.
    """
    frontend = synthesizer.frontend
    os.makedirs(os.path.join(out_dir, "wav"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "png"), exist_ok=True)
    rows, recorded, synthesized = [], [], []
    for i, utt in enumerate(utterances):
        original = audio_io.load(utt.audio, sample_rate=frontend.sample_rate)
        result = synthesizer.synthesize(utt.text, source=utt.id)
        reference = log_mel(original, config=frontend).numpy()
        predicted = np.concatenate([synthesizer.mel(p) for p in result["pieces"]])
        wav = os.path.join("wav", f"{utt.id}.wav")
        audio_io.save(os.path.join(out_dir, wav), result["audio"], sample_rate=frontend.sample_rate)
        row = {"id": utt.id, "text": utt.text, "wav": wav, "recording": utt.audio,
               "seconds_recorded": round(len(original) / frontend.sample_rate, 3),
               "seconds_synthesized": round(result["seconds"], 3),
               "synthesis_seconds": round(result["synthesis_seconds"], 3),
               "mcd_dtw_mel_db": round(mcd_dtw(reference, predicted), 3),
               "mcd_dtw_audio_db": round(mcd_dtw(reference, log_mel(result["audio"], config=frontend).numpy()), 3)}
        if i < plots:
            row["png"] = os.path.join("png", f"{utt.id}.png")
            save_mel_pair(os.path.join(out_dir, row["png"]), (original, result["audio"]), ("recorded", "synthesised"),
                          frontend=frontend, title=f"{utt.id}: {utt.text}")
        rows.append(row)
        recorded.append(original)
        synthesized.append(result["audio"])
        logger.info("%s: %.2f s in %.2f s, MCD-DTW %.2f dB (mel) %.2f dB (audio)", utt.id, result["seconds"],
                    result["synthesis_seconds"], row["mcd_dtw_mel_db"], row["mcd_dtw_audio_db"])
    seconds = sum(r["seconds_synthesized"] for r in rows)
    summary = {"utterances": len(rows), "tts_run": synthesizer.run_dir and os.path.abspath(synthesizer.run_dir),
               "vocoder": synthesizer.vocoder,
               "seconds_synthesized": round(seconds, 2),
               "rtf": round(sum(r["synthesis_seconds"] for r in rows) / max(seconds, 1e-9), 4),
               "mcd_dtw_mel_db": round(float(np.mean([r["mcd_dtw_mel_db"] for r in rows])), 3),
               "mcd_dtw_audio_db": round(float(np.mean([r["mcd_dtw_audio_db"] for r in rows])), 3)}
    if recognizer is not None:
        refs = [utt.text for utt in utterances]
        hyp_recorded = recognizer.transcribe(recorded)
        hyp_synthesized = recognizer.transcribe(synthesized)
        for row, a, b in zip(rows, hyp_recorded, hyp_synthesized):
            row["asr_recorded"], row["asr_synthesized"] = a, b
        summary.update(asr_run=str(recognizer.run_dir), wer_recorded=round(wer(refs, hyp_recorded), 4),
                       wer_synthesized=round(wer(refs, hyp_synthesized), 4))
    report = {"command": command, "summary": summary, "utterances": rows}
    atomic_write_text(os.path.join(out_dir, "report.json"), json.dumps(report, indent=1) + "\n")
    atomic_write_text(os.path.join(out_dir, "report.md"), _markdown(report))
    return report


def _markdown(report):
    s = report["summary"]
    lines = ["# TTS evaluation", "", f"Command: `{report['command']}`" if report["command"] else "", "",
             f"- utterances: {s['utterances']}, {s['seconds_synthesized']:.1f} s synthesised with {s['vocoder']}; "
             f"RTF {s['rtf']:.3f}",
             f"- MCD-DTW against the recordings: {s['mcd_dtw_mel_db']:.2f} dB (predicted mel), "
             f"{s['mcd_dtw_audio_db']:.2f} dB (synthesised audio)"]
    if "wer_recorded" in s:
        lines.append(f"- ASR WER ({s['asr_run']}, greedy): recorded {s['wer_recorded'] * 100:.1f}%, synthesised "
                     f"{s['wer_synthesized'] * 100:.1f}%")
    lines += ["", "| id | text | ASR (synthesised) | MCD-DTW mel dB | audio |", "|---|---|---|---|---|"]
    for r in report["utterances"]:
        lines.append(f"| {r['id']} | {r['text']} | {r.get('asr_synthesized', '')} | {r['mcd_dtw_mel_db']:.2f} | "
                     f"[wav]({r['wav']})" + (f" ![spectrograms]({r['png']})" if "png" in r else "") + " |")
    return "\n".join(lines) + "\n"
