import collections
import glob
import hashlib
import json
import os
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from speechkit.cli import main
from speechkit.data import books as book_text
from speechkit.data import mini
from speechkit.data.librispeech import import_librispeech
from speechkit.errors import SpeechkitError

_TINY = dict(train_hours=0.005, dev_minutes=0.3, test_minutes=0.3, train_speakers=6, dev_speakers=3, test_speakers=3)
_CLI_TINY = ["--train-hours", "0.005", "--dev-minutes", "0.3", "--test-minutes", "0.3", "--speakers", "6", "3", "3"]


@pytest.fixture(scope="module")
def corpus(books, tmp_path_factory):
    out = tmp_path_factory.mktemp("mini") / "corpus"
    assert main(["data", "synth-mini", "--out", str(out), "--books", books, "--jobs", "2", *_CLI_TINY]) == 0
    return out


def _transcripts(root):
    """{split: {utt_id: text}} from the trans.txt files of a corpus."""
    result = {}
    for split in mini.SPLITS:
        result[split] = {}
        for trans in glob.glob(str(root / split / "*" / "*" / "*.trans.txt")):
            for line in open(trans, encoding="utf-8"):
                utt, text = line.rstrip("\n").split(" ", 1)
                result[split][utt] = text
    return result


def _mtimes(root):
    return {p: os.stat(p).st_mtime_ns for p in glob.glob(str(root / "*" / "*" / "*" / "*.flac"))}


def test_split_sentences_keeps_abbreviations_and_quotes():
    text = ("\u201cIs it Mr. Knightley?\u201d she asked. He nodded. J. Smith came at last! Did he? Yes, said I. "
            "Then we left.")
    assert book_text.split_sentences(text) == [
        "\u201cIs it Mr. Knightley?\u201d she asked.", "He nodded.", "J. Smith came at last!", "Did he?",
        "Yes, said I.", "Then we left."]


def test_extract_sentences_drops_boilerplate(tmp_path):
    book = ("The Project Gutenberg eBook of Something, by Nobody\r\n\r\nTitle: Something\r\n\r\n"
            "*** START OF THE PROJECT GUTENBERG EBOOK SOMETHING ***\r\n\r\nSOMETHING\r\n\r\nBy A. Nobody\r\n\r\n"
            "CHAPTER I.\r\n\r\nThe old house stood on the hill. Mr. Brown lived there\r\nwith his three dogs.\r\n"
            "It cost 300 pounds. Henry VIII never saw it.\r\n\r\nChapter 2\r\n\r\n"
            "She smiled. Rain fell on the quiet town and the dogs slept.\r\n\r\n"
            "*** END OF THE PROJECT GUTENBERG EBOOK SOMETHING ***\r\n\r\nThe Project Gutenberg "
            "license says many things about this eBook.\r\n")
    (tmp_path / "b.txt").write_bytes(book.encode("utf-8"))
    (tmp_path / "a.txt").write_text("We walked home. We walked home. It was late at night.\n", encoding="utf-8")
    text = book_text.extract_sentences(str(tmp_path), min_words=3, max_words=20)
    assert text.books == ("a.txt", "b.txt")
    assert text.sentences == ("WE WALKED HOME", "WE WALKED HOME", "IT WAS LATE AT NIGHT",
                              "THE OLD HOUSE STOOD ON THE HILL", "MISTER BROWN LIVED THERE WITH HIS THREE DOGS",
                              "IT COST POUNDS", "HENRY VIII NEVER SAW IT", "SHE SMILED",
                              "RAIN FELL ON THE QUIET TOWN AND THE DOGS SLEPT")
    assert text.eligible == (("WE WALKED HOME", 1), ("IT WAS LATE AT NIGHT", 1), ("THE OLD HOUSE STOOD ON THE HILL", 2),
                             ("MISTER BROWN LIVED THERE WITH HIS THREE DOGS", 2),
                             ("RAIN FELL ON THE QUIET TOWN AND THE DOGS SLEPT", 2))
    assert [t for t, _ in book_text.extract_sentences(str(tmp_path), min_words=5, max_words=7).eligible] == [
        "IT WAS LATE AT NIGHT", "THE OLD HOUSE STOOD ON THE HILL"]


