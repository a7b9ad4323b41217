"""``speechkit models``: list released models and pack a trained run as one; ``--model`` for the other verbs."""

import json
import os
import sys

from speechkit.cli import add_defaults_help

__all__ = ["register", "add_model_argument", "model_dir", "looks_like_audio"]

_AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".opus", ".sph")


def register(commands, groups):
    p = add_defaults_help(commands.add_parser(
        "models", help="list the released models (models/, or $SPEECHKIT_MODELS) or pack a run as one"))
    p.add_argument("--json", action="store_true", help="print the cards as JSON")
    p.set_defaults(func=_list)
    sub = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND")

    q = add_defaults_help(sub.add_parser("list", help="list the released models with their figures (the default)"))
    q.add_argument("--json", action="store_true", help="print the cards as JSON")
    q.set_defaults(func=_list)

    q = add_defaults_help(sub.add_parser(
        "pack", help="write models/NAME from a finished run (config, weights, vocabulary or speakers, decode.yaml "
        "with its LM, summary, card) and verify it by loading it back"))
    q.add_argument("run", help="finished ASR, vocoder or TTS run directory (holds model.keras and DONE)")
    q.add_argument("--name", required=True, help="released model name, e.g. ds2-mini")
    q.add_argument("--float16", action="store_true", help="store the weights in float16 (half the size)")
    q.add_argument("--force", action="store_true", help="replace an existing released model of that name")
    q.add_argument("--probe", default=None, metavar="MANIFEST",
                   help="compare packed and original model on these utterances, their audio (ASR, vocoder) or their "
                   "text (TTS) (default: synthetic signals, or fixed sentences)")
    q.add_argument("--probe-limit", type=int, default=4, help="utterances of --probe used")
    q.add_argument("--figure", action="append", default=[], metavar="NAME=VALUE",
                   help="a measured figure for the card, e.g. test_wer_greedy=0.18 (repeatable)")
    q.add_argument("--eval", action="append", default=[], metavar="NAME=REPORT",
                   help="figures NAME_wer, NAME_cer, NAME_rtf from a 'speechkit eval' report.json (repeatable)")
    q.add_argument("--data", default=None, help="what the model was trained on, for the card")
    q.add_argument("--description", default=None, help="one line for the listing and the card")
    q.add_argument("--notes", default=None, metavar="FILE", help="Markdown appended to the model card")
    q.set_defaults(func=_pack)


# -- Shared by the verbs that take --model -- #

def add_model_argument(parser, family):
    """Add ``--model NAME`` (a released ``family`` model, or a model folder) to ``parser``."""
    what = {"asr": "ASR", "vocoder": "vocoder", "tts": "TTS"}[family]
    parser.add_argument("--model", default=None, metavar="NAME",
                        help=f"released {what} model (see 'speechkit models') or its folder, instead of RUN")


def looks_like_audio(path):
    """bool, whether a positional argument is an audio file rather than a run directory."""
    return not os.path.isdir(path) and (os.path.isfile(path) or path.lower().endswith(_AUDIO_EXTENSIONS))


def model_dir(args, family, *, verb, use_default=False):
    """The run or released-model directory a verb works on, from ``RUN`` or ``--model``.

    Args:
        args: the parsed namespace, with ``run`` and ``model``.
        family: ``"asr"``, ``"vocoder"`` or ``"tts"``.
        verb: str, the command's name for usage errors.
        use_default: bool, fall back to the released model of ``family`` when neither is given.

    Returns:
        str, or None after printing a usage error (the caller exits 2): both a run directory and
        ``--model`` were given, or neither (and, with ``use_default``, no released model exists).

    Raises:
        RunError: the named model does not exist or is of another family.
    """
    from speechkit.errors import RunError
    from speechkit.models import default_model, resolve_model

    if args.model is not None:
        if args.run is not None and os.path.isdir(args.run):
            print(f"speechkit {verb}: error: give a run directory or --model NAME, not both", file=sys.stderr)
            return None
        return resolve_model(args.model, family=family)
    if args.run is not None:
        return args.run
    if not use_default:
        print(f"speechkit {verb}: error: give a run directory or --model NAME", file=sys.stderr)
        return None
    try:
        return default_model(family)
    except RunError as err:
        print(f"speechkit {verb}: error: {err}", file=sys.stderr)
        return None


