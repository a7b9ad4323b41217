"""Copy-synthesis evaluation: spectral distortion of vocoded audio, and ASR WER on it.

Copy synthesis regenerates each held-out utterance from its own log-mel, so the output is sample-
aligned with the original and the distortions are computed frame by frame with no time warping:

- Log-spectral distance (LSD), in dB: per frame, the RMS over frequency bins of
  ``10 log10 P_ref - 10 log10 P_voc`` on the front end's 20 ms power spectrogram, then the mean
  over frames.
- Mel-cepstral distortion (MCD), in dB: ``10 / ln 10 * sqrt(2 * sum_d (c_d - c'_d)^2)`` over
  cepstra ``d = 1 .. num_cepstra`` (``c_0``, the level, is left out), mean over frames. The cepstra
  are the orthonormal DCT-II of the natural-log mel amplitude (the front end's 80 bands), in the
  spirit of Kubichek (1993); they are not SPTK mel-generalised cepstra, so compare values within
  speechkit rather than with published MCDs.

Both floor the powers at ``dynamic_range_db`` below the reference utterance's peak, so that exact
digital silence in the reference does not turn into arbitrarily large distances, and both average
over active frames only: those whose reference energy is within ``active_db`` of the utterance's
loudest frame. Without that, the (synthetic, often digitally silent) pauses between words dominate
the mean with the level of the vocoder's background noise.

As a reference point, the same distances are reported for the original audio merely quantised to
8-bit mu-law (for a model of the LPC residual: its residual quantised and filtered back): the floor
a 256-class WaveNet cannot go below. A residual model also gets the filter alone, driven by white
noise at the residual's level: the ceiling its network's excitation has to get under. With an ASR
run, the report puts the WER of the vocoded audio next to the WER of the original audio (the two
model families check each other).

Intelligible is not yet voiced. So the report also compares pitch tracks with the originals', from
librosa's pYIN at the front end's hop (``pitch_agreement``), for the vocoded audio, for the network's
output before the post-filter, and for the filter alone (after the post-filter as well, which can put back
the lowest harmonics that the mel's narrow low bands resolve): the share of voiced frames in each, the
voicing decision error (VDE: frames whose voiced/unvoiced decisions differ), the gross pitch error (GPE:
frames voiced in both whose pitch is off by more than 20%) and the median pitch error in cents over the
frames voiced in both.
"""

import json
import logging
import os
import time

import librosa
import numpy as np

from speechkit import audio as audio_io
from speechkit.config import atomic_write_text
from speechkit.data.manifest import SkipReport
from speechkit.errors import AudioError, SpeechkitError
from speechkit.frontend import log_mel, mel_filterbank, power_spectrogram
from speechkit.metrics import wer
from speechkit.spectral import cepstral_distortion_db, mel_cepstra, save_mel_pair

__all__ = ["log_spectral_distance", "mel_cepstral_distortion", "pitch_track", "pitch_agreement", "evaluate_vocoder"]

logger = logging.getLogger(__name__)

_DB = 10.0 / np.log(10.0)


def _floored(power, reference_peak, dynamic_range_db):
    return np.maximum(power, reference_peak * 10.0 ** (-dynamic_range_db / 10.0) + 1e-30)


def _check_pair(reference, estimate):
    reference = audio_io.valid_audio(reference, source="reference")
    estimate = audio_io.valid_audio(estimate, source="estimate")
    if len(reference) != len(estimate):
        raise AudioError(f"copy-synthesis distances need equal lengths, received {len(reference)} and "
                         f"{len(estimate)} samples")
    return reference, estimate


def _active(frame_power, active_db):
    energy = frame_power.sum(axis=-1)
    return energy >= energy.max() * 10.0 ** (-active_db / 10.0)


