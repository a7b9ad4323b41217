"""``speechkit align``: CTC forced alignment of a transcript to a recording (words and characters, in seconds)."""

import os
import sys

from speechkit.cli import add_defaults_help
from speechkit.cli.models import add_model_argument, looks_like_audio, model_dir

__all__ = ["register"]


def register(commands, groups):
    p = add_defaults_help(commands.add_parser(
        "align", help="force-align a transcript to audio with a trained ASR run or released model: start, end and "
        "confidence of each word and character"))
    p.add_argument("run", nargs="?", help="run directory (holds model.keras); omit with --model, or to use the "
                   "released ASR model (see 'speechkit models')")
    add_model_argument(p, "asr")
    p.add_argument("audio", help="audio file (any libsndfile format; resampled to the model's rate)")
    p.add_argument("text", nargs="?", default=None, help="the transcript (or give --text-file)")
    p.add_argument("--text-file", default=None, metavar="FILE", help="read the transcript from this UTF-8 file")
    p.add_argument("--out", required=True, help="JSON file to write (atomically)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass for long audio")
    p.set_defaults(func=_align)


def _align(args):
    from speechkit.asr.align import align_audio
    from speechkit.asr.inference import load_run
    from speechkit.errors import TextError

    if args.run is not None and (args.model is not None or looks_like_audio(args.run)):
        # No run was meant, so argparse's optional RUN positional took the audio file.
        if args.text is not None:
            print("speechkit align: error: give a run directory or --model NAME, then AUDIO and TEXT",
                  file=sys.stderr)
            return 2
        args.run, args.audio, args.text = None, args.run, args.audio
    if (args.text is None) == (args.text_file is None):
        print("speechkit align: error: give the transcript as TEXT or --text-file FILE (one of them)",
              file=sys.stderr)
        return 2
    text = args.text
    if args.text_file is not None:
        try:
            with open(args.text_file, encoding="utf-8") as f:
                text = f.read()
        except OSError as err:
            raise TextError(f"{args.text_file}: cannot read the transcript ({err.strerror})") from None
    run_dir = model_dir(args, "asr", verb="align", use_default=True)
    if run_dir is None:
        return 2
    recognizer = load_run(run_dir, batch_size=args.batch_size)
    alignment = align_audio(recognizer, args.audio, text, text_source=args.text_file,
                            progress=sys.stderr.isatty())
    folder = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    alignment.save(args.out)
    print(f"{args.out}: {len(alignment.words)} words aligned in {alignment.start:.2f}-{alignment.end:.2f} s of "
          f"{args.audio}; confidence {alignment.confidence:.3f} (lowest word {alignment.min_word_confidence:.3f})")
    return 0
