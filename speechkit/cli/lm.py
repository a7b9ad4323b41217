"""``speechkit lm ...``: build KenLM language models and tune the beam search's LM weights."""

import argparse
import json

from speechkit.cli import add_defaults_help

__all__ = ["register"]


def register(commands, groups):
    lm = groups["lm"]

    p = add_defaults_help(lm.add_parser("build", help="build a KenLM word n-gram model (lmplz + build_binary)"))
    p.add_argument("--text", required=True, help="raw text, one sentence per line; normalised like transcripts")
    p.add_argument("--out", required=True, help="LM directory to write (lm.binary, unigrams.txt, lm.json)")
    p.add_argument("--order", type=int, default=4, help="n-gram order, 2..6")
    p.add_argument("--prune", type=int, nargs="+", default=None, metavar="N",
                   help="lmplz count thresholds per order, e.g. '0 0 1' drops singleton trigrams and above")
    p.add_argument("--discount-fallback", choices=("auto", "always", "never"), default="auto",
                   help="lmplz --discount_fallback for small corpora; 'auto' retries with it when estimation fails")
    p.add_argument("--memory", default="1G", help="lmplz/build_binary sort memory (-S), e.g. 1G or 20%%")
    p.add_argument("--binary-type", choices=("probing", "trie"), default="probing",
                   help="KenLM binary format: probing is faster, trie smaller")
    p.add_argument("--heldout-fraction", type=float, default=0.02,
                   help="share of sentences kept out of training to measure perplexity")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out sample")
    p.add_argument("--keep-arpa", action="store_true", help="keep lm.arpa next to the binary")
    p.set_defaults(func=_build)

    p = add_defaults_help(lm.add_parser("tune", help="grid-search alpha/beta on dev data; writes RUN/decode.yaml"))
    p.add_argument("run", help="trained ASR run directory")
    p.add_argument("--lm", required=True, help="LM directory from 'speechkit lm build'")
    p.add_argument("--dev", required=True, help="dev manifest (JSONL)")
    p.add_argument("--alphas", type=float, nargs="+", default=argparse.SUPPRESS,
                   help="LM weights to try (default: speechkit.asr.tuning.DEFAULT_ALPHAS, 0 to 2)")
    p.add_argument("--betas", type=float, nargs="+", default=argparse.SUPPRESS,
                   help="word bonuses to try (default: speechkit.asr.tuning.DEFAULT_BETAS, 0 to 3)")
    p.add_argument("--beam-width", type=int, default=64, help="beams kept per frame")
    p.add_argument("--jobs", type=int, default=1, help="decoding processes")
    p.set_defaults(func=_tune)


def _build(args):
    from speechkit.asr.lm import build_lm

    info = build_lm(args.text, args.out, order=args.order, prune=args.prune, discount_fallback=args.discount_fallback,
                    memory=args.memory, binary_type=args.binary_type, heldout_fraction=args.heldout_fraction,
                    seed=args.seed, keep_arpa=args.keep_arpa)
    ppl = "n/a" if info["perplexity"] is None else f"{info['perplexity']:.1f}"
    print(f"{args.out}: order {info['order']}, {info['sentences']} sentences, {info['words']} words, "
          f"vocabulary {info['vocabulary_size']}, n-grams {json.dumps(info['ngrams'])}, "
          f"held-out perplexity {ppl} (OOV rate {info['heldout_oov_rate'] or 0:.2%})")


def _tune(args):
    from speechkit.asr.tuning import tune_run

    grids = {name: getattr(args, name) for name in ("alphas", "betas") if hasattr(args, name)}
    report = tune_run(args.run, lm_dir=args.lm, manifest=args.dev, beam_width=args.beam_width, processes=args.jobs,
                      **grids)
    best = report["best"]
    print("| decoder | WER | CER |\n|---|---|---|")
    print(f"| greedy | {report['greedy']['wer']:.2%} | {report['greedy']['cer']:.2%} |")
    no_lm = report["beam_no_lm"]
    print(f"| beam {report['beam_width']}, no LM | {no_lm['wer']:.2%} | {no_lm['cer']:.2%} |")
    print(f"| beam {report['beam_width']} + LM (alpha {best['alpha']:g}, beta {best['beta']:g}) | "
          f"{best['wer']:.2%} | {best['cer']:.2%} |")
    print(f"wrote {report['decode_yaml']} ({report['utterances']} dev utterances)")