def test_speakers_are_disjoint_and_dev_test_parts_are_heard_in_train():
    speakers = mini.make_speakers(np.random.default_rng(3), train=40, dev=8, test=8)
    assert len({s.id for s in speakers}) == 56
    keys = collections.defaultdict(set)
    for s in speakers:
        keys[s.split].add((s.engine, s.voice, s.variant, s.rate, s.pitch))
    assert not keys["train"] & keys["dev"] and not keys["train"] & keys["test"] and not keys["dev"] & keys["test"]
    pairs = {split: {(s.voice, s.variant) for s in speakers if s.split == split and s.engine == "espeak-ng"}
             for split in mini.SPLITS}
    assert not pairs["train"] & (pairs["dev"] | pairs["test"]) and not pairs["dev"] & pairs["test"]
    train = [s for s in speakers if s.split == "train"]
    assert {s.voice for s in train if s.engine == "espeak-ng"} == set(mini.ESPEAK_ACCENTS)
    assert {s.variant for s in train if s.engine == "espeak-ng"} == set(mini.ESPEAK_VARIANTS)
    assert {s.voice for s in train if s.engine == "flite"} == set(mini.FLITE_VOICES)
    for split in ("dev", "test"):
        assert {s.engine for s in speakers if s.split == split} == {"espeak-ng", "flite"}
    dev_flite = {s.voice for s in speakers if s.split == "dev" and s.engine == "flite"}
    test_flite = {s.voice for s in speakers if s.split == "test" and s.engine == "flite"}
    assert len(dev_flite) == len(test_flite) == 2 and not dev_flite & test_flite
    assert [s.pitch for s in speakers if s.voice == "rms"] == [None] * sum(s.voice == "rms" for s in speakers)
    with pytest.raises(SpeechkitError, match="dev speakers"):
        mini.make_speakers(np.random.default_rng(0), dev=0)


def _speaker_rows(speakers):
    return [(s.id, s.split, s.engine, s.voice, s.variant, s.rate, s.pitch, s.gender) for s in speakers]


def test_default_speakers_for_seed_0_are_those_of_the_demo_corpus():
    # Recorded from make_speakers before extra training speakers existed (revision 359bfa8): the demo
    # corpus, its recipes and its figures rely on exactly these speakers.
    speakers = mini.make_speakers(np.random.default_rng(0))
    assert [r for r in _speaker_rows(speakers) if r[1] == "test"] == [
        (148, "test", "espeak-ng", "en-us", "f4", 172.0, 50, "F"),
        (149, "test", "espeak-ng", "en-us", "f2", 199.0, 60, "F"),
        (150, "test", "espeak-ng", "en-us", "f3", 188.0, 25, "F"),
        (151, "test", "espeak-ng", "en-us-nyc", "f4", 169.0, 41, "F"),
        (152, "test", "flite", "kal16", "", 1.07, 128, "M"), (153, "test", "flite", "slt", "", 1.13, 196, "F"),
        (154, "test", "espeak-ng", "en-gb", "m5", 166.0, 46, "M"),
        (155, "test", "espeak-ng", "en-gb-scotland", "m4", 148.0, 49, "M")]
    assert hashlib.sha256(repr(_speaker_rows(speakers)).encode()).hexdigest()[:16] == "76fb95f6f80c4240"
    tiny = mini.make_speakers(np.random.default_rng(0), train=6, dev=3, test=3)
    assert hashlib.sha256(repr(_speaker_rows(tiny)).encode()).hexdigest()[:16] == "4262a6adb217de84"


