"""``speechkit train vocoder``, ``vocode``, ``generate`` and ``eval-vocoder``: WaveNet commands."""

import os
import shlex
import sys

from speechkit.cli import add_defaults_help
from speechkit.cli.models import add_model_argument, looks_like_audio, model_dir

__all__ = ["register"]


def register(commands, groups):
    p = add_defaults_help(groups["train"].add_parser("vocoder", help="train a WaveNet vocoder from a preset"))
    p.add_argument("--config", required=True, help="preset YAML, e.g. models/wavenet-mini.yaml")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--train", help="training manifest (JSONL)")
    data.add_argument("--audio-dir", help="or: a folder of wav/flac/ogg files (speaker = first sub-folder)")
    p.add_argument("--out", required=True, help="run directory; an interrupted run there is resumed exactly")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                   help="stop cleanly after this many minutes of this invocation")
    p.add_argument("--init-from", default=None, metavar="RUN|MODEL",
                   help="start a new run from the weights of a vocoder run or released model (same front end and "
                   "layers; a new input such as pulse_input starts at zero); the optimizer starts afresh")
    p.add_argument("--quiet", action="store_true", help="one line per epoch instead of the progress bar")
    p.set_defaults(func=_train)

    p = add_defaults_help(commands.add_parser("vocode", help="copy synthesis: resynthesise audio from its log-mel"))
    p.add_argument("run", nargs="?", help="vocoder run directory (holds model.keras); omit with --model or "
                   "--saved-model, or to use the released vocoder (see 'speechkit models')")
    p.add_argument("audio", nargs="*", help="audio file(s) whose log-mel conditions the model (or --mel-from)")
    add_model_argument(p, "vocoder")
    p.add_argument("--saved-model", default=None, metavar="EXPORT",
                   help="use an exported SavedModel (speechkit export vocoder) instead of a run")
    p.add_argument("--mel-from", default=None, metavar="AUDIO", help="audio file whose log-mel conditions the model")
    p.add_argument("--out", required=True,
                   help="output audio file (wav or flac); with several inputs, a folder that receives <name>.wav")
    p.add_argument("--batch-size", type=int, default=8,
                   help="utterances generated together; a batch uses every core")
    p.add_argument("--max-seconds", type=float, default=120.0,
                   help="refuse longer input: sample-by-sample generation of a long file would run for hours")
    _add_sampling_args(p)
    _add_postfilter_arg(p)
    p.set_defaults(func=_vocode)

    p = add_defaults_help(commands.add_parser("generate", help="free-running generation from an unconditional WaveNet"))
    p.add_argument("run", help="vocoder run directory (holds model.keras)")
    p.add_argument("--prime", default=None, metavar="AUDIO", help="seed waveform to continue from")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds to generate after the seed")
    p.add_argument("--out", required=True, help="output audio file; holds the seed followed by the continuation")
    p.add_argument("--batch-size", type=int, default=1, help="independent streams; out_1.wav, out_2.wav, ... when > 1")
    p.add_argument("--chord", default=None, metavar="LABEL",
                   help="chord-conditioned music models: a triad such as C:maj, Db:min, F#:dim, G#:aug, or its "
                   "index in speechkit.music.LABELS (12 * quality + root); same as --speaker with the label")
    _add_sampling_args(p)
    p.set_defaults(func=_generate)

    p = add_defaults_help(commands.add_parser(
        "eval-vocoder", help="copy-synthesis distortion (LSD, MCD) and optionally the ASR WER of vocoded audio"))
    p.add_argument("run", nargs="?", help="vocoder run directory (holds model.keras); omit with --model")
    add_model_argument(p, "vocoder")
    p.add_argument("--manifest", required=True, help="held-out utterances (JSONL)")
    p.add_argument("--out", required=True, help="report folder (report.json, report.md, wav/, png/)")
    p.add_argument("--limit", type=int, default=None,
                   help="N utterances evenly spread over the manifest (so over its speakers)")
    p.add_argument("--asr", default=None, metavar="RUN_ASR",
                   help="ASR run or released ASR model name: WER of vocoded next to original audio")
    p.add_argument("--plots", type=int, default=4, help="utterances with spectrogram PNGs")
    p.add_argument("--batch-size", type=int, default=8)
    _add_sampling_args(p)
    _add_postfilter_arg(p)
    p.set_defaults(func=_eval)