def log_spectral_distance(reference, estimate, *, frontend, dynamic_range_db=80.0, active_db=40.0):
    """Mean per-frame log-spectral distance in dB between two sample-aligned waveforms.

    Args:
        reference, estimate: float32 [samples] in [-1, 1], same length.
        frontend: FrontendConfig (its 20 ms spectrogram window and hop are used).
        dynamic_range_db: float > 0, powers are floored this far below the reference's peak.
        active_db: float > 0, only frames whose reference energy is within this of the loudest count.

    Returns:
        float >= 0, dB (0 for identical signals).
    """
    reference, estimate = _check_pair(reference, estimate)
    p_ref = power_spectrogram(reference, config=frontend).numpy().astype(np.float64)
    p_est = power_spectrogram(estimate, config=frontend).numpy().astype(np.float64)
    peak = p_ref.max()
    diff = 10.0 * (np.log10(_floored(p_ref, peak, dynamic_range_db))
                   - np.log10(_floored(p_est, peak, dynamic_range_db)))
    return float(np.mean(np.sqrt(np.mean(diff ** 2, axis=-1))[_active(p_ref, active_db)]))


def _mel_cepstra(power, filterbank, peak, dynamic_range_db, num_cepstra):
    return mel_cepstra(np.log(power @ filterbank + 1e-30), floor=np.log(peak) - dynamic_range_db / _DB,
                       num_cepstra=num_cepstra)


def mel_cepstral_distortion(reference, estimate, *, frontend, num_cepstra=24, dynamic_range_db=80.0, active_db=40.0):
    """Mean per-frame mel-cepstral distortion in dB between two sample-aligned waveforms.

    Args:
        reference, estimate: float32 [samples] in [-1, 1], same length.
        frontend: FrontendConfig (its mel window, FFT size and filterbank are used).
        num_cepstra: int in [1, n_mels), cepstra compared (``c_1 .. c_num_cepstra``).
        dynamic_range_db: float > 0, mel powers are floored this far below the reference's peak.
        active_db: float > 0, only frames whose reference energy is within this of the loudest count.

    Returns:
        float >= 0, dB.
    """
    if not 1 <= num_cepstra < frontend.n_mels:
        raise SpeechkitError(f"num_cepstra must be in [1, {frontend.n_mels}), received {num_cepstra}")
    reference, estimate = _check_pair(reference, estimate)
    kwargs = dict(config=frontend, frame_length=frontend.mel_frame_length, fft_length=frontend.mel_fft_length)
    p_ref = power_spectrogram(reference, **kwargs).numpy().astype(np.float64)
    p_est = power_spectrogram(estimate, **kwargs).numpy().astype(np.float64)
    fb = mel_filterbank(frontend).numpy().astype(np.float64)
    peak = (p_ref @ fb).max()
    c_ref = _mel_cepstra(p_ref, fb, peak, dynamic_range_db, num_cepstra)
    c_est = _mel_cepstra(p_est, fb, peak, dynamic_range_db, num_cepstra)
    return float(np.mean(cepstral_distortion_db(c_ref, c_est)[_active(p_ref, active_db)]))


def pitch_track(audio, *, frontend, fmin=50.0, fmax=400.0):
    """pYIN's pitch (Hz, NaN where unvoiced) and voiced flags per front-end hop, as float64 and bool numpy [frames]."""
    f0, voiced, _ = librosa.pyin(np.asarray(audio, np.float32), fmin=fmin, fmax=fmax, sr=frontend.sample_rate,
                                 frame_length=1024, hop_length=frontend.hop_length)
    return f0, voiced