def test_heard_in_training_compares_voice_variant_rate_and_pitch():
    def spk(engine, voice, variant, rate, pitch):
        return mini.Speaker(0, "dev", engine, voice, variant, rate, pitch, "M")

    train = [spk("espeak-ng", "en-us", "m3", 170.0, 50), spk("flite", "kal16", "", 1.00, 120),
             spk("flite", "rms", "", 1.00, None)]
    heard = [spk("espeak-ng", "en-us", "m3", 180.0, 40), spk("flite", "kal16", "", 1.05, 130),
             spk("flite", "kal", "", 0.98, 115), spk("flite", "rms", "", 0.96, None)]
    unheard = [spk("espeak-ng", "en-us", "m3", 181.0, 50), spk("espeak-ng", "en-us", "m3", 170.0, 61),
               spk("espeak-ng", "en-gb", "m3", 170.0, 50), spk("espeak-ng", "en-us", "m4", 170.0, 50),
               spk("flite", "kal16", "", 1.06, 120), spk("flite", "kal16", "", 1.00, 131),
               spk("flite", "awb", "", 1.00, 120), spk("flite", "rms", "", 1.06, None),
               spk("espeak-ng", "kal16", "", 1.00, 120)]
    assert all(mini.heard_in_training(s, train) for s in heard)
    assert not any(mini.heard_in_training(s, train) for s in unheard)


@pytest.mark.parametrize("seed", range(12))
def test_no_dev_or_test_speaker_is_heard_in_training(seed):
    for sizes in ((40, 8, 8), (20, 4, 4), (6, 3, 3)):
        speakers = mini.make_speakers(np.random.default_rng(seed), train=sizes[0], dev=sizes[1], test=sizes[2])
        train = [s for s in speakers if s.split == "train"]
        assert not any(mini.heard_in_training(s, train) for s in speakers if s.split != "train")


def test_extra_training_speakers_reach_beyond_96_and_keep_dev_and_test_unheard():
    base = mini.make_speakers(np.random.default_rng(0))
    speakers = mini.add_train_speakers(np.random.default_rng([0, 1]), base, 200)
    assert speakers[:len(base)] == base
    assert [s.id for s in speakers] == list(range(100, 100 + 256))
    train = [s for s in speakers if s.split == "train"]
    held = [s for s in speakers if s.split != "train"]
    assert len(train) == 240 and len(held) == 16
    espeak_train = [s for s in train if s.engine == "espeak-ng"]
    assert len(espeak_train) > 96 and {s.variant for s in espeak_train} > set(mini.ESPEAK_VARIANTS)
    assert {s.voice for s in train if s.engine == "flite"} == set(mini.FLITE_VOICES) | set(mini.FLITE_EXTRA_VOICES)
    assert 0.35 < sum(s.gender == "F" for s in train) / len(train) < 0.65
    assert not any(mini.heard_in_training(s, train) for s in held)
    assert not {(s.voice, s.variant) for s in held if s.engine == "espeak-ng"} & {(s.voice, s.variant) for s in train}
    # Extra speakers keep twice the tolerance from the dev and test speakers of their voice (kal is kal16).
    family = {"kal": "kal16"}
    rate_tol, pitch_tol = mini.HEARD_TOLERANCE["flite"]
    for s in speakers[len(base):]:
        for h in held:
            if (s.engine, family.get(s.voice, s.voice), s.variant) == (
                    h.engine, family.get(h.voice, h.voice), h.variant):
                assert s.engine == "flite"
                assert abs(s.rate - h.rate) > 2 * rate_tol or (
                    h.pitch is not None and abs(s.pitch - h.pitch) > 2 * pitch_tol)
    assert mini.add_train_speakers(np.random.default_rng([0, 1]), base, 200) == speakers
    assert mini.add_train_speakers(np.random.default_rng([1, 1]), base, 200) != speakers
    assert mini.add_train_speakers(np.random.default_rng(0), base, 0) == base
    with pytest.raises(SpeechkitError, match="extra training speakers"):
        mini.add_train_speakers(np.random.default_rng(0), base, -1)


