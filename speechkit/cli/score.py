"""``speechkit score REF HYP [HYP ...]`` and ``speechkit benchmark CONFIG.yaml``: WER benchmarking."""

from speechkit.cli import add_defaults_help

__all__ = ["register"]

_FORMATS = ("jsonl", "kaldi", "tsv", "trn")


def register(commands, groups):
    p = add_defaults_help(commands.add_parser(
        "score", help="score hypothesis files against a reference: WER/CER with CIs, significance, error analysis",
        description="Score one or more systems' transcripts against a reference with sclite-exact alignments. "
        "Formats: jsonl (speechkit manifests and hypotheses.jsonl), kaldi (utt-id words), tsv (id<TAB>text), "
        "trn (words (utt-id)); detected from the extension, then the first line. The default normaliser "
        "(applied to both sides): NFKC, upper case, hyphens split words, apostrophes kept inside words, other "
        "punctuation removed, numbers kept; see README 'Scoring and benchmarking'."))
    p.add_argument("ref", help="reference transcripts")
    p.add_argument("hyp", nargs="+", help="hypothesis files, one per system (two or more: significance tests)")
    p.add_argument("--format", choices=_FORMATS, default=None, help="format of every file (default: detect)")
    p.add_argument("--ref-format", choices=_FORMATS, default=None, help="format of REF only")
    p.add_argument("--hyp-format", choices=_FORMATS, default=None, help="format of the HYP files only")
    p.add_argument("--name", action="append", default=None, metavar="NAME",
                   help="system name, once per HYP in order (default: the file names)")
    p.add_argument("--out", default=None, help="folder for score.json, score.md and score.html")
    p.add_argument("--missing", choices=("error", "empty"), default="error",
                   help="utterances missing on either side: stop with an error, or score them as empty")
    p.add_argument("--speaker-pattern", default=None, metavar="REGEX",
                   help="speaker = this regex's group 'speaker' (or group 1, or the match) in each utt-id, e.g. "
                   "'^[^-]+' for LibriSpeech; default: the reference's speaker field")
    p.add_argument("--normalizer", default=None, metavar="YAML",
                   help="normaliser settings (keys of speechkit.scoring.NormalizerConfig: case, punctuation, "
                   "apostrophes, hyphens, numbers, years, language, strip_accents, replacements, remove_words)")
    p.add_argument("--no-normalize", action="store_true", help="compare tokens exactly as written (sclite -s)")
    p.add_argument("--numbers", choices=("keep", "spell"), default=None,
                   help="spell numbers as words (overrides --normalizer)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--worst", type=int, default=10, help="worst utterances shown per system with alignments")
    p.add_argument("--confusions", type=int, default=20, help="top confusion pairs per system")
    p.add_argument("--sclite", action="store_true",
                   help="also score with NIST sclite (Debian sctk) and report whether S/D/I agree")
    p.set_defaults(func=_score)

    p = add_defaults_help(commands.add_parser(
        "benchmark", help="run several systems over several test manifests; one table with CIs, significance, RTF",
        description="Run the systems of a benchmark YAML (run dirs, exported SavedModels, released models or "
        "hypothesis files, each with a decoder setting) over its test manifests, cache the hypotheses, and "
        "write OUT/benchmark.md, .json and .html. A rerun only scores (hypotheses are reused while the model, "
        "the decoder settings and the manifest are unchanged)."))
    p.add_argument("config", help="benchmark YAML (see README 'Scoring and benchmarking')")
    p.add_argument("--out", default=None, help="output folder (default: the config's 'out')")
    p.add_argument("--rerun", action="store_true", help="ignore cached hypotheses and recognise again")
    p.set_defaults(func=_benchmark)


def _score(args):
    import dataclasses

    from speechkit.errors import ConfigError
    from speechkit.scoring.normalize import NormalizerConfig
    from speechkit.scoring.report import summary_lines, write_report
    from speechkit.scoring.score import ScoreConfig, score_files

    normalizer = NormalizerConfig.load(args.normalizer) if args.normalizer else NormalizerConfig()
    if args.no_normalize:
        normalizer = dataclasses.replace(normalizer, enabled=False)
    if args.numbers:
        normalizer = dataclasses.replace(normalizer, numbers=args.numbers)
    if args.name is not None and len(args.name) != len(args.hyp):
        raise ConfigError(f"--name was given {len(args.name)} time(s) for {len(args.hyp)} HYP file(s)")
    config = ScoreConfig(normalizer=normalizer, missing=args.missing, speaker_pattern=args.speaker_pattern,
                         bootstrap=args.bootstrap, seed=args.seed, worst=args.worst, confusions=args.confusions)
    report = score_files(args.ref, args.hyp, names=args.name, ref_format=args.ref_format or args.format,
                         hyp_format=args.hyp_format or args.format, config=config, sclite=args.sclite)
    for line in summary_lines(report):
        print(line)
    if args.out:
        paths = write_report(report, args.out)
        print(f"report: {paths['md']} {paths['html']} {paths['json']}")
    if args.sclite and not all(s["sclite"]["agree"] for s in report["systems"]):
        return 1
    return 0


def _benchmark(args):
    from speechkit.scoring.benchmark import BenchmarkConfig, run_benchmark

    config = BenchmarkConfig.load(args.config)
    result = run_benchmark(config, out_dir=args.out, rerun=args.rerun, config_path=args.config)
    for line in result["summary"]:
        print(line)
    print(f"report: {result['paths']['md']} {result['paths']['html']} {result['paths']['json']}")
    return 0