# -- Handlers -- #

def _list(args):
    from speechkit.models import card_summary, list_models, models_root

    cards = list_models()
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    if not cards:
        print(f"no released models in {models_root()} (speechkit models pack RUN --name NAME writes one)")
        return 0
    rows = [card_summary(c) for c in cards]
    print(f"{'NAME':<16} {'FAMILY':<8} {'PARAMS':>10} {'STORAGE':<8} {'MB':>6} {'STEPS':>7} {'WALL_H':>6}  FIGURES")
    for r in rows:
        if r["error"]:
            print(f"{r['name']:<16} unreadable: {r['error']}")
            continue
        figures = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in r["figures"].items())
        params = "?" if r["parameters"] is None else f"{r['parameters']:,}"
        steps = "?" if r["steps"] is None else str(r["steps"])
        wall = "?" if r["wall_hours"] is None else f"{r['wall_hours']:.2f}"
        print(f"{r['name']:<16} {r['family']:<8} {params:>10} {r['storage'] or '?':<8} {r['size_mb']:>6.2f} "
              f"{steps:>7} {wall:>6}  {figures or '-'}")
    print(f"({models_root()})")
    return 0


def _figures(items):
    figures = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"speechkit models pack: error: --figure needs NAME=VALUE, received {item!r}", file=sys.stderr)
            raise SystemExit(2)
        try:
            figures[key] = float(value)
        except ValueError:
            figures[key] = value
    return figures


def _pack(args):
    from speechkit import audio as audio_io
    from speechkit.data.manifest import read_manifest
    from speechkit.models import eval_figures, pack_model, verification_summary
    from speechkit.runs import RunDir

    figures = {}
    for item in args.eval:
        key, sep, path = item.partition("=")
        if not sep or not key:
            print(f"speechkit models pack: error: --eval needs NAME=REPORT, received {item!r}", file=sys.stderr)
            return 2
        figures.update(eval_figures(key, path))
    figures.update(_figures(args.figure))
    probes = None
    if args.probe:
        utterances = read_manifest(args.probe)[:args.probe_limit]
        if _is_tts_run(args.run):
            probes = [u.text for u in utterances]
        else:
            rate = RunDir(args.run).frontend().sample_rate
            probes = [audio_io.load(u.audio, sample_rate=rate) for u in utterances]
    notes = None
    if args.notes:
        with open(args.notes, encoding="utf-8") as f:
            notes = f.read()
    if os.path.exists(os.path.join(_root(), args.name)) and not args.force:
        print(f"speechkit models pack: error: {os.path.join(_root(), args.name)} exists; --force replaces it",
              file=sys.stderr)
        return 2
    card = pack_model(args.run, name=args.name, float16=args.float16, force=args.force, probes=probes,
                      figures=figures, data=args.data, description=args.description, notes=notes)
    size = card["files"][RunDir.WEIGHTS]["bytes"]
    print(f"{card['path']}: {card['family']} model, {card['parameters']:,} parameters, weights {card['storage']} "
          f"{size / 1e6:.2f} MB; verified on {card['verification']['utterances']} probe(s): "
          f"{verification_summary(card['verification'])}"
          + (f"; LM {card['lm']['path']}/ ({card['lm']['binary_type']})" if card["lm"] else ""))
    return 0


def _is_tts_run(run_dir):
    """Whether ``run_dir``'s ``config.yaml`` is a TTS config (its probes are sentences, not audio)."""
    from speechkit.errors import ConfigError
    from speechkit.runs import RunDir
    from speechkit.tts.config import TTSConfig

    try:
        RunDir(run_dir).load_config(TTSConfig)
    except ConfigError:
        return False
    return True


def _root():
    from speechkit.models import models_root

    return models_root()