def test_many_extra_speakers_share_a_pair_at_clearly_different_settings():
    base = mini.make_speakers(np.random.default_rng(0))
    extra = mini.add_train_speakers(np.random.default_rng([0, 1]), base, 700)[len(base):]
    by_pair = collections.defaultdict(list)
    for s in extra:
        by_pair[s.engine, s.voice, s.variant].append(s)
    shared = [group for key, group in by_pair.items() if key[0] == "espeak-ng" and len(group) > 1]
    assert shared
    rate_tol, pitch_tol = mini.HEARD_TOLERANCE["espeak-ng"]
    for group in shared:
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                assert abs(a.rate - b.rate) > 1.5 * rate_tol or abs(a.pitch - b.pitch) > 1.5 * pitch_tol


def test_extra_speakers_grow_train_only(books):
    base = mini.plan_mini(books, seed=0, **_TINY)
    plan = mini.plan_mini(books, seed=0, extra_train_speakers=30, **_TINY)
    assert plan.candidates["dev"] == base.candidates["dev"] and plan.candidates["test"] == base.candidates["test"]
    assert plan.speakers[:12] == base.speakers and len(plan.speakers) == 42
    train = [s.id for s in plan.speakers if s.split == "train"]
    assert len(train) == 36 and [it.speaker for it in plan.candidates["train"]] == [
        train[k % 36] for k in range(len(plan.candidates["train"]))]
    assert "extra_train_speakers" not in base.settings and plan.settings["extra_train_speakers"] == 30



def test_train_flite_share_gives_flite_more_train_turns_only(books):
    sizes = dict(_TINY, train_hours=0.1)
    base = mini.plan_mini(books, seed=0, extra_train_speakers=30, **sizes)
    plan = mini.plan_mini(books, seed=0, extra_train_speakers=30, train_flite_share=0.4, **sizes)
    assert plan.candidates["dev"] == base.candidates["dev"] and plan.candidates["test"] == base.candidates["test"]
    assert plan.speakers == base.speakers and plan.settings["train_flite_share"] == 0.4
    engine = {s.id: s.engine for s in plan.speakers}

    def flite_share(items, n):
        return sum(engine[it.speaker] == "flite" for it in items[:n]) / n

    n = len(plan.candidates["train"])
    assert n > 200 and flite_share(base.candidates["train"], n) < 0.3
    for prefix in (10, 50, n):
        assert abs(flite_share(plan.candidates["train"], prefix) - 0.4) <= 1 / prefix
    turns = collections.Counter(it.speaker for it in plan.candidates["train"][:200])
    flite = [s.id for s in plan.speakers if s.split == "train" and s.engine == "flite"]
    espeak = [s.id for s in plan.speakers if s.split == "train" and s.engine != "flite"]
    assert max(turns[s] for s in flite) - min(turns[s] for s in flite) <= 1
    assert max(turns[s] for s in espeak) - min(turns[s] for s in espeak) <= 1
    with pytest.raises(SpeechkitError, match="flite share"):
        mini.plan_mini(books, seed=0, train_flite_share=1.0, **_TINY)

def test_layout_is_librispeech_at_16khz(corpus):
    transcripts = _transcripts(corpus)
    summary = json.loads((corpus / "corpus.json").read_text())
    assert summary["complete"] and summary["failures"]["count"] == 0
    for split in mini.SPLITS:
        flacs = sorted(glob.glob(str(corpus / split / "*" / "*" / "*.flac")))
        assert flacs and len(flacs) == len(transcripts[split]) == summary["splits"][split]["utterances"]
        seconds = 0.0
        for path in flacs:
            spk, chapter, name = path.split(os.sep)[-3:]
            assert re.fullmatch(rf"{spk}-{chapter}-\d{{4}}\.flac", name)
            assert name[:-5] in transcripts[split] and re.fullmatch(r"[A-Z' ]+", transcripts[split][name[:-5]])
            meta = sf.info(path)
            assert (meta.samplerate, meta.channels, meta.format, meta.subtype) == (16000, 1, "FLAC", "PCM_16")
            seconds += meta.duration
        stats = summary["splits"][split]
        assert stats["seconds"] == pytest.approx(seconds, abs=0.01)
        # The shortest prefix reaching the target: at least the target, by less than one utterance.
        assert stats["target_seconds"] <= seconds < stats["target_seconds"] + 12.0
        assert 1.0 < stats["mean_seconds"] < 7.0
    assert not glob.glob(str(corpus / "**" / "*.tmp.*"), recursive=True)


