"""``speechkit data ...``: corpus preparation commands."""

import os
import sys

from speechkit.cli import add_defaults_help

__all__ = ["register"]

_REPO_BOOKS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "corpus", "books")


def register(commands, groups):
    data = groups["data"]

    p = add_defaults_help(data.add_parser(
        "import-librispeech", help="write a JSONL manifest for a LibriSpeech-layout tree"))
    p.add_argument("root", help="folder holding <speaker>/<chapter>/*.flac and *.trans.txt")
    p.add_argument("--out", required=True, help="manifest to write (JSONL)")
    p.add_argument("--report", default=None, help="skip report (JSON); default <out>.report.json")
    p.add_argument("--min-duration", type=float, default=0.1, help="seconds")
    p.add_argument("--max-duration", type=float, default=35.0, help="seconds")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="read only each file's header instead of decoding it "
                   "(faster; corrupt audio then fails in training)")
    p.set_defaults(func=_import_librispeech)

    p = add_defaults_help(data.add_parser(
        "synth-mini", help="synthesise the embedded mini corpus with espeak-ng and flite"))
    p.add_argument("--out", required=True, help="output folder (LibriSpeech layout: train/, dev/, test/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--books", default=os.path.normpath(_REPO_BOOKS), help="folder of *.txt books")
    p.add_argument("--train-hours", type=float, default=1.0)
    p.add_argument("--dev-minutes", type=float, default=10.0)
    p.add_argument("--test-minutes", type=float, default=10.0)
    p.add_argument("--jobs", type=int, default=os.cpu_count(), help="parallel synthesis processes")
    p.add_argument("--speakers", type=int, nargs=3, default=(40, 8, 8), metavar=("TRAIN", "DEV", "TEST"),
                   help="synthetic speakers per split")
    p.add_argument("--flite-fraction", type=float, default=0.25, help="share of flite speakers in each split")
    p.add_argument("--extra-train-speakers", type=int, default=0,
                   help="training speakers added to those of --speakers (more voices, accents and settings, never "
                   "near a dev or test speaker); dev and test stay those of the same seed without them. "
                   "The release corpus: --extra-train-speakers 160 --train-hours 5")
    p.add_argument("--train-flite-share", type=float, default=None, metavar="SHARE",
                   help="share of training utterances spoken by flite speakers (default: every training speaker "
                   "gets the same number); dev and test are unchanged")
    p.add_argument("--max-words", type=int, default=20, help="longest sentence kept, in words")
    p.add_argument("--single-speaker", nargs="?", const="en-us+m3", default=None, metavar="ACCENT+VARIANT",
                   help="one espeak-ng voice speaks every split (a TTS corpus; --speakers, --flite-fraction and "
                   "--extra-train-speakers are then unused); without a value: en-us+m3")
    p.set_defaults(func=_synth_mini)

    p = add_defaults_help(data.add_parser(
        "combine", help="concatenate manifests, optionally keeping some speakers or hours"))
    p.add_argument("manifests", nargs="+", help="input JSONL manifests")
    p.add_argument("--out", required=True, help="manifest to write")
    p.add_argument("--speakers", default=None, help="comma-separated speaker ids to keep (default: all)")
    p.add_argument("--max-hours", type=float, default=None, help="keep utterances in order until this much audio")
    p.set_defaults(func=_combine)

    p = add_defaults_help(data.add_parser(
        "augment", help="write speed-perturbed and noisy copies of a manifest's utterances, and a manifest listing "
        "originals and copies"))
    p.add_argument("manifest", help="input JSONL manifest")
    p.add_argument("--out", required=True, help="output folder (audio/, the manifest under the input's name, "
                   "augment.json); a rerun skips the copies that exist")
    p.add_argument("--speeds", type=float, nargs="*", default=[0.9, 1.1],
                   help="one copy per speed factor (tempo and pitch change together); none: no speed copies")
    p.add_argument("--noise", nargs="*", default=[], metavar="KIND",
                   help="built-in noise kinds to draw from: white, pink, brown, babble (other utterances summed)")
    p.add_argument("--noise-files", default=None, metavar="MANIFEST|DIR",
                   help="your own noise recordings to draw from (a manifest or a folder of audio files)")
    p.add_argument("--snr", type=float, nargs=2, default=[5.0, 25.0], metavar=("LOW", "HIGH"),
                   help="signal-to-noise ratio range in dB for the noisy copies")
    p.add_argument("--noisy-copies", type=int, default=None,
                   help="noisy copies of every utterance (default: 1 when a noise source is given, else 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="worker threads")
    p.set_defaults(func=_augment)

    p = add_defaults_help(data.add_parser(
        "segment", help="cut a long recording and its book text into utterances (LibriSpeech layout + manifest) "
        "by CTC forced alignment with an ASR model"))
    p.add_argument("audio", help="the long recording (any libsndfile format; read window by window)")
    p.add_argument("text", help="the book or chapter text read in it (UTF-8); sentences end at . ! ? or blank lines")
    p.add_argument("--out", required=True, help="output folder: SPEAKER/CHAPTER/*.flac, *.trans.txt, manifest.jsonl, "
                   "sentences.jsonl, report.json")
    p.add_argument("--run", default=None, help="ASR run directory (instead of --model)")
    p.add_argument("--model", default=None, metavar="NAME",
                   help="released ASR model (see 'speechkit models') or its folder; default: the released one")
    p.add_argument("--max-seconds", type=float, default=20.0, help="longest utterance (speech), in seconds")
    p.add_argument("--min-confidence", type=float, default=0.2,
                   help="utterances aligned with a lower confidence (geometric mean posterior of the CTC path) are "
                   "rejected")
    p.add_argument("--speaker", default=None, help="speaker id (letters and digits); default: from the file name")
    p.add_argument("--chapter", default="0", help="chapter id (letters and digits)")
    p.add_argument("--padding", type=float, default=0.15, help="seconds of audio kept around the speech")
    p.add_argument("--batch-size", type=int, default=16, help="recognition windows per forward pass")
    p.set_defaults(func=_segment)

    p = add_defaults_help(data.add_parser("text", help="write the transcripts of manifests, one per line (LM text)"))
    p.add_argument("manifests", nargs="+", help="input JSONL manifests")
    p.add_argument("--out", required=True, help="text file to write")
    p.set_defaults(func=_text)


def _import_librispeech(args):
    from speechkit.data.librispeech import import_librispeech

    utterances, report = import_librispeech(args.root, args.out, min_duration=args.min_duration,
                                            max_duration=args.max_duration, report_path=args.report,
                                            verify=args.verify)
    hours = sum(u.duration for u in utterances) / 3600
    print(f"{args.out}: {len(utterances)} utterances, {hours:.2f} h; {report.summary()}")


def _synth_mini(args):
    from speechkit.data.mini import synth_mini

    summary = synth_mini(args.out, seed=args.seed, books_dir=args.books, train_hours=args.train_hours,
                         dev_minutes=args.dev_minutes, test_minutes=args.test_minutes, jobs=args.jobs,
                         train_speakers=args.speakers[0], dev_speakers=args.speakers[1], test_speakers=args.speakers[2],
                         flite_fraction=args.flite_fraction, max_words=args.max_words,
                         extra_train_speakers=args.extra_train_speakers, single_speaker=args.single_speaker,
                         train_flite_share=args.train_flite_share)
    for split, stats in summary["splits"].items():
        print(f"{args.out}/{split}: {stats['utterances']} utterances, {stats['speakers']} speakers, "
              f"{stats['seconds'] / 60:.1f} min (mean {stats['mean_seconds']:.2f} s)")
    print(f"{args.out}: {summary['failures']['count']} synthesis failures; "
          f"lm_text.txt has {summary['lm_text']['sentences']} sentences")


def _combine(args):
    from speechkit.data.manifest import combine_manifests

    speakers = args.speakers.split(",") if args.speakers else None
    utterances = combine_manifests(args.manifests, args.out, speakers=speakers, max_hours=args.max_hours)
    print(f"{args.out}: {len(utterances)} utterances, {sum(u.duration for u in utterances) / 3600:.2f} h")


def _augment(args):
    from speechkit.data.augment import AugmentConfig, augment_manifest

    copies = args.noisy_copies
    if copies is None:
        copies = 1 if (args.noise or args.noise_files) else 0
    config = AugmentConfig(speeds=tuple(args.speeds), noise=tuple(args.noise), noise_files=args.noise_files,
                           snr_db=tuple(args.snr), noisy_copies=copies, seed=args.seed)
    summary = augment_manifest(args.manifest, args.out, config, jobs=args.jobs, progress=sys.stderr.isatty())
    print(f"{summary['manifest']}: {summary['originals']} originals + {summary['copies']} copies "
          f"({summary['written']} written, {summary['reused']} reused), {summary['hours']:.2f} h; "
          f"{summary['failed']['count']} unreadable")
    return 0 if not summary["failed"]["count"] else 1


def _segment(args):
    from speechkit.asr.inference import load_run
    from speechkit.cli.models import model_dir
    from speechkit.data.segment import segment_recording
    from speechkit.errors import TextError

    run_dir = model_dir(args, "asr", verb="data segment", use_default=True)
    if run_dir is None:
        return 2
    try:
        with open(args.text, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise TextError(f"{args.text}: cannot read the text ({err.strerror})") from None
    recognizer = load_run(run_dir, batch_size=args.batch_size)
    report = segment_recording(recognizer, args.audio, text, args.out, speaker=args.speaker, chapter=args.chapter,
                               max_seconds=args.max_seconds, min_confidence=args.min_confidence,
                               padding_seconds=args.padding, progress=sys.stderr.isatty(), source_text=args.text)
    rejected = report["rejected"]
    reasons = ", ".join(f"{k}: {v}" for k, v in rejected["by_reason"].items()) or "none"
    print(f"{args.out}: {report['utterances']} utterances ({report['kept_seconds'] / 60:.1f} of "
          f"{report['seconds'] / 60:.1f} min) from {report['sentences']} sentences; rejected {rejected['skipped']} "
          f"({reasons}); manifest {report['manifest']}")
    return 0


def _text(args):
    from speechkit.data.manifest import write_transcripts

    print(f"{args.out}: {write_transcripts(args.manifests, args.out)} lines")