def _add_postfilter_arg(parser):
    parser.add_argument("--postfilter", type=int, default=None, metavar="PASSES",
                        help="mel post-filter passes over each vocoded waveform (0: off; default: the model's "
                             "mel_postfilter)")


def _add_sampling_args(parser):
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 takes the argmax")
    parser.add_argument("--seed", type=int, default=0, help="sampling noise seed")
    parser.add_argument("--speaker", default=None, help="speaker name or index (speaker-conditioned models)")
    parser.add_argument("--backend", choices=("fast", "tf"), default="fast",
                        help="fast: numba CPU loop; tf: XLA-compiled TensorFlow loop")


def _command():
    return " ".join(shlex.quote(a) for a in ["speechkit"] + sys.argv[1:])


def _train(args):
    from speechkit.vocoder.config import load_vocoder_config
    from speechkit.models import resolve_model
    from speechkit.vocoder.train import train_vocoder

    config = load_vocoder_config(args.config)
    init_from = args.init_from
    if init_from is not None and not os.path.isdir(init_from):
        init_from = resolve_model(init_from, family="vocoder")
    summary = train_vocoder(config, out_dir=args.out, manifest=args.train, audio_dir=args.audio_dir,
                            time_budget_min=args.time_budget, command=_command(), init_from=init_from,
                            verbose=2 if args.quiet else "auto")
    final = summary["final"]
    print(f"{args.out}: {summary['step']} steps"
          f"{' (time budget)' if summary['stopped'] == 'time_budget' else ''}; "
          f"loss {final.get('loss', float('nan')):.3f}, teacher-forced accuracy {final.get('accuracy', 0) * 100:.1f}%")


