"""``speechkit data synth-triads``, ``eval-chords`` and ``eval-music``: the piano-triads corpus and music scores."""

import os
import shlex
import sys

from speechkit.cli import add_defaults_help

__all__ = ["register"]


def register(commands, groups):
    p = add_defaults_help(groups["data"].add_parser(
        "synth-triads", help="render the piano-triads corpus (12 roots x maj/min/dim/aug) with fluidsynth"))
    p.add_argument("--out", required=True, help="corpus folder: train/, test/, train.jsonl, test.jsonl, triads.json")
    p.add_argument("--seed", type=int, default=0, help="velocities, durations and the test split")
    p.add_argument("--octaves", type=int, nargs="+", default=[3, 4, 5], help="octaves of the root (4: middle C)")
    p.add_argument("--inversions", type=int, nargs="+", default=[0, 1, 2], help="0 root position, 1 first, 2 second")
    p.add_argument("--variants", type=int, default=1, help="renders per chord, inversion and octave")
    p.add_argument("--min-seconds", type=float, default=1.5, help="shortest held chord")
    p.add_argument("--max-seconds", type=float, default=3.0, help="longest held chord")
    p.add_argument("--test-per-chord", type=int, default=1, help="renders per chord label held out in test")
    p.add_argument("--soundfont", default=None, help="General MIDI .sf2 (default: TimGM6mb, then FluidR3_GM)")
    p.add_argument("--jobs", type=int, default=os.cpu_count(), help="parallel fluidsynth processes")
    p.set_defaults(func=_synth_triads)

    p = add_defaults_help(commands.add_parser(
        "eval-chords", help="accuracy of the chroma chord recogniser on labelled clips (speaker = chord)"))
    p.add_argument("manifests", nargs="+", help="JSONL manifests, e.g. the triads corpus's train.jsonl test.jsonl")
    p.add_argument("--out", default=None, help="JSON file for the result")
    p.add_argument("--limit", type=int, default=None, help="score about this many clips, evenly spread")
    p.set_defaults(func=_eval_chords)

    p = add_defaults_help(commands.add_parser(
        "eval-music", help="generate primed and unprimed clips from music WaveNets and score them"))
    p.add_argument("runs", nargs="+", help="vocoder run directories (unconditional or chord-conditioned)")
    p.add_argument("--train", required=True, help="training manifest (reference pitch-class histograms)")
    p.add_argument("--test", required=True, help="held-out manifest: requested chords and seeds")
    p.add_argument("--out", required=True, help="report folder (report.md, report.json, wav/, png/)")
    p.add_argument("--clips", type=int, default=48, help="clips per run and mode")
    p.add_argument("--seconds", type=float, default=1.0, help="generated seconds per clip")
    p.add_argument("--prime-seconds", type=float, default=0.25, help="seed length for primed generation")
    p.add_argument("--plots", type=int, default=2, help="clips per run and mode with PNGs")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 takes the argmax")
    p.add_argument("--seed", type=int, default=0, help="sampling noise seed")
    p.add_argument("--backend", choices=("fast", "tf"), default="fast",
                   help="fast: numba CPU loop; tf: XLA-compiled TensorFlow loop")
    p.set_defaults(func=_eval_music)


def _synth_triads(args):
    from speechkit.data.triads import TriadsConfig, synth_triads

    config = TriadsConfig(seed=args.seed, octaves=tuple(args.octaves), inversions=tuple(args.inversions),
                          variants=args.variants, min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                          test_per_chord=args.test_per_chord)
    summary = synth_triads(args.out, config, soundfont=args.soundfont, jobs=args.jobs)
    for split, stats in summary["splits"].items():
        print(f"{args.out}/{split}: {stats['files']} files, {stats['chords']} chords, {stats['seconds'] / 60:.1f} min")
    print(f"{args.out}: rendered {summary['rendered']}, already there {summary['skipped']}, "
          f"in {summary['seconds']:.1f} s ({os.path.basename(summary['soundfont'])})")


def _eval_chords(args):
    from speechkit.music.scores import check_recognizer

    result = check_recognizer(args.manifests, out=args.out, limit=args.limit)
    qualities = ", ".join(f"{q} {a * 100:.1f}%" for q, a in result["by_quality"].items())
    print(f"chord recogniser: {result['accuracy'] * 100:.1f}% of {result['clips']} clips "
          f"(same label {result['strict_accuracy'] * 100:.1f}%; {qualities}) in {result['seconds']:.0f} s")
    for utt_id, label, recognised in result["errors"]:
        print(f"  {utt_id}: {label} recognised as {recognised}")


def _eval_music(args):
    from speechkit.music.evaluate import evaluate_music

    command = " ".join(shlex.quote(a) for a in ["speechkit"] + sys.argv[1:])
    report = evaluate_music(args.runs, train_manifest=args.train, test_manifest=args.test, out_dir=args.out,
                            clips=args.clips, seconds=args.seconds, prime_seconds=args.prime_seconds,
                            temperature=args.temperature, seed=args.seed, backend=args.backend, plots=args.plots,
                            command=command)
    for row in report["rows"]:
        accuracy = row.get("chord_accuracy")
        print(f"{row['source']} {row['mode']}: chord accuracy "
              f"{'-' if accuracy is None else f'{accuracy * 100:.1f}%'}, music share {row['music_share'] * 100:.1f}%, "
              f"histogram distance {row.get('histogram_distance', float('nan')):.3f}")
    print(f"{args.out}/report.md (chance {report['chance'] * 100:.1f}%)")
