"""Text-to-speech commands: ``data durations``, ``train tts``, ``synthesize``, ``eval-tts`` and ``export tts``."""

import shlex
import sys

from speechkit.cli import add_defaults_help
from speechkit.cli.models import add_model_argument, looks_like_audio, model_dir

__all__ = ["register"]


def register(commands, groups):
    p = add_defaults_help(groups["data"].add_parser(
        "durations", help="character durations in mel frames for TTS training, by CTC forced alignment with an ASR "
        "model"))
    p.add_argument("manifest", help="JSONL manifest of the TTS training (or dev) utterances")
    p.add_argument("--out", required=True, help="durations file to write (JSONL); skip report <out>.report.json")
    p.add_argument("--run", default=None, help="ASR run directory (instead of --model)")
    p.add_argument("--model", default=None, metavar="NAME",
                   help="released ASR model (see 'speechkit models') or its folder; default: the released one")
    p.add_argument("--config", default=None,
                   help="TTS preset whose front end (hop, sample rate) gives the mel frames; default: the shared "
                   "log-mel front end of models/tts-mini.yaml")
    p.add_argument("--min-confidence", type=float, default=0.2,
                   help="utterances aligned with a lower confidence (geometric mean posterior of the CTC path) are "
                   "dropped and counted")
    p.add_argument("--limit", type=int, default=None, help="first N utterances of the manifest")
    p.add_argument("--batch-size", type=int, default=16, help="utterances per forward pass")
    p.set_defaults(func=_durations)

    p = add_defaults_help(groups["train"].add_parser("tts", help="train a text-to-mel acoustic model from a preset"))
    p.add_argument("--config", required=True, help="preset YAML, e.g. models/tts-mini.yaml")
    p.add_argument("--train", required=True, help="training manifest (JSONL)")
    p.add_argument("--durations", required=True, help="its durations file (speechkit data durations)")
    p.add_argument("--out", required=True, help="run directory; an interrupted run there is resumed exactly")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                   help="stop cleanly after this many minutes of this invocation")
    p.add_argument("--quiet", action="store_true", help="one line per epoch instead of the progress bar")
    p.set_defaults(func=_train)

    p = add_defaults_help(commands.add_parser("synthesize", help="text to speech: text -> mel -> audio"))
    p.add_argument("text", nargs="?", help="the text to speak (or --text-file)")
    p.add_argument("--text-file", default=None, help="UTF-8 file, one utterance per non-empty line")
    p.add_argument("--run", default=None, help="TTS run directory (holds model.keras and config.yaml)")
    add_model_argument(p, "tts")
    p.add_argument("--out", required=True,
                   help="an audio file (hello.wav, .flac, .ogg) for one text, or a folder: utt0001.wav, ... and "
                   "synthesis.jsonl")
    p.add_argument("--vocoder", choices=("griffinlim", "wavenet"), default=None,
                   help="mel inversion; default: wavenet with --vocoder-model, --vocoder-run or else the released "
                   "vocoder (wavenet-mini), griffinlim when none is released")
    p.add_argument("--vocoder-model", default=None, metavar="NAME",
                   help="released vocoder (see 'speechkit models') or its folder")
    p.add_argument("--vocoder-run", default=None, metavar="RUN", help="vocoder run directory")
    p.add_argument("--speed", type=float, default=1.0, help="> 1 speaks faster")
    p.add_argument("--griffinlim-iterations", type=int, default=32)
    p.add_argument("--temperature", type=float, default=1.0, help="WaveNet softmax temperature; 0 takes the argmax")
    p.add_argument("--seed", type=int, default=0, help="WaveNet sampling noise seed")
    p.set_defaults(func=_synthesize)

    p = add_defaults_help(commands.add_parser(
        "eval-tts", help="synthesise held-out sentences: ASR WER next to the recordings', MCD-DTW, RTF"))
    p.add_argument("--run", default=None, help="TTS run directory")
    add_model_argument(p, "tts")
    p.add_argument("--manifest", required=True, help="held-out utterances (JSONL): their text and recordings")
    p.add_argument("--out", required=True, help="report folder (report.json, report.md, wav/, png/)")
    p.add_argument("--asr", default="ds2-mini", metavar="RUN_OR_NAME",
                   help="ASR run or released model that transcribes both; 'none' skips the WER")
    p.add_argument("--limit", type=int, default=None, help="first N utterances of the manifest")
    p.add_argument("--plots", type=int, default=4, help="utterances with spectrogram PNGs")
    p.add_argument("--vocoder", choices=("griffinlim", "wavenet"), default=None,
                   help="default: wavenet with --vocoder-model, --vocoder-run or else the released vocoder, "
                   "griffinlim when none is released")
    p.add_argument("--vocoder-model", default=None, metavar="NAME", help="released vocoder or its folder")
    p.add_argument("--vocoder-run", default=None, metavar="RUN", help="vocoder run directory")
    p.add_argument("--griffinlim-iterations", type=int, default=32)
    p.set_defaults(func=_eval)

    p = add_defaults_help(groups["export"].add_parser(
        "tts", help="export a TTS run as a SavedModel: string in, float32 waveform out (Griffin-Lim in the graph)"))
    p.add_argument("run", nargs="?", help="TTS run directory (holds model.keras); omit with --model")
    add_model_argument(p, "tts")
    p.add_argument("--out", required=True, help="export directory (replaced if it exists)")
    p.add_argument("--griffinlim-iterations", type=int, default=32)
    p.set_defaults(func=_export)


