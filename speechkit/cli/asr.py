"""``speechkit train asr``, ``speechkit transcribe`` and ``speechkit eval``: Deep Speech 2 commands."""

import os
import shlex
import sys

from speechkit.cli import add_defaults_help
from speechkit.cli.decoding import add_decoder_arguments, decode_options
from speechkit.cli.models import add_model_argument, looks_like_audio, model_dir

__all__ = ["register"]


def register(commands, groups):
    p = add_defaults_help(groups["train"].add_parser("asr", help="train a Deep Speech 2 model (CTC) from a preset"))
    p.add_argument("--config", required=True, help="preset YAML, e.g. models/ds2-mini.yaml")
    p.add_argument("--train", required=True, help="training manifest (JSONL)")
    p.add_argument("--dev", default=None, help="dev manifest (JSONL) for the epoch-end WER and best-model selection")
    p.add_argument("--out", required=True, help="run directory; an interrupted run there is resumed exactly")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                   help="stop cleanly (checkpoint, dev WER, model) within this many minutes")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--mixed-precision", action="store_true", help="bfloat16 compute on CPU, float16 on GPU")
    p.add_argument("--strategy", choices=("default", "mirrored", "multi-worker"), default="default",
                   help="tf.distribute strategy: mirrored = all local GPUs (or logical CPUs); multi-worker = the "
                   "hosts in TF_CONFIG, same command and --out (shared storage) on each")
    p.add_argument("--init-from", default=None, metavar="RUN|MODEL",
                   help="start a new run from the weights of a trained run or released model (fine-tuning; same "
                   "front end and layers); the optimizer and schedule start afresh")
    p.add_argument("--quiet", action="store_true", help="one line per epoch instead of the progress bar")
    p.set_defaults(func=_train)

    p = add_defaults_help(commands.add_parser(
        "transcribe", help="transcribe audio files with a trained ASR run or a released model"))
    p.add_argument("run", nargs="?", help="run directory (holds model.keras); omit with --model or --saved-model, "
                   "or to use the released ASR model (see 'speechkit models')")
    add_model_argument(p, "asr")
    p.add_argument("--saved-model", default=None, metavar="EXPORT",
                   help="use an exported SavedModel (speechkit export asr) instead of a run")
    p.add_argument("audio", nargs="*", help="audio files (any libsndfile format; resampled to the model's rate); "
                   "files longer than 30 s are recognised in overlapping windows")
    p.add_argument("--stream", default=None, metavar="FILE|-",
                   help="recognise FILE chunk by chunk with a streaming model (e.g. trained from "
                   "models/ds2-streaming.yaml), printing each partial transcript as it changes ('SECONDS<TAB>TEXT'), "
                   "then 'FILE<TAB>FINAL'; '-' reads raw 16-bit mono PCM at the model's rate from stdin")
    p.add_argument("--chunk-ms", type=float, default=160.0, help="audio per chunk with --stream")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--report", default=None, help="write the skipped files, by reason, to this JSON file")
    add_decoder_arguments(p)
    p.set_defaults(func=_transcribe)

    p = add_defaults_help(commands.add_parser(
        "eval", help="WER/CER, per-speaker WER and RTF of an ASR run on a manifest"))
    p.add_argument("run", nargs="?", help="run directory (holds model.keras); omit with --model")
    add_model_argument(p, "asr")
    p.add_argument("--manifest", required=True, help="JSONL manifest to score")
    p.add_argument("--out", required=True, help="report folder (report.json, report.md, hypotheses.jsonl)")
    p.add_argument("--worst", type=int, default=10, help="worst utterances shown with alignments")
    p.add_argument("--batch-size", type=int, default=16)
    add_decoder_arguments(p)
    p.set_defaults(func=_eval)


_NEED_MODEL = "give a run directory, --model NAME or --saved-model EXPORT"


def _make_decoder(args, run_dir, recognizer):
    """The decoder for ``Recognizer.transcribe`` / ``evaluate``; None means greedy.

    Options left unset fall back to ``RUN/decode.yaml`` (written by ``speechkit lm tune``; a released
    model ships its tuned one with its LM), else greedy.
    """
    from speechkit.asr.beam import build_decoder, merge_decode_options
    from speechkit.models import model_decode_config
    from speechkit.runs import RunDir

    base = RunDir(run_dir).decode_config()
    config = merge_decode_options(base, **decode_options(args))
    if config.lm is not None and config.lm == base.lm:
        model_decode_config(run_dir)
    return None if config.decoder == "greedy" else build_decoder(config, recognizer.vocabulary)


def _report_skips(args, skips):
    for reason, items in skips.items.items():
        for item in items:
            print(f"speechkit: skipped ({reason}): {item['detail']}", file=sys.stderr)
    if args.report:
        skips.write(args.report)
    if skips.total:
        print(f"speechkit: {skips.total} of {len(args.audio)} file(s) skipped ({skips.summary()})", file=sys.stderr)
        return 1
    return 0