def test_dev_and_test_are_unseen_speakers_and_sentences(corpus):
    transcripts = _transcripts(corpus)
    speakers = {split: {utt.split("-")[0] for utt in transcripts[split]} for split in mini.SPLITS}
    assert not speakers["train"] & speakers["dev"] and not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]
    texts = {split: set(transcripts[split].values()) for split in mini.SPLITS}
    lm_lines = set((corpus / "lm_text.txt").read_text(encoding="utf-8").splitlines())
    held_out = texts["dev"] | texts["test"]
    assert held_out and not held_out & texts["train"] and not held_out & lm_lines
    assert texts["train"] <= lm_lines
    assert len(lm_lines) > 1000


def test_speakers_tsv_describes_every_speaker(corpus):
    lines = (corpus / "speakers.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    assert header == ["speaker", "split", "engine", "voice", "variant", "rate", "pitch", "gender", "utterances",
                      "seconds"]
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    assert len(rows) == 12
    transcripts = _transcripts(corpus)
    for row in rows:
        assert row["engine"] in ("espeak-ng", "flite") and row["gender"] in ("M", "F")
        spoken = [u for u in transcripts[row["split"]] if u.split("-")[0] == row["speaker"]]
        assert int(row["utterances"]) == len(spoken)
        if row["engine"] == "espeak-ng":
            assert row["voice"] in mini.ESPEAK_ACCENTS and row["variant"] in mini.ESPEAK_VARIANTS
        else:
            assert row["voice"] in mini.FLITE_VOICES and row["variant"] == "-"
    assert {r["engine"] for r in rows if int(r["utterances"])} == {"espeak-ng", "flite"}


def test_importer_reads_every_utterance(corpus, tmp_path):
    summary = json.loads((corpus / "corpus.json").read_text())
    for split in mini.SPLITS:
        utterances, report = import_librispeech(str(corpus / split), str(tmp_path / f"{split}.jsonl"))
        assert report.total == 0
        assert len(utterances) == summary["splits"][split]["utterances"]
        assert sum(u.duration for u in utterances) == pytest.approx(summary["splits"][split]["seconds"], abs=0.01)
        assert (corpus / f"{split}.jsonl").read_text().count("\n") == len(utterances)


def test_same_seed_same_corpus_other_seed_other_plan(corpus, books, tmp_path):
    again = tmp_path / "again"
    mini.synth_mini(str(again), seed=0, books_dir=books, jobs=2, **_TINY)
    assert _transcripts(again) == _transcripts(corpus)
    assert (again / "speakers.tsv").read_text() == (corpus / "speakers.tsv").read_text()
    assert (again / "lm_text.txt").read_text() == (corpus / "lm_text.txt").read_text()
    for path in sorted(glob.glob(str(corpus / "test" / "*" / "*" / "*.flac")))[:3]:
        np.testing.assert_array_equal(sf.read(path)[0], sf.read(str(again / os.path.relpath(path, corpus)))[0])
    first = mini.plan_mini(books, seed=0, **_TINY)
    other = mini.plan_mini(books, seed=1, **_TINY)
    assert [it.text for it in other.candidates["test"]] != [it.text for it in first.candidates["test"]]
    with pytest.raises(SpeechkitError, match="other settings"):
        mini.synth_mini(str(again), seed=1, books_dir=books, jobs=2, **_TINY)


def test_extra_training_speakers_keep_the_dev_and_test_files(corpus, books, tmp_path):
    out = tmp_path / "release"
    assert main(["data", "synth-mini", "--out", str(out), "--books", books, "--jobs", "2", *_CLI_TINY,
                 "--extra-train-speakers", "20", "--train-hours", "0.03"]) == 0
    base, release = _transcripts(corpus), _transcripts(out)
    assert release["dev"] == base["dev"] and release["test"] == base["test"]
    for path in sorted(glob.glob(str(corpus / "test" / "*" / "*" / "*.flac")))[:3]:
        np.testing.assert_array_equal(sf.read(path)[0], sf.read(str(out / os.path.relpath(path, corpus)))[0])
    assert max(int(utt.split("-")[0]) for utt in release["train"]) >= 112
    rows = (out / "speakers.tsv").read_text().splitlines()[1:]
    assert len(rows) == 32 and sum(row.split("\t")[1] == "train" for row in rows) == 26
    settings = json.loads((out / "corpus.json").read_text())["settings"]
    assert settings["extra_train_speakers"] == 20


