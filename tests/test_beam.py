"""Beam search with pyctcdecode and KenLM: label mapping, LM fusion, hotwords and decode configs."""

import argparse
import os
import shutil

import numpy as np
import pytest
import yaml

from speechkit.asr.beam import (BeamDecoder, DecodeConfig, build_decoder, load_decode_config, merge_decode_options,
                                pyctcdecode_labels, save_decode_config)
from speechkit.asr.lm import build_lm, read_unigrams
from speechkit.cli.decoding import add_decoder_arguments, decode_options
from speechkit.errors import ConfigError
from speechkit.text import Vocabulary

from test_lm import corpus_lines, frames

VOCAB = Vocabulary()


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("beam-lm")
    (root / "text.txt").write_text("\n".join(corpus_lines()) + "\n", encoding="utf-8")
    build_lm(str(root / "text.txt"), str(root / "lm"), order=3, heldout_fraction=0.0)
    return str(root / "lm")


def kat():
    """'THE ?AT SAT' where K (0.55) beats C (0.40): 'KAT' is the acoustic best path, but not a word."""
    return frames(["T", "H", "E", " ", {"K": 0.55, "C": 0.4}, "A", "T", " ", "S", "A", "T"], VOCAB)


def test_labels_follow_pyctcdecode_conventions():
    labels = pyctcdecode_labels(VOCAB)
    assert labels[0] == "" and labels[1] == " " and labels[2] == "'"
    assert labels[3:] == [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    with pytest.raises(ConfigError, match="no ' ' label"):
        pyctcdecode_labels(Vocabulary("'ABC"))
    with pytest.raises(ConfigError, match="reinterpreted"):
        pyctcdecode_labels(Vocabulary(" |AB"))


@pytest.mark.parametrize("text", ["DON'T STOP", "IT'S A GOOD BOOK", "O'NEILL SEES THE MOON"])
def test_beam_round_trips_space_apostrophe_and_repeats(text):
    decoder = build_decoder(DecodeConfig(decoder="beam", beam_width=8), VOCAB)
    try:
        assert decoder.decode(frames(list(text), VOCAB)) == text
    finally:
        decoder.close()


def test_greedy_decoder_is_the_best_path():
    decoder = build_decoder(None, VOCAB)
    assert decoder.decode_batch([kat(), frames(list("DON'T STOP"), VOCAB)]) == ["THE KAT SAT", "DON'T STOP"]
    with pytest.raises(ConfigError, match=r"\[frames, 29\]"):
        decoder.decode(np.zeros((4, 30), np.float32))


def test_lm_turns_a_non_word_into_the_word(lm_dir):
    log_probs = kat()
    best_path = "".join(VOCAB.labels[i] for i in log_probs.argmax(axis=1))
    assert best_path == "THE KAT SAT"
    no_lm = build_decoder(DecodeConfig(decoder="beam", beam_width=16), VOCAB)
    with_lm = build_decoder(DecodeConfig(decoder="beam", beam_width=16, lm=lm_dir, alpha=0.5, beta=1.0), VOCAB)
    try:
        assert no_lm.decode(log_probs) == "THE KAT SAT"
        # pyctcdecode cannot read the word list from a binary LM; it must come from unigrams.txt.
        assert with_lm._decoder._language_model._unigram_set == set(read_unigrams(lm_dir))
        assert with_lm.decode(log_probs) == "THE CAT SAT"
        assert with_lm.decode(frames(list("THE DOG RAN TO A TREE"), VOCAB)) == "THE DOG RAN TO A TREE"
    finally:
        no_lm.close()
        with_lm.close()


def test_hotwords_boost_a_word_without_lm():
    decoder = build_decoder(DecodeConfig(decoder="beam", beam_width=16, hotwords=("cat",), hotword_weight=5.0), VOCAB)
    try:
        assert decoder.config.hotwords == ("CAT",)
        assert decoder.decode(kat()) == "THE CAT SAT"
    finally:
        decoder.close()


def test_decode_batch_with_pool_matches_sequential(lm_dir):
    decoder = build_decoder(DecodeConfig(decoder="beam", beam_width=16, lm=lm_dir), VOCAB)
    batch = [kat(), frames(list("A BIRD SAT ON THE MAT"), VOCAB), frames(list("MY SISTER RAN"), VOCAB)]
    try:
        sequential = decoder.decode_batch(batch)
        assert sequential == ["THE CAT SAT", "A BIRD SAT ON THE MAT", "MY SISTER RAN"]
        assert decoder.decode_batch(batch, processes=2) == sequential
    finally:
        decoder.close()


def test_lowercase_lm_is_rejected(tmp_path, lm_dir):
    lower = tmp_path / "lower"
    shutil.copytree(lm_dir, lower)
    words = (lower / "unigrams.txt").read_text().lower()
    (lower / "unigrams.txt").write_text(words)
    with pytest.raises(ConfigError, match="cannot emit"):
        BeamDecoder(DecodeConfig(decoder="beam", lm=str(lower)), VOCAB)


def test_log_probs_shape_is_checked():
    decoder = build_decoder(DecodeConfig(decoder="beam"), VOCAB)
    try:
        with pytest.raises(ConfigError, match=r"\[frames, 29\]"):
            decoder.decode(np.zeros((10, 28), np.float32))
    finally:
        decoder.close()


@pytest.mark.parametrize("kwargs, match", [
    ({"decoder": "viterbi"}, "decoder must be"),
    ({"decoder": "beam", "beam_width": 0}, "beam_width"),
    ({"decoder": "beam", "alpha": -1.0}, "alpha"),
    ({"decoder": "beam", "beta": float("nan")}, "beta"),
    ({"decoder": "greedy", "lm": "some/lm"}, "need decoder 'beam'"),
    ({"decoder": "greedy", "hotwords": ("CAT",)}, "need decoder 'beam'"),
    ({"decoder": "beam", "token_min_logp": 1.0}, "must be <= 0"),
])
def test_invalid_decode_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DecodeConfig(**kwargs)


def test_decode_yaml_round_trip(tmp_path, lm_dir):
    run = tmp_path / "run"
    run.mkdir()
    assert load_decode_config(str(run)) == DecodeConfig()
    inner_lm = run / "lm"
    shutil.copytree(lm_dir, inner_lm)
    config = DecodeConfig(decoder="beam", lm=str(inner_lm), alpha=0.8, beta=1.5, beam_width=32)
    save_decode_config(str(run), config)
    stored = yaml.safe_load((run / "decode.yaml").read_text())
    assert stored["lm"] == "lm" and stored["alpha"] == 0.8
    moved = tmp_path / "moved"
    shutil.move(str(run), str(moved))
    loaded = load_decode_config(str(moved))
    assert loaded == DecodeConfig(decoder="beam", lm=os.path.join(str(moved), "lm"), alpha=0.8, beta=1.5, beam_width=32)
    (moved / "decode.yaml").write_text("decoder: beam\nalpah: 1.0\n")
    with pytest.raises(ConfigError, match="alpah"):
        load_decode_config(str(moved))


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_decoder_arguments(parser)
    return parser.parse_args(argv)


def _resolve(args, run):
    return merge_decode_options(load_decode_config(run), **decode_options(args))


def test_command_line_options_over_decode_yaml(tmp_path, lm_dir):
    run = str(tmp_path)
    assert _resolve(_parse([]), run) == DecodeConfig()
    assert _resolve(_parse(["--lm", "none"]), run) == DecodeConfig()
    config = _resolve(_parse(["--lm", lm_dir, "--alpha", "0.7"]), run)
    assert (config.decoder, config.lm, config.alpha, config.beta) == ("beam", lm_dir, 0.7, 1.0)
    config = _resolve(_parse(["--hotwords", "cat, old chair", "--hotword-weight", "3"]), run)
    assert config.decoder == "beam" and config.hotwords == ("CAT", "OLD CHAIR") and config.hotword_weight == 3.0
    save_decode_config(run, DecodeConfig(decoder="beam", lm=lm_dir, alpha=1.25, beta=0.5, beam_width=40))
    tuned = _resolve(_parse([]), run)
    assert (tuned.decoder, tuned.lm, tuned.alpha, tuned.beta, tuned.beam_width) == ("beam", lm_dir, 1.25, 0.5, 40)
    assert _resolve(_parse(["--beta", "2"]), run).beta == 2.0
    no_lm = _resolve(_parse(["--decoder", "beam", "--lm", "none"]), run)
    assert (no_lm.decoder, no_lm.lm, no_lm.alpha, no_lm.beam_width) == ("beam", None, 1.25, 40)
    greedy = _resolve(_parse(["--decoder", "greedy"]), run)
    assert (greedy.decoder, greedy.lm, greedy.hotwords) == ("greedy", None, ())
    with pytest.raises(ConfigError, match="need decoder 'beam'"):
        _resolve(_parse(["--decoder", "greedy", "--lm", lm_dir]), run)


def test_merge_decode_options_without_a_command_line(lm_dir):
    tuned = DecodeConfig(decoder="beam", lm=lm_dir, alpha=1.25, beta=0.5, beam_width=40, hotwords=("cat",))
    assert merge_decode_options(tuned) == tuned
    assert merge_decode_options(tuned, lm=None).lm is None
    assert merge_decode_options(DecodeConfig(), hotwords=["old chair"]).decoder == "beam"
    greedy = merge_decode_options(tuned, decoder="greedy")
    assert (greedy.lm, greedy.hotwords, greedy.alpha) == (None, (), 1.25)
    with pytest.raises(ConfigError, match="unknown decoding option"):
        merge_decode_options(tuned, beam=8)
    with pytest.raises(ConfigError, match="beam_width"):
        merge_decode_options(tuned, beam_width=0)