def _vocode(args):
    from speechkit import audio as audio_io
    from speechkit.errors import AudioError
    from speechkit.vocoder.generation import load_vocoder, vocode_files

    if args.run is not None and (args.saved_model is not None or args.model is not None or looks_like_audio(args.run)):
        # No run was meant, so argparse's optional RUN positional took the first audio file.
        args.run, args.audio = None, [args.run] + args.audio
    if bool(args.audio) == (args.mel_from is not None):
        print("speechkit vocode: error: give audio files, or one with --mel-from", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print(f"speechkit vocode: error: --batch-size must be >= 1, received {args.batch_size}", file=sys.stderr)
        return 2
    paths = args.audio or [args.mel_from]
    for path in paths:
        seconds = audio_io.info(path)[0]
        if seconds > args.max_seconds:
            raise AudioError(f"{path}: {seconds:.1f} s is longer than --max-seconds {args.max_seconds:g}; "
                             "cut it into shorter files or raise the limit")
    if args.saved_model is not None:
        from speechkit.export.vocoder import load_exported_vocoder

        if args.run is not None or args.model is not None:
            print("speechkit vocode: error: give a run directory, --model NAME or --saved-model EXPORT, not several",
                  file=sys.stderr)
            return 2
        vocoder, backend, how = load_exported_vocoder(args.saved_model), None, "SavedModel"
    else:
        run_dir = model_dir(args, "vocoder", verb="vocode", use_default=True)
        if run_dir is None:
            return 2
        vocoder, backend, how = load_vocoder(run_dir), args.backend, args.backend
    result = vocode_files(vocoder, paths, args.out, temperature=args.temperature, seed=args.seed,
                          speaker=args.speaker, batch_size=args.batch_size, backend=backend,
                          progress=backend is not None, postfilter=args.postfilter)
    where = f"{args.out}:" if len(paths) == 1 else f"{args.out}: {len(paths)} files,"
    print(f"{where} {result['seconds']:.2f} s vocoded in {result['elapsed']:.2f} s "
          f"(RTF {result['elapsed'] / result['seconds']:.2f}, {how})")


def _generate(args):
    import time

    import numpy as np

    from speechkit import audio as audio_io
    from speechkit.errors import ConfigError
    from speechkit.music.chords import chord_label, parse_chord
    from speechkit.vocoder.generation import load_vocoder

    if args.seconds <= 0 or args.batch_size < 1:
        raise ConfigError(f"need --seconds > 0 and --batch-size >= 1, received {args.seconds}, {args.batch_size}")
    if args.chord is not None:
        if args.speaker is not None:
            print("speechkit generate: error: give --chord or --speaker, not both", file=sys.stderr)
            return 2
        args.speaker = chord_label(*parse_chord(args.chord))
    vocoder = load_vocoder(args.run)
    rate = vocoder.frontend.sample_rate
    prime = audio_io.load(args.prime, sample_rate=rate) if args.prime else None
    started = time.perf_counter()
    streams = vocoder.generate(int(round(args.seconds * rate)), prime=prime, batch_size=args.batch_size,
                               temperature=args.temperature, seed=args.seed, speaker=args.speaker,
                               backend=args.backend)
    elapsed = time.perf_counter() - started
    root, ext = os.path.splitext(args.out)
    for b, stream in enumerate(streams):
        path = args.out if args.batch_size == 1 else f"{root}_{b + 1}{ext}"
        wave = stream if prime is None else np.concatenate([prime, stream])
        audio_io.save(path, wave, sample_rate=rate)
        print(f"{path}: {len(wave) / rate:.2f} s" + ("" if prime is None else f" ({len(prime) / rate:.2f} s seed)"))
    print(f"generated {streams.size / rate:.2f} s in {elapsed:.2f} s (RTF {elapsed / (streams.size / rate):.2f})")


def _eval(args):
    from speechkit.data.manifest import even_spread, read_manifest
    from speechkit.vocoder.evaluate import evaluate_vocoder
    from speechkit.vocoder.generation import load_vocoder

    run_dir = model_dir(args, "vocoder", verb="eval-vocoder")
    if run_dir is None:
        return 2
    vocoder = load_vocoder(run_dir)
    utterances = read_manifest(args.manifest)
    if args.limit is not None:
        utterances = even_spread(utterances, args.limit)
    recognizer = None
    if args.asr:
        from speechkit.asr.inference import load_run
        from speechkit.models import resolve_model

        recognizer = load_run(resolve_model(args.asr, family="asr"))
    report = evaluate_vocoder(vocoder, utterances, out_dir=args.out, recognizer=recognizer,
                              temperature=args.temperature, seed=args.seed, speaker=args.speaker,
                              backend=args.backend, batch_size=args.batch_size, plots=args.plots,
                              postfilter=args.postfilter,
                              command=_command())
    s = report["summary"]
    line = (f"{args.out}: {s['utterances']} utterances; LSD {s['lsd_db']:.2f} dB, MCD {s['mcd_db']:.2f} dB "
            f"(mu-law floor: {s['mulaw_lsd_db']:.2f} / {s['mulaw_mcd_db']:.2f}")
    if "noise_lsd_db" in s:
        line += f"; LPC filter alone: {s['noise_lsd_db']:.2f} / {s['noise_mcd_db']:.2f}"
    line += f"); RTF {s['rtf']:.2f}"
    if "wer_vocoded" in s:
        line += f"; ASR WER original {s['wer_original'] * 100:.1f}%, vocoded {s['wer_vocoded'] * 100:.1f}%"
    if "wer_noise_excited_postfiltered" in s:
        line += f", LPC filter alone {s['wer_noise_excited_postfiltered'] * 100:.1f}%"
    elif "wer_noise_excited" in s:
        line += f", LPC filter alone {s['wer_noise_excited'] * 100:.1f}%"
    if "wer_vocoded_without_postfilter" in s:
        line += (f"; without the {s['postfilter']}-pass mel post-filter: vocoded "
                 f"{s['wer_vocoded_without_postfilter'] * 100:.1f}%")
        if "wer_noise_excited" in s:
            line += f", LPC filter alone {s['wer_noise_excited'] * 100:.1f}%"
    print(line)