def test_rerun_skips_existing_files_and_refills_missing_ones(corpus, books):
    before = _mtimes(corpus)
    transcripts = _transcripts(corpus)
    summary = mini.synth_mini(str(corpus), seed=0, books_dir=books, jobs=2, **_TINY)
    assert summary["last_run"]["synthesized"] == 0 and summary["last_run"]["existing"] == len(before)
    assert _mtimes(corpus) == before
    victim = sorted(before)[0]
    os.remove(victim)
    (corpus / "train" / "0-0-0000.flac.tmp.99").write_bytes(b"half a file")
    summary = mini.synth_mini(str(corpus), seed=0, books_dir=books, jobs=2, **_TINY)
    assert summary["last_run"]["synthesized"] == 1
    after = _mtimes(corpus)
    assert set(after) == set(before)
    assert {p: t for p, t in after.items() if p != victim} == {p: t for p, t in before.items() if p != victim}
    assert _transcripts(corpus) == transcripts
    assert not glob.glob(str(corpus / "**" / "*.tmp.*"), recursive=True)


def _fake_engines(folder, fail_text, log):
    """Wrappers around the real engines that always fail on ``fail_text`` and log each such try."""
    folder.mkdir()
    for engine in ("espeak-ng", "flite"):
        real = shutil.which(engine)
        script = folder / engine
        script.write_text(f'#!/bin/sh\ncase "$*" in *"{fail_text}"*) echo try >> "{log}"; '
                          f'echo "no voice" >&2; exit 3;; esac\nexec "{real}" "$@"\n')
        script.chmod(0o755)


def test_a_failing_sentence_is_retried_then_skipped_and_counted(books, tmp_path, monkeypatch):
    plan = mini.plan_mini(books, seed=0, **_TINY)
    doomed = plan.candidates["dev"][1]
    log = tmp_path / "tries.log"
    _fake_engines(tmp_path / "bin", doomed.text.lower(), log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "corpus"
    summary = mini.synth_mini(str(out), seed=0, books_dir=books, jobs=1, **_TINY)
    assert log.read_text().count("try") == 2
    assert summary["failures"]["count"] == 1 and summary["failures"]["by_reason"] == {"engine_failed": 1}
    assert "no voice" in summary["failures"]["items"][doomed.id]
    dev = _transcripts(out)["dev"]
    assert doomed.id not in dev and plan.candidates["dev"][0].id in dev and plan.candidates["dev"][2].id in dev
    assert summary["splits"]["dev"]["seconds"] >= summary["splits"]["dev"]["target_seconds"]


def test_missing_engine_names_the_install_command(books, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SpeechkitError, match="apt-get install espeak-ng flite"):
        mini.synth_mini(str(tmp_path / "out"), books_dir=books, **_TINY)
    assert not (tmp_path / "out").exists()


def test_trim_silence_keeps_the_speech_and_a_margin():
    rate = 16000
    tone = 0.5 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate).astype(np.float32)
    audio = np.concatenate([np.zeros(rate // 2, np.float32), tone, np.zeros(rate // 2, np.float32)])
    trimmed = mini._trim_silence(audio, margin=0.15)
    # 0.15 s on each side of the 1 s tone, to within one 10 ms frame.
    assert abs(len(trimmed) - int(1.3 * rate)) <= rate // 100
    assert np.flatnonzero(trimmed)[0] == pytest.approx(0.15 * rate, abs=rate // 100)
    assert mini._trim_silence(np.zeros(rate, np.float32)).size == 0
    assert mini._trim_silence(np.full(rate, 1e-6, np.float32)).size == 0