def pitch_agreement(tracks):
    """Pitch measures of estimate tracks against reference tracks, pooled over all frames.

    Args:
        tracks: list of ``(reference, estimate)`` pairs of ``pitch_track`` results.

    Returns:
        dict: ``voiced_reference`` and ``voiced_estimate`` (shares of frames), ``vde`` (share of frames whose
        voicing differs), ``gpe`` (share of the frames voiced in both whose pitch is off by more than 20%),
        ``f0_error_cents`` (median over those frames; None when no frame is voiced in both).
    """
    frames = [min(len(reference[0]), len(estimate[0])) for reference, estimate in tracks]

    def pooled(side, field):
        return np.concatenate([pair[side][field][:n] for pair, n in zip(tracks, frames)])

    ref_f0, ref_v, est_f0, est_v = pooled(0, 0), pooled(0, 1), pooled(1, 0), pooled(1, 1)
    both = ref_v & est_v & np.isfinite(ref_f0) & np.isfinite(est_f0)
    ratio = est_f0[both] / ref_f0[both]
    return {"voiced_reference": float(ref_v.mean()), "voiced_estimate": float(est_v.mean()),
            "vde": float(np.mean(ref_v != est_v)),
            "gpe": float(np.mean(np.abs(ratio - 1.0) > 0.2)) if both.any() else None,
            "f0_error_cents": float(np.median(np.abs(1200.0 * np.log2(ratio)))) if both.any() else None}


