"""``speechkit export asr|vocoder|check``: SavedModel and TFLite export."""

from speechkit.cli import add_defaults_help
from speechkit.cli.models import add_model_argument, model_dir

__all__ = ["register"]


def register(commands, groups):
    export = groups["export"]

    p = add_defaults_help(export.add_parser(
        "asr", help="export an ASR run as a SavedModel (front end and greedy decoding in the graph; a streaming model "
        "also gets stream_init, stream_step and stream_finish)"))
    p.add_argument("run", nargs="?", help="ASR run directory (holds model.keras); omit with --model")
    add_model_argument(p, "asr")
    p.add_argument("--out", required=True, help="export directory (replaced if it exists)")
    p.add_argument("--tflite", action="store_true",
                   help="also write model.tflite (batch 1, built-in ops) and check it against the SavedModel")
    p.set_defaults(func=_export_asr)

    p = add_defaults_help(export.add_parser(
        "vocoder", help="export a vocoder run as a SavedModel (upsampling and generation loop in the graph)"))
    p.add_argument("run", nargs="?", help="vocoder run directory (holds model.keras); omit with --model")
    add_model_argument(p, "vocoder")
    p.add_argument("--out", required=True, help="export directory (replaced if it exists)")
    p.add_argument("--no-xla", action="store_true", help="do not XLA-compile the generation loop")
    p.add_argument("--parallel", type=int, default=2, metavar="N",
                   help="rows of a batch generated at the same time (the target's cores); 0: one loop per batch")
    p.set_defaults(func=_export_vocoder)

    p = add_defaults_help(export.add_parser(
        "check", help="reload exports and compare them with the Keras models on real utterances"))
    p.add_argument("export_root", metavar="EXPORT_ROOT", help="folder holding asr/ and/or vocoder/ exports")
    p.add_argument("--manifest", required=True, help="JSONL manifest; its first utterances are used")
    p.add_argument("--asr-run", default=None, help="ASR run that EXPORT_ROOT/asr was exported from")
    p.add_argument("--vocoder-run", default=None, help="vocoder run that EXPORT_ROOT/vocoder was exported from")
    p.add_argument("--limit", type=int, default=4, help="ASR utterances compared")
    p.add_argument("--vocoder-limit", type=int, default=2, help="vocoder utterances compared")
    p.add_argument("--vocoder-seconds", type=float, default=0.5, help="seconds vocoded from the start of each")
    p.add_argument("--atol", type=float, default=1e-4, help="largest allowed SavedModel vs Keras difference")
    p.add_argument("--lpc-rtol", type=float, default=1e-3,
                   help="largest allowed RMS difference, relative to the waveform's RMS, for a vocoder of the LPC "
                   "residual (its exported filter cannot match the run's to --atol)")
    p.add_argument("--tflite-atol", type=float, default=1e-3,
                   help="largest allowed TFLite vs SavedModel log-prob difference")
    p.set_defaults(func=_check)


def _run_dir(args, family):
    return model_dir(args, family, verb=f"export {family}")


def _export_asr(args):
    from speechkit.export.asr import export_asr

    run_dir = _run_dir(args, "asr")
    if run_dir is None:
        return 2
    info = export_asr(run_dir, args.out, tflite=args.tflite)
    line = f"{args.out}: SavedModel in {info['saved_model_seconds']:.1f} s"
    if args.tflite:
        line += (f"; model.tflite ({info['tflite_bytes'] / 1e6:.1f} MB) in {info['tflite_seconds']:.1f} s, "
                 f"max |TFLite - SavedModel| {info['tflite_max_abs_diff']:.2g}")
    if "streaming" in info:
        line += (f"; streaming signatures {', '.join(info['streaming']['signatures'])} (lookahead "
                 f"{info['streaming']['lookahead_ms']:.0f} ms)")
    print(line + (f"; LM {info['lm']}" if info["lm"] else ""))


def _export_vocoder(args):
    from speechkit.export.vocoder import export_vocoder

    run_dir = _run_dir(args, "vocoder")
    if run_dir is None:
        return 2
    info = export_vocoder(run_dir, args.out, jit_compile=not args.no_xla, parallel=args.parallel)
    print(f"{args.out}: SavedModel (serving_default, vocode_waveform) in {info['saved_model_seconds']:.1f} s")


def _check(args):
    from speechkit.errors import ExportError
    from speechkit.export.check import check_exports

    report = check_exports(args.export_root, manifest=args.manifest, asr_run=args.asr_run,
                           vocoder_run=args.vocoder_run, limit=args.limit, vocoder_limit=args.vocoder_limit,
                           vocoder_seconds=args.vocoder_seconds, atol=args.atol, tflite_atol=args.tflite_atol,
                           lpc_rtol=args.lpc_rtol)
    if "asr" in report:
        asr = report["asr"]
        print(f"asr: {asr['utterances']} utterances ({asr['audio_seconds']:.1f} s): max |SavedModel - Keras| "
              f"log-prob {asr['max_abs_diff']:.3g}; greedy transcript mismatches {len(asr['transcript_mismatches'])}"
              + (f"; max |TFLite - SavedModel| {asr['tflite_max_abs_diff']:.3g}" if "tflite_max_abs_diff" in asr
                 else ""))
    if "vocoder" in report:
        voc = report["vocoder"]
        print(f"vocoder: {voc['utterances']} utterances ({voc['samples']} samples, temperature 0): "
              f"max |SavedModel - Keras| sample {voc['max_abs_diff']:.3g}, relative RMS difference "
              f"{voc['relative_rms_diff']:.3g}")
    if not report["passed"]:
        raise ExportError("export check failed: " + "; ".join(report["failures"]))
    print(f"{args.export_root}: exports match their Keras models")
