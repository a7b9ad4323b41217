"""Greedy decoding, WER/CER and bootstrap, evaluation reports, run loading and the transcribe/eval commands."""

import json
import os

import numpy as np
import pytest
import yaml

from speechkit import audio as audio_io
from speechkit.asr.decoding import greedy_decode
from speechkit.asr.evaluate import evaluate, format_alignment
from speechkit.data.manifest import Utterance, write_manifest
from speechkit.errors import ConfigError, RunError, SpeechkitError
from speechkit.frontend import FrontendConfig
from speechkit.metrics import bootstrap_ci, cer, error_counts, wer
from speechkit.runs import RunDir
from speechkit.text import Vocabulary

VOCAB = Vocabulary()


def _path(text, frames_per_symbol=2, blank_between=True):
    """One-hot log-probabilities whose best path spells ``text``."""
    ids = []
    for ch in text:
        ids += [VOCAB.encode(ch)[0]] * frames_per_symbol + ([0] if blank_between else [])
    log_probs = np.full((len(ids), VOCAB.size), -20.0, np.float32)
    log_probs[np.arange(len(ids)), ids] = 0.0
    return log_probs


# -- Greedy decoding -- #

def test_greedy_collapses_repeats_and_drops_blanks():
    assert greedy_decode(_path("HELLO WORLD"), VOCAB) == "HELLO WORLD"
    # Without a blank between them, the two Ls merge: that is what CTC means.
    assert greedy_decode(_path("HELLO", blank_between=False), VOCAB) == "HELO"


def test_greedy_normalises_spaces_and_handles_empty_input():
    log_probs = np.concatenate([_path(" "), _path("A"), _path("  "), _path("B"), _path(" ")])
    assert greedy_decode(log_probs, VOCAB) == "A B"
    assert greedy_decode(np.zeros((0, VOCAB.size), np.float32), VOCAB) == ""
    with pytest.raises(ValueError, match="shape"):
        greedy_decode(np.zeros((4, 5)), VOCAB)


# -- Metrics -- #

def test_wer_and_cer_known_answers():
    refs = ["THE CAT SAT", "ON THE MAT"]
    hyps = ["THE BAT SAT DOWN", "ON MAT"]
    assert wer(refs, hyps) == pytest.approx(3 / 6)  # one substitution, one insertion, one deletion
    assert cer(["ABCD"], ["ABXD"]) == pytest.approx(1 / 4)
    assert wer(["A B"], [""]) == pytest.approx(1.0)
    errors, lengths, _ = error_counts(refs, hyps)
    np.testing.assert_array_equal(errors, [2, 1])
    np.testing.assert_array_equal(lengths, [3, 3])
    with pytest.raises(SpeechkitError, match="as many"):
        wer(["A"], ["A", "B"])
    with pytest.raises(SpeechkitError, match="empty"):
        wer([""], ["A"])


def test_bootstrap_interval_brackets_the_estimate_and_is_deterministic():
    rng = np.random.default_rng(0)
    refs = [" ".join(rng.choice(list("ABCDE"), size=8)) for _ in range(60)]
    hyps = [" ".join(w if rng.random() > 0.2 else "X" for w in r.split()) for r in refs]
    point = wer(refs, hyps)
    low, high = bootstrap_ci(refs, hyps, "wer", n=500, seed=1)
    assert low < point < high
    assert high - low < 0.2
    assert (low, high) == bootstrap_ci(refs, hyps, wer, n=500, seed=1)
    assert bootstrap_ci(["A B"] * 5, ["A B"] * 5, "cer") == (0.0, 0.0)
    with pytest.raises(SpeechkitError, match="metric"):
        bootstrap_ci(refs, hyps, "bleu")


def test_alignment_marks_substitutions_deletions_insertions():
    _, _, out = error_counts(["THE CAT SAT ON"], ["THE BAT SAT ON IT"])
    text = format_alignment(out.references[0], out.hypotheses[0], out.alignments[0])
    ref, hyp, ops = text.split("\n")
    assert ref == "REF: THE CAT SAT ON **"
    assert hyp == "HYP: THE BAT SAT ON IT"
    assert ops.split() == ["S", "I"]
    _, _, out = error_counts(["A BIG DOG"], ["A DOG"])
    assert format_alignment(out.references[0], out.hypotheses[0], out.alignments[0]).split("\n")[1] == "HYP: A *** DOG"


# -- Evaluation report -- #

class _FakeRecognizer:
    """Maps an utterance (identified by its length in samples) to fixed log-probabilities."""

    def __init__(self, by_length):
        self.by_length = by_length
        self.vocabulary = VOCAB
        self.frontend = FrontendConfig()
        self.run_dir = "fake-run"
        self.calls = []

    def log_probs(self, audios):
        self.calls.append(len(audios))
        return [self.by_length.get(len(a), _path("")) for a in audios]