def evaluate_vocoder(vocoder, utterances, *, out_dir, recognizer=None, temperature=1.0, seed=0, speaker=None,
                     backend="fast", batch_size=8, plots=4, command=None, postfilter=None):
    """Copy-synthesise ``utterances`` and write ``report.json``, ``report.md``, ``wav/`` and ``png/``.

    Args:
        vocoder: ``speechkit.vocoder.generation.Vocoder`` with a mel-conditioned model.
        utterances: list of ``speechkit.data.manifest.Utterance``.
        out_dir: str, the report folder (created).
        recognizer: optional ``speechkit.asr.inference.Recognizer``; adds the WER of the original and
            the vocoded audio (greedy decoding).
        temperature, seed, speaker, backend, batch_size: as for ``Vocoder.vocode``.
        plots: int >= 0, utterances (in manifest order) that get a spectrogram PNG.
        command: str or None, recorded in the report.
        postfilter: int >= 0 or None, mel post-filter passes (None: the model's ``mel_postfilter``). With
            passes, the WERs without them are reported too, for the network and for the filter alone, so
            that what the post-filter does and what the network does stay apart.

    Returns:
        dict, the content of ``report.json``.

    Raises:
        SpeechkitError: no utterance could be loaded.
    """
    os.makedirs(os.path.join(out_dir, "wav"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "png"), exist_ok=True)
    frontend = vocoder.frontend
    rate = frontend.sample_rate
    skipped = SkipReport()
    kept, audios = [], []
    for utt in utterances:
        try:
            audios.append(audio_io.load(utt.audio, sample_rate=rate))
            kept.append(utt)
        except AudioError as err:
            skipped.add("unreadable", utt.audio, err)
    if not kept:
        raise SpeechkitError(f"no utterance could be loaded ({skipped.summary()})")
    passes = vocoder.config.mel_postfilter if postfilter is None else postfilter
    started = time.perf_counter()
    generated = vocoder.vocode(audios, temperature=temperature, seed=seed, speaker=speaker, backend=backend,
                               batch_size=batch_size, progress=True, postfilter=0)
    mels = [log_mel(ref, config=frontend).numpy() for ref in audios] if passes else []
    vocoded = [vocoder.postfiltered(wave, mel, passes=passes) for wave, mel in zip(generated, mels)] if passes \
        else generated
    synthesis_seconds = time.perf_counter() - started
    lpc = bool(vocoder.config.lpc_order)
    noise_excited = [vocoder.noise_excited(ref, seed=seed) for ref in audios] if lpc else []
    rows = []
    for i, (utt, ref, voc) in enumerate(zip(kept, audios, vocoded)):
        quantised = vocoder.quantised(ref)
        row = {
            "id": utt.id, "speaker": utt.speaker, "seconds": round(len(ref) / rate, 3),
            "lsd_db": log_spectral_distance(ref, voc, frontend=frontend),
            "mcd_db": mel_cepstral_distortion(ref, voc, frontend=frontend),
            "mulaw_lsd_db": log_spectral_distance(ref, quantised, frontend=frontend),
            "mulaw_mcd_db": mel_cepstral_distortion(ref, quantised, frontend=frontend),
        }
        if lpc:
            row["noise_lsd_db"] = log_spectral_distance(ref, noise_excited[i], frontend=frontend)
            row["noise_mcd_db"] = mel_cepstral_distortion(ref, noise_excited[i], frontend=frontend)
        safe = utt.id.replace(os.sep, "_")
        audio_io.save(os.path.join(out_dir, "wav", f"{safe}_original.wav"), ref, sample_rate=rate)
        audio_io.save(os.path.join(out_dir, "wav", f"{safe}_vocoded.wav"), voc, sample_rate=rate)
        if i < plots:
            row["png"] = f"png/{safe}.png"
            save_mel_pair(os.path.join(out_dir, row["png"]), (ref, voc), ("original", "vocoded"), frontend=frontend,
                          title=f"{utt.id}: LSD {row['lsd_db']:.2f} dB, MCD {row['mcd_db']:.2f} dB")
        rows.append(row)
    total_seconds = sum(r["seconds"] for r in rows)
    summary = {
        "utterances": len(rows),
        "audio_seconds": round(total_seconds, 2),
        "lsd_db": float(np.mean([r["lsd_db"] for r in rows])),
        "mcd_db": float(np.mean([r["mcd_db"] for r in rows])),
        "mulaw_lsd_db": float(np.mean([r["mulaw_lsd_db"] for r in rows])),
        "mulaw_mcd_db": float(np.mean([r["mulaw_mcd_db"] for r in rows])),
        "synthesis_seconds": round(synthesis_seconds, 2),
        "rtf": synthesis_seconds / total_seconds,
        "postfilter": passes,
    }
    if lpc:
        summary["noise_lsd_db"] = float(np.mean([r["noise_lsd_db"] for r in rows]))
        summary["noise_mcd_db"] = float(np.mean([r["noise_mcd_db"] for r in rows]))
    noise_postfiltered = [vocoder.postfiltered(wave, mel, passes=passes) for wave, mel in zip(noise_excited, mels)] \
        if passes else noise_excited
    reference_tracks = [pitch_track(ref, frontend=frontend) for ref in audios]

    def pitch_of(waves):
        return pitch_agreement([(ref, pitch_track(wave, frontend=frontend))
                                for ref, wave in zip(reference_tracks, waves)])

    summary["pitch"] = pitch_of(vocoded)
    if passes:
        summary["pitch_without_postfilter"] = pitch_of(generated)
    if lpc:
        summary["pitch_noise_excited"] = pitch_of(noise_postfiltered)
    if recognizer is not None:
        refs = [u.text for u in kept]
        hyp_orig = recognizer.transcribe(audios)
        hyp_voc = recognizer.transcribe(vocoded)
        summary["wer_original"] = wer(refs, hyp_orig)
        summary["wer_vocoded"] = wer(refs, hyp_voc)
        if lpc:
            summary["wer_noise_excited"] = wer(refs, recognizer.transcribe(noise_excited))
        if passes:
            summary["wer_vocoded_without_postfilter"] = wer(refs, recognizer.transcribe(generated))
            if lpc:
                summary["wer_noise_excited_postfiltered"] = wer(refs, recognizer.transcribe(noise_postfiltered))
        summary["asr_run"] = getattr(recognizer, "run_dir", None)
        for row, ref_text, h_o, h_v in zip(rows, refs, hyp_orig, hyp_voc):
            row.update(text=ref_text, asr_original=h_o, asr_vocoded=h_v)
    report = {
        "run": vocoder.run_dir,
        "command": command,
        "settings": {"temperature": temperature, "seed": seed, "speaker": speaker, "backend": backend},
        "summary": summary,
        "skipped": skipped.to_dict(),
        "utterances": rows,
    }
    atomic_write_text(os.path.join(out_dir, "report.json"), json.dumps(report, indent=2) + "\n")
    atomic_write_text(os.path.join(out_dir, "report.md"), _markdown(report))
    logger.info("%s: LSD %.2f dB, MCD %.2f dB over %d utterances", out_dir, summary["lsd_db"], summary["mcd_db"],
                len(rows))
    return report


