"""Exported models on audio files: transcribe with an ASR SavedModel, copy-synthesise with a vocoder one.

These are the SavedModel counterparts of a run's ``Recognizer.transcribe_files`` and ``Vocoder.vocode``:
an export decodes like the run it came from, because ``export_asr`` copies the run's ``decode.yaml``
into the export directory and ``transcribe_saved_model`` reads it from there.
"""

import logging
import time

from speechkit import audio as audio_io
from speechkit.asr.beam import build_decoder, load_decode_config, merge_decode_options
from speechkit.data.manifest import SkipReport
from speechkit.errors import AudioError
from speechkit.export.asr import load_exported_asr
from speechkit.export.vocoder import load_exported_vocoder

__all__ = ["transcribe_saved_model", "vocode_saved_model"]

logger = logging.getLogger(__name__)


def transcribe_saved_model(export_dir, paths, *, batch_size=16, decode_options=None, skip_report=None):
    """Transcribe audio files with an ASR export, yielding ``(path, transcript)`` in input order.

    Files are read ``batch_size`` at a time, so memory does not grow with their number. An
    unreadable file is not yielded: it is counted in ``skip_report`` under ``bad_audio``, with the
    reason naming the file, and the next file is processed.

    Args:
        export_dir: str, written by ``speechkit.export.asr.export_asr``.
        paths: iterable of str, audio files in any libsndfile format and rate (resampled to the model's).
        batch_size: int > 0, utterances per call of the SavedModel.
        decode_options: optional dict of decoding options chosen explicitly, applied over
            ``EXPORT/decode.yaml`` by ``speechkit.asr.beam.merge_decode_options``. Greedy decoding
            uses the in-graph transcripts; a beam search decodes the exported log-probabilities.
        skip_report: optional ``SkipReport`` that receives the skipped files.

    Yields:
        ``(path, str)``.

    Raises:
        ExportError: ``export_dir`` is not an ASR export.
        ConfigError: the decoding options are invalid.
    """
    recognizer = load_exported_asr(export_dir, batch_size=batch_size)
    config = merge_decode_options(load_decode_config(export_dir), **(decode_options or {}))
    decoder = None if config.decoder == "greedy" else build_decoder(config, recognizer.vocabulary)
    skips = skip_report if skip_report is not None else SkipReport()
    group = []
    try:
        for path in paths:
            try:
                group.append((path, audio_io.load(path, sample_rate=recognizer.frontend.sample_rate)))
            except AudioError as err:
                logger.debug("skipped: %s", err)
                skips.add("bad_audio", path, err)
                continue
            if len(group) >= recognizer.batch_size:
                yield from zip([p for p, _ in group], recognizer.transcribe([a for _, a in group], decoder=decoder))
                group = []
        if group:
            yield from zip([p for p, _ in group], recognizer.transcribe([a for _, a in group], decoder=decoder))
    finally:
        if decoder is not None:
            decoder.close()


def vocode_saved_model(export_dir, audio_path, out_path, *, temperature=1.0, seed=0, speaker=None):
    """Copy synthesis with a vocoder export: resynthesise ``audio_path`` from its log-mel into ``out_path``.

    Args:
        export_dir: str, written by ``speechkit.export.vocoder.export_vocoder``.
        audio_path: str, the audio whose log-mel conditions the model (resampled to the model's rate).
        out_path: str, the audio file to write (wav or flac).
        temperature: float >= 0, softmax temperature; 0 takes the argmax.
        seed: int, sampling noise seed.
        speaker: str, int or None, the speaker of a speaker-conditioned model.

    Returns:
        dict with ``seconds`` (float, audio written) and ``elapsed`` (float, wall seconds of generation).

    Raises:
        ExportError: ``export_dir`` is not a vocoder export.
        AudioError: ``audio_path`` cannot be read.
        ConfigError: ``speaker`` does not fit the model.
    """
    vocoder = load_exported_vocoder(export_dir)
    rate = vocoder.frontend.sample_rate
    audio = audio_io.load(audio_path, sample_rate=rate)
    started = time.perf_counter()
    out = vocoder.vocode([audio], temperature=temperature, seed=seed, speaker=speaker)[0]
    elapsed = time.perf_counter() - started
    audio_io.save(out_path, out, sample_rate=rate)
    return {"seconds": len(out) / rate, "elapsed": elapsed}