def _corpus(tmp_path, items):
    """Write one wav per (text, hypothesis, speaker); return utterances and the fake recogniser."""
    utterances, by_length = [], {}
    for i, (text, hyp, speaker) in enumerate(items):
        samples = 8000 + 160 * i
        path = str(tmp_path / f"u{i}.wav")
        audio_io.save(path, 0.1 * np.sin(np.arange(samples) / 9.0).astype(np.float32))
        utterances.append(Utterance(id=f"u{i}", audio=path, duration=samples / 16000, text=text, speaker=speaker))
        by_length[samples] = _path(hyp)
    return utterances, _FakeRecognizer(by_length)


def test_evaluate_writes_report_with_totals_speakers_worst_and_skips(tmp_path):
    items = [("THE CAT SAT", "THE CAT SAT", "s1"), ("A BIG DOG", "A DOG", "s1"), ("HELLO THERE", "HELLO THERE", "s2"),
             ("GOOD DAY", "GOOD DAY", "s2"), ("NO WAY HOME", "HOME", "s3")]
    utterances, recognizer = _corpus(tmp_path, items)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF not really a wave file")
    utterances.insert(2, Utterance(id="bad1", audio=str(corrupt), duration=1.0, text="LOST", speaker="s9"))
    utterances.append(Utterance(id="bad2", audio=str(tmp_path / "missing.flac"), duration=1.0, text="GONE",
                                speaker="s9"))
    out = tmp_path / "report"
    report = evaluate(recognizer, utterances, out_dir=str(out), worst=2, chunk=2, bootstrap=200, source="test.jsonl")

    assert report["utterances"] == 5 and report["words"] == 13
    assert report["wer"] == pytest.approx(3 / 13)
    assert report["deletions"] == 3 and report["substitutions"] == 0 and report["insertions"] == 0
    assert report["wer_ci95"][0] <= report["wer"] <= report["wer_ci95"][1]
    assert report["skipped"]["skipped"] == 2 and report["skipped"]["by_reason"] == {"bad_audio": 2}
    assert report["per_speaker"]["s1"] == {"wer": pytest.approx(1 / 6), "words": 6, "utterances": 2}
    assert report["per_speaker"]["s2"]["wer"] == 0.0
    assert [w["id"] for w in report["worst"]] == ["u4", "u1"]
    assert "** *** HOME" in report["worst"][0]["alignment"]
    assert report["rtf"] > 0 and report["audio_seconds"] == pytest.approx(
        sum(u.duration for u in utterances if u.id.startswith("u")))
    assert json.loads((out / "report.json").read_text())["wer"] == report["wer"]
    markdown = (out / "report.md").read_text()
    assert "| WER | 23.08% |" in markdown and "bad_audio" in markdown and "### u4" in markdown
    hyps = [json.loads(line) for line in (out / "hypotheses.jsonl").read_text().splitlines()]
    assert [h["id"] for h in hyps] == ["u0", "u1", "u2", "u3", "u4"] and hyps[1]["hyp"] == "A DOG"


def test_evaluate_uses_the_decoder_when_given(tmp_path):
    utterances, recognizer = _corpus(tmp_path, [("ONE TWO", "ONE", "s1"), ("THREE", "THREE", "s1")])

    class Upper:
        def decode_batch(self, log_probs):
            return ["ONE TWO" for _ in log_probs]

    report = evaluate(recognizer, utterances, out_dir=str(tmp_path / "r"), decoder=Upper(), bootstrap=50)
    assert report["decoder"] == "Upper" and report["wer"] == pytest.approx(2 / 3)


def test_evaluate_raises_when_nothing_can_be_scored(tmp_path):
    bad = Utterance(id="x", audio=str(tmp_path / "nope.wav"), duration=1.0, text="HI", speaker="s")
    with pytest.raises(SpeechkitError, match="no utterance"):
        evaluate(_FakeRecognizer({}), [bad], out_dir=str(tmp_path / "r"))


# -- Runs on disk: load_run and the CLI -- #

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """An untrained tiny model saved as a run directory, as ASR training lays it out."""
    from speechkit.asr.deepspeech2 import DeepSpeech2Config, build_deepspeech2

    run = RunDir(tmp_path_factory.mktemp("run"))
    frontend = FrontendConfig(kind="mel", n_mels=20)
    model = DeepSpeech2Config(conv_filters=(2,), conv_kernels=((3, 3),), conv_strides=((2, 2),), rnn_layers=1,
                              rnn_units=4)
    run.save_model(build_deepspeech2(model, frontend=frontend, vocab_size=VOCAB.size))
    run.save_config({"frontend": frontend.to_dict(), "model": model.to_dict()})
    run.save_vocabulary(VOCAB)
    return run.path