def _markdown(report):
    s = report["summary"]
    lines = [
        "# Vocoder copy-synthesis report", "",
        f"- run: `{report['run']}`",
        f"- command: `{report['command']}`" if report["command"] else "- command: (library call)",
        f"- settings: temperature {report['settings']['temperature']}, seed {report['settings']['seed']}, "
        f"backend {report['settings']['backend']}, mel post-filter passes {s['postfilter']}",
        f"- {s['utterances']} utterances, {s['audio_seconds']:.1f} s of audio; {report['skipped']['skipped']} skipped",
        f"- synthesis: {s['synthesis_seconds']:.1f} s, real-time factor {s['rtf']:.2f}", "",
        "| measure | vocoded | mu-law 8-bit original (floor) |",
        "|---|---|---|",
        f"| log-spectral distance (dB) | {s['lsd_db']:.2f} | {s['mulaw_lsd_db']:.2f} |",
        f"| mel-cepstral distortion (dB) | {s['mcd_db']:.2f} | {s['mulaw_mcd_db']:.2f} |",
    ]
    p = s["pitch"]
    lines += ["", f"Pitch (pYIN): {p['voiced_reference'] * 100:.1f}% of the originals' frames are voiced.", "",
              "| audio | voiced frames | voicing decision error | gross pitch error | median pitch error |",
              "|---|---|---|---|---|"]
    for key, name in (("pitch", "vocoded"), ("pitch_without_postfilter", "vocoded, without the post-filter"),
                      ("pitch_noise_excited", "the LPC filter alone" + (" and the post-filter" if s["postfilter"]
                                                                         else ""))):
        if key in s:
            p = s[key]
            errors = ("n/a | n/a" if p["gpe"] is None
                      else f"{p['gpe'] * 100:.1f}% | {p['f0_error_cents']:.0f} cents")
            lines.append(f"| {name} | {p['voiced_estimate'] * 100:.1f}% | {p['vde'] * 100:.1f}% | {errors} |")
    if "noise_lsd_db" in s:
        lines += ["", f"The LPC filter alone (white noise at the residual's level, no network): LSD "
                      f"{s['noise_lsd_db']:.2f} dB, MCD {s['noise_mcd_db']:.2f} dB."]
    if "wer_vocoded" in s:
        alone = s.get("wer_noise_excited_postfiltered", s.get("wer_noise_excited"))
        lines += ["", f"ASR (`{s['asr_run']}`, greedy): WER on original audio {s['wer_original'] * 100:.2f}%, "
                      f"on vocoded audio {s['wer_vocoded'] * 100:.2f}%"
                  + (f", with the filter alone {alone * 100:.2f}%" if alone is not None else "")]
    if "wer_vocoded_without_postfilter" in s:
        lines += ["", f"Without the mel post-filter: vocoded {s['wer_vocoded_without_postfilter'] * 100:.2f}%"
                  + (f", the filter alone {s['wer_noise_excited'] * 100:.2f}%" if "wer_noise_excited" in s else "")
                  + "."]
    lines += ["", "| id | seconds | LSD (dB) | MCD (dB) | audio |", "|---|---|---|---|---|"]
    for r in report["utterances"]:
        safe = r["id"].replace(os.sep, "_")
        lines.append(f"| {r['id']} | {r['seconds']:.2f} | {r['lsd_db']:.2f} | {r['mcd_db']:.2f} | "
                     f"[original](wav/{safe}_original.wav), [vocoded](wav/{safe}_vocoded.wav) |")
    for r in report["utterances"]:
        if "png" in r:
            lines += ["", f"![{r['id']}]({r['png']})"]
    return "\n".join(lines) + "\n"