def _command():
    return " ".join(shlex.quote(a) for a in ["speechkit"] + sys.argv[1:])


def _durations(args):
    from speechkit.asr.inference import load_run
    from speechkit.data.durations import compute_durations
    from speechkit.tts.config import TTSConfig

    run_dir = model_dir(args, "asr", verb="data durations", use_default=True)
    if run_dir is None:
        return 2
    frontend = (TTSConfig.load(args.config) if args.config else TTSConfig()).frontend
    recognizer = load_run(run_dir, batch_size=args.batch_size)
    report = compute_durations(recognizer, args.manifest, args.out, frontend=frontend,
                               min_confidence=args.min_confidence, batch_size=args.batch_size, limit=args.limit,
                               progress=sys.stderr.isatty())
    reasons = ", ".join(f"{k}: {v}" for k, v in report["skipped"].items()) or "none"
    print(f"{args.out}: {report['kept']} of {report['utterances']} utterances ({report['hours_kept']:.2f} h), "
          f"mean confidence {report['mean_confidence']}; dropped {reasons}")
    return 0


def _train(args):
    from speechkit.tts.config import TTSConfig
    from speechkit.tts.train import train_tts

    config = TTSConfig.load(args.config)
    summary = train_tts(config, out_dir=args.out, manifest=args.train, durations=args.durations,
                        time_budget_min=args.time_budget, command=_command(), verbose=2 if args.quiet else "auto")
    final = summary["final"]
    print(f"{args.out}: {summary['step']} steps{' (time budget)' if summary['stopped'] == 'time_budget' else ''}; "
          f"mel L1 {final.get('mel_l1', float('nan')):.3f}, "
          f"log-duration MSE {final.get('duration_mse', float('nan')):.3f}")
    return 0


def _vocoder_choice(args, verb):
    """(kind, vocoder folder) from --vocoder, --vocoder-model and --vocoder-run, or None after a usage error."""
    from speechkit.models import resolve_model

    if args.vocoder_model is not None and args.vocoder_run is not None:
        print(f"speechkit {verb}: error: give --vocoder-model or --vocoder-run, not both", file=sys.stderr)
        return None
    vocoder_dir = args.vocoder_run
    if args.vocoder_model is not None:
        vocoder_dir = resolve_model(args.vocoder_model, family="vocoder")
    elif vocoder_dir is None and args.vocoder != "griffinlim":
        vocoder_dir = _released_vocoder()
    kind = args.vocoder or ("wavenet" if vocoder_dir else "griffinlim")
    if kind == "wavenet" and vocoder_dir is None:
        print(f"speechkit {verb}: error: --vocoder wavenet needs --vocoder-model NAME or --vocoder-run RUN",
              file=sys.stderr)
        return None
    return kind, vocoder_dir


def _released_vocoder():
    """The released vocoder's folder (``wavenet-mini``), or None when none is released."""
    from speechkit.errors import RunError
    from speechkit.models import default_model

    try:
        return default_model("vocoder")
    except RunError:
        return None