def _copy_run(source, target, names=(RunDir.MODEL, RunDir.CONFIG, RunDir.VOCABULARY)):
    run = RunDir(target, create=True)
    for name in names:
        with open(os.path.join(source, name), "rb") as f, open(run.file(name), "wb") as g:
            g.write(f.read())
    return run


def test_load_run_checks_front_end(tiny_run, tmp_path):
    from speechkit.asr.inference import load_run

    recognizer = load_run(str(tiny_run))
    assert recognizer.frontend == FrontendConfig(kind="mel", n_mels=20) and recognizer.vocabulary == VOCAB
    assert recognizer.time_reduction_factor == 2 == recognizer.network.time_reduction_factor
    with pytest.raises(ConfigError, match="n_mels"):
        load_run(str(tiny_run), expected_frontend=FrontendConfig(kind="mel", n_mels=40))
    changed = _copy_run(tiny_run, tmp_path / "changed")
    saved = changed.read_config()
    changed.write_text(RunDir.CONFIG, yaml.safe_dump({**saved, "frontend": {**saved["frontend"], "hop_ms": 20.0}}))
    with pytest.raises(ConfigError, match=r"model\.keras: front-end config differs.*hop_ms: 20\.0 != 10\.0"):
        load_run(changed.path)
    changed.write_text(RunDir.CONFIG, yaml.safe_dump({"model": saved["model"]}))
    with pytest.raises(RunError, match=r"config\.yaml: no frontend section"):
        load_run(changed.path)
    alone = _copy_run(tiny_run, tmp_path / "alone", names=(RunDir.MODEL, RunDir.VOCABULARY))
    assert load_run(alone.path).frontend == FrontendConfig(kind="mel", n_mels=20)
    with pytest.raises(RunError, match="model.keras: missing"):
        load_run(str(tmp_path))
    with pytest.raises(RunError, match="no such run directory"):
        load_run(str(tmp_path / "nowhere"))


def test_load_run_checks_vocabulary_and_model_type(tiny_run, tmp_path):
    import keras

    from speechkit.asr.inference import load_run

    run = _copy_run(tiny_run, tmp_path / "vocab")
    run.save_vocabulary(Vocabulary("AB"))
    with pytest.raises(ConfigError, match="network outputs 29 classes, vocabulary has 3"):
        load_run(run.path)
    run.save_vocabulary(VOCAB)
    inputs = keras.Input((None, 20))
    run.save_model(keras.Model(inputs, keras.layers.Dense(29)(inputs)))
    with pytest.raises(RunError, match=r"model\.keras: not a DeepSpeech2"):
        load_run(run.path)


def test_recognizer_batching_does_not_change_log_probs(tiny_run):
    from speechkit.asr.inference import load_run

    recognizer = load_run(str(tiny_run), batch_size=3)
    rng = np.random.default_rng(0)
    audios = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 3200, 9999, 480, 12345)]
    batched = recognizer.log_probs(audios)
    for audio, lp in zip(audios, batched):
        alone = recognizer.log_probs([audio])[0]
        assert lp.shape == alone.shape == (int(np.ceil((1 + len(audio) // 160) / 2)), VOCAB.size)
        np.testing.assert_allclose(lp, alone, atol=1e-4)
    assert recognizer.transcribe(audios[:2]) == [greedy_decode(lp, VOCAB) for lp in batched[:2]]


def test_cli_transcribe_and_eval(tiny_run, tmp_path, capsys):
    from speechkit.cli import main

    good = [str(tmp_path / f"a{i}.wav") for i in range(2)]
    for i, path in enumerate(good):
        audio_io.save(path, 0.1 * np.sin(np.arange(8000 + 800 * i) / 7.0).astype(np.float32))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    assert main(["transcribe", str(tiny_run), good[0], str(bad), good[1]]) == 1
    captured = capsys.readouterr()
    lines = captured.out.strip().split("\n")
    assert [line.split("\t")[0] for line in lines] == good
    assert all(len(line.split("\t")) == 2 for line in lines)
    assert "bad.wav" in captured.err and "1 of 3" in captured.err

    manifest = tmp_path / "test.jsonl"
    write_manifest(str(manifest), [Utterance(id=f"u{i}", audio=p, duration=0.5, text="HELLO", speaker="s")
                                   for i, p in enumerate(good + [str(bad)])])
    out = tmp_path / "report"
    assert main(["eval", str(tiny_run), "--manifest", str(manifest), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["utterances"] == 2 and report["skipped"]["by_reason"] == {"bad_audio": 1}
    assert "WER" in capsys.readouterr().out
    assert os.path.exists(out / "report.md")
