"""Export benchmark: export time, parity and greedy WER of Keras vs SavedModel vs TFLite on one manifest.

The ASR run is exported with ``--tflite`` (SavedModel, then TFLite), then every utterance of the
manifest is recognised three ways: the Keras model (``Recognizer``), the SavedModel (padded batches,
in-graph greedy transcripts) and ``model.tflite`` (one utterance per call). The figures are the
export times, the largest log-probability differences over all valid frames, the greedy WER of
each, how many transcripts differ from the Keras ones, and each path's real-time factor (front end
plus network over audio time, after a warm-up call). With ``--vocoder-run`` the vocoder is exported
too and checked at temperature 0 on two 0.5 s utterance heads.

Usage:
    python benchmarks/bench_export.py --asr-run exp/ds2-streaming --manifest data/mini/test.jsonl \\
        [--vocoder-run exp/wavenet-mini] [--out exp/export-bench]

Prints a markdown table and one ``BENCHMARKS.md`` row (date, revision, machine, command, figures).
"""

import argparse
import logging
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _row import row  # noqa: E402


def _timed(fn, audios):
    fn(audios[:1])
    start = time.perf_counter()
    result = fn(audios)
    return result, time.perf_counter() - start


def _max_diff(a_list, b_list):
    same = [(a, b) for a, b in zip(a_list, b_list) if a.shape == b.shape]
    return max(float(np.abs(a - b).max()) for a, b in same), len(a_list) - len(same)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--asr-run", required=True, help="trained ASR run (the streaming preset converts to TFLite)")
    parser.add_argument("--manifest", required=True, help="test manifest (JSONL)")
    parser.add_argument("--vocoder-run", default=None, help="trained vocoder run to export and check as well")
    parser.add_argument("--out", default="exp/export-bench", help="export root (asr/ and vocoder/ inside)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N utterances only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)

    from speechkit import audio as audio_io
    from speechkit.asr.decoding import greedy_decode
    from speechkit.asr.inference import load_run
    from speechkit.data.manifest import read_manifest
    from speechkit.export.asr import ExportedRecognizer, TFLiteRecognizer, export_asr
    from speechkit.metrics import wer

    info = export_asr(args.asr_run, os.path.join(args.out, "asr"), tflite=True)
    utterances = read_manifest(args.manifest)[:args.limit]
    keras_model = load_run(args.asr_run)
    rate = keras_model.frontend.sample_rate
    audios = [audio_io.load(u.audio, sample_rate=rate) for u in utterances]
    refs = [u.text for u in utterances]
    seconds = sum(len(a) for a in audios) / rate

    saved = ExportedRecognizer(os.path.join(args.out, "asr"))
    lite = TFLiteRecognizer(os.path.join(args.out, "asr"))
    keras_lp, keras_time = _timed(keras_model.log_probs, audios)
    (saved_lp, saved_texts), saved_time = _timed(saved.run, audios)
    lite_lp, lite_time = _timed(lite.log_probs, audios)
    keras_texts = [greedy_decode(lp, keras_model.vocabulary) for lp in keras_lp]
    lite_texts = [greedy_decode(lp, keras_model.vocabulary) for lp in lite_lp]
    saved_diff, saved_frames = _max_diff(saved_lp, keras_lp)
    lite_diff, lite_frames = _max_diff(lite_lp, saved_lp)

    rows = [("Keras (Recognizer)", keras_texts, keras_time, "-"),
            ("SavedModel (in-graph greedy)", saved_texts, saved_time, f"{saved_diff:.2g} vs Keras"),
            ("TFLite (batch 1)", lite_texts, lite_time, f"{lite_diff:.2g} vs SavedModel")]
    print(f"{args.asr_run}: {len(utterances)} utterances, {seconds / 60:.1f} min from {args.manifest}")
    print(f"export: SavedModel {info['saved_model_seconds']:.1f} s, TFLite {info['tflite_seconds']:.1f} s "
          f"({info['tflite_bytes'] / 1e6:.1f} MB), total {info['export_seconds']:.1f} s\n")
    print("| model | greedy WER | transcripts != Keras | RTF | max abs log-prob diff |")
    print("|---|---|---|---|---|")
    for name, texts, elapsed, diff in rows:
        changed = sum(a != b for a, b in zip(texts, keras_texts))
        print(f"| {name} | {wer(refs, texts):.2%} | {changed} | {elapsed / seconds:.4f} | {diff} |")
    if saved_frames or lite_frames:
        print(f"\nframe-count mismatches: SavedModel {saved_frames}, TFLite {lite_frames}")
    figures = (f"{len(utterances)} utts; export SavedModel {info['saved_model_seconds']:.1f} s, TFLite "
               f"{info['tflite_seconds']:.1f} s; greedy WER Keras {wer(refs, keras_texts):.2%}, SavedModel "
               f"{wer(refs, saved_texts):.2%}, TFLite {wer(refs, lite_texts):.2%}; max |SavedModel - Keras| "
               f"{saved_diff:.2g}, max |TFLite - SavedModel| {lite_diff:.2g}; RTF Keras {keras_time / seconds:.4f}, "
               f"SavedModel {saved_time / seconds:.4f}, TFLite {lite_time / seconds:.4f}")

    if args.vocoder_run:
        from speechkit.export.check import check_vocoder_export
        from speechkit.export.vocoder import export_vocoder

        vinfo = export_vocoder(args.vocoder_run, os.path.join(args.out, "vocoder"))
        check = check_vocoder_export(os.path.join(args.out, "vocoder"), args.vocoder_run, utterances)
        print(f"\nvocoder: export {vinfo['export_seconds']:.1f} s; temperature 0 on {check['utterances']} x 0.5 s: "
              f"max |SavedModel - Keras| {check['max_abs_diff']:.2g} ({check['differing_samples']} samples differ)")
        figures += (f"; vocoder export {vinfo['export_seconds']:.1f} s, max |SavedModel - Keras| "
                    f"{check['max_abs_diff']:.2g} at temperature 0")
    print("\n" + row(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
