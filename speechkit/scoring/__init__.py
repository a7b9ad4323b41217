"""Scoring transcripts as the field does: formats, normalisation, sclite-exact alignment, significance, reports.

``speechkit.scoring.benchmark`` (running models over test sets) is not imported here, because it loads
TensorFlow; ``speechkit score`` only needs what this package imports.
"""

from speechkit.scoring.align import (OP_CORRECT, OP_DEL, OP_INS, OP_SUB, SCLITE_WEIGHTS, UNIT_WEIGHTS,
                                     CorpusAlignment, align_corpus, format_alignment, tokenize_chars,
                                     tokenize_words)
from speechkit.scoring.formats import (FORMATS, Transcript, TranscriptSet, detect_format, read_transcripts,
                                       write_transcripts)
from speechkit.scoring.normalize import Normalizer, NormalizerConfig, spell_numbers
from speechkit.scoring.report import (MARKS, render_html, render_markdown, significance_marks, summary_lines,
                                      write_report)
from speechkit.scoring.sclite import adversarial_pairs, crosscheck, run_sclite, sclite_command
from speechkit.scoring.score import MISSING_POLICIES, ScoreConfig, match_ids, score_files, score_sets
from speechkit.scoring.significance import bootstrap_sums, mapsswe, paired_bootstrap, rate_interval, sign_test

__all__ = [
    "OP_CORRECT", "OP_SUB", "OP_DEL", "OP_INS", "SCLITE_WEIGHTS", "UNIT_WEIGHTS", "CorpusAlignment", "align_corpus",
    "format_alignment", "tokenize_words", "tokenize_chars",
    "FORMATS", "Transcript", "TranscriptSet", "detect_format", "read_transcripts", "write_transcripts",
    "Normalizer", "NormalizerConfig", "spell_numbers",
    "MARKS", "render_html", "render_markdown", "significance_marks", "summary_lines", "write_report",
    "adversarial_pairs", "crosscheck", "run_sclite", "sclite_command",
    "MISSING_POLICIES", "ScoreConfig", "match_ids", "score_files", "score_sets",
    "bootstrap_sums", "mapsswe", "paired_bootstrap", "rate_interval", "sign_test",
]