def _synthesize(args):
    from speechkit.errors import TextError
    from speechkit.tts.synthesis import load_synthesizer, synthesize_to_dir, synthesize_to_file

    if (args.text is None) == (args.text_file is None):
        print("speechkit synthesize: error: give the text, or --text-file, not both", file=sys.stderr)
        return 2
    choice = _vocoder_choice(args, "synthesize")
    if choice is None:
        return 2
    kind, vocoder_dir = choice
    if args.text_file is not None:
        try:
            with open(args.text_file, encoding="utf-8") as f:
                texts = [line.strip() for line in f if line.strip()]
        except OSError as err:
            raise TextError(f"{args.text_file}: cannot read the text ({err.strerror})") from None
        if not texts:
            raise TextError(f"{args.text_file}: holds no text")
    else:
        texts = [args.text]
    run_dir = model_dir(args, "tts", verb="synthesize", use_default=True)
    if run_dir is None:
        return 2
    to_file = looks_like_audio(args.out)
    if to_file and len(texts) != 1:
        print(f"speechkit synthesize: error: --out {args.out} is one audio file, but {args.text_file} holds "
              f"{len(texts)} texts; give a folder", file=sys.stderr)
        return 2
    synthesizer = load_synthesizer(run_dir, vocoder=kind, vocoder_dir=vocoder_dir,
                                   griffinlim_iterations=args.griffinlim_iterations)
    if to_file:
        result = synthesize_to_file(synthesizer, texts[0], args.out, speed=args.speed, temperature=args.temperature,
                                    seed=args.seed)
        print(f"{args.out}: {result['seconds']:.2f} s of audio in {result['synthesis_seconds']:.2f} s (RTF "
              f"{result['synthesis_seconds'] / max(result['seconds'], 1e-9):.2f}, {kind})")
        return 0
    listing = synthesize_to_dir(synthesizer, texts, args.out, speed=args.speed, temperature=args.temperature,
                                seed=args.seed)
    seconds = sum(item["seconds"] for item in listing)
    elapsed = sum(item["synthesis_seconds"] for item in listing)
    print(f"{args.out}: {len(listing)} utterances, {seconds:.2f} s of audio in {elapsed:.2f} s "
          f"(RTF {elapsed / max(seconds, 1e-9):.2f}, {kind}); listing {args.out}/synthesis.jsonl")
    return 0


def _eval(args):
    from speechkit.data.manifest import read_manifest
    from speechkit.tts.evaluate import evaluate_tts
    from speechkit.tts.synthesis import load_synthesizer

    choice = _vocoder_choice(args, "eval-tts")
    if choice is None:
        return 2
    kind, vocoder_dir = choice
    run_dir = model_dir(args, "tts", verb="eval-tts", use_default=True)
    if run_dir is None:
        return 2
    utterances = read_manifest(args.manifest)[:args.limit]
    recognizer = None
    if args.asr != "none":
        from speechkit.asr.inference import load_run
        from speechkit.models import resolve_model

        recognizer = load_run(resolve_model(args.asr, family="asr"))
    synthesizer = load_synthesizer(run_dir, vocoder=kind, vocoder_dir=vocoder_dir,
                                   griffinlim_iterations=args.griffinlim_iterations)
    report = evaluate_tts(synthesizer, utterances, out_dir=args.out, recognizer=recognizer, plots=args.plots,
                          command=_command())
    s = report["summary"]
    line = (f"{args.out}: {s['utterances']} utterances, {s['seconds_synthesized']:.1f} s ({kind}), RTF {s['rtf']:.3f}; "
            f"MCD-DTW {s['mcd_dtw_mel_db']:.2f} dB (mel), {s['mcd_dtw_audio_db']:.2f} dB (audio)")
    if "wer_recorded" in s:
        line += f"; ASR WER recorded {s['wer_recorded'] * 100:.1f}%, synthesised {s['wer_synthesized'] * 100:.1f}%"
    print(line)
    return 0


def _export(args):
    from speechkit.export.tts import export_tts

    run_dir = model_dir(args, "tts", verb="export tts")
    if run_dir is None:
        return 2
    info = export_tts(run_dir, args.out, griffinlim_iterations=args.griffinlim_iterations)
    print(f"{args.out}: SavedModel ({info['signature']}: text string -> waveform float32) in "
          f"{info['export_seconds']:.1f} s")
    return 0