# -- Handlers -- #

def _train(args):
    from speechkit.asr.train import load_train_config, train
    from speechkit.models import resolve_model

    config = load_train_config(args.config)
    init_from = args.init_from
    if init_from is not None and not os.path.isdir(init_from):
        init_from = resolve_model(init_from, family="asr")
    summary = train(config, train_manifest=args.train, dev_manifest=args.dev, out_dir=args.out, epochs=args.epochs,
                    time_budget=args.time_budget, mixed_precision=args.mixed_precision, strategy=args.strategy,
                    init_from=init_from,
                    command=" ".join(shlex.quote(a) for a in ["speechkit"] + sys.argv[1:]),
                    verbose=2 if args.quiet else "auto")
    best, speed = summary["best_dev_wer"], summary["throughput_audio_s_per_s"]
    print(f"{args.out}: {summary['step']} steps ({summary['epochs_done']:.2f} epochs), stopped by {summary['stopped']}"
          + ("" if speed is None else f"; {speed:.1f} s of audio per s")
          + ("" if best is None else f"; best dev WER {best * 100:.2f}%"))


def _transcribe(args):
    from speechkit.data.manifest import SkipReport

    skips = SkipReport()
    if args.run is not None and (args.saved_model is not None or args.model is not None or looks_like_audio(args.run)):
        # No run was meant, so argparse's optional RUN positional took the first audio file.
        args.audio = [args.run] + list(args.audio)
        args.run = None
    if args.stream is not None and (args.saved_model is not None or args.audio):
        print("speechkit transcribe: error: --stream FILE takes one file and a run or --model (stream an export "
              "with examples/stream_saved_model.py)", file=sys.stderr)
        return 2
    if args.stream is None and not args.audio:
        print("speechkit transcribe: error: give audio files, or --stream FILE", file=sys.stderr)
        return 2
    if args.saved_model is not None:
        from speechkit.export.serving import transcribe_saved_model

        if args.model is not None:
            print(f"speechkit transcribe: error: {_NEED_MODEL}, not several", file=sys.stderr)
            return 2
        results = transcribe_saved_model(args.saved_model, args.audio, batch_size=args.batch_size,
                                         decode_options=decode_options(args), skip_report=skips)
    else:
        from speechkit.asr.inference import load_run

        run_dir = model_dir(args, "asr", verb="transcribe", use_default=True)
        if run_dir is None:
            return 2
        recognizer = load_run(run_dir, batch_size=args.batch_size)
        if args.stream is not None:
            return _stream(args, recognizer, _make_decoder(args, run_dir, recognizer))
        results = recognizer.transcribe_files(args.audio, decoder=_make_decoder(args, run_dir, recognizer),
                                              skip_report=skips)
    for path, text in results:
        print(f"{path}\t{text}", flush=True)
    return _report_skips(args, skips)


def _stream(args, recognizer, decoder):
    from speechkit.asr.streaming import audio_file_chunks, pcm16_chunks, stream_transcripts

    rate = recognizer.frontend.sample_rate
    chunk = max(1, int(round(args.chunk_ms * rate / 1000)))
    path = args.stream
    chunks = (pcm16_chunks(sys.stdin.buffer, chunk_samples=chunk) if path == "-"
              else audio_file_chunks(path, sample_rate=rate, chunk_samples=chunk))
    for kind, seconds, text in stream_transcripts(recognizer, chunks, decoder=decoder):
        print(f"{path}\t{text}" if kind == "final" else f"{seconds:.2f}\t{text}", flush=True)
    return 0


def _eval(args):
    from speechkit.asr.evaluate import evaluate
    from speechkit.asr.inference import load_run
    from speechkit.data.manifest import SkipReport, read_manifest

    run_dir = model_dir(args, "asr", verb="eval")
    if run_dir is None:
        return 2
    recognizer = load_run(run_dir, batch_size=args.batch_size)
    decoder = _make_decoder(args, run_dir, recognizer)
    manifest_skips = SkipReport()
    utterances = read_manifest(args.manifest, skip_report=manifest_skips)
    report = evaluate(recognizer, utterances, out_dir=args.out, decoder=decoder, worst=args.worst,
                      source=args.manifest, skip_report=manifest_skips)
    lo, hi = report["wer_ci95"]
    skipped = report["skipped"]["skipped"]
    print(f"{args.manifest}: WER {report['wer'] * 100:.2f}% (95% CI {lo * 100:.2f}-{hi * 100:.2f}), "
          f"CER {report['cer'] * 100:.2f}%, RTF {report['rtf']:.4f}, {report['utterances']} utterances, "
          f"{skipped} skipped; report in {os.path.join(args.out, 'report.md')}")
