"""The decoding options shared by ``speechkit transcribe`` and ``speechkit eval``."""

import argparse

from speechkit.asr.beam import DECODERS

__all__ = ["add_decoder_arguments", "decode_options"]


def add_decoder_arguments(parser):
    """Add ``--decoder --lm --alpha --beta --beam-width --hotwords --hotword-weight`` to ``parser``.

    An option left out is absent from the namespace (``argparse.SUPPRESS``), meaning "as in
    RUN/decode.yaml, else greedy", so a tuned run decodes with its tuned settings unless told otherwise.
    """
    group = parser.add_argument_group("decoding (defaults: RUN/decode.yaml from 'speechkit lm tune', else greedy)")
    group.add_argument("--decoder", choices=DECODERS, default=argparse.SUPPRESS, help="greedy or beam search")
    group.add_argument("--lm", default=argparse.SUPPRESS,
                       help="LM directory from 'speechkit lm build' (implies --decoder beam), or 'none' for no LM")
    group.add_argument("--alpha", type=float, default=argparse.SUPPRESS, help="LM weight")
    group.add_argument("--beta", type=float, default=argparse.SUPPRESS, help="word insertion bonus")
    group.add_argument("--beam-width", type=int, default=argparse.SUPPRESS, help="beams kept per frame")
    group.add_argument("--hotwords", default=argparse.SUPPRESS,
                       help="comma-separated words or phrases to boost (implies beam)")
    group.add_argument("--hotword-weight", type=float, default=argparse.SUPPRESS, help="log-score bonus per hotword")
    return parser


def decode_options(args):
    """The decoding options given on the command line, as keywords for ``speechkit.asr.beam.merge_decode_options``.

    ``--lm none`` becomes ``lm=None`` (no LM) and ``--hotwords`` is split at commas; options left
    out are left out.
    """
    options = {name: getattr(args, name) for name in ("decoder", "alpha", "beta", "beam_width", "hotword_weight")
               if hasattr(args, name)}
    if hasattr(args, "lm"):
        options["lm"] = None if args.lm.lower() == "none" else args.lm
    if hasattr(args, "hotwords"):
        options["hotwords"] = tuple(h.strip() for h in args.hotwords.split(",") if h.strip())
    return options
