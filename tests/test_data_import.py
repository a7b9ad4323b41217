import json

import numpy as np
import pytest
import soundfile as sf

from speechkit.cli import main
from speechkit.data.manifest import (SkipReport, Utterance, combine_manifests, read_manifest, write_manifest,
                                     write_transcripts)
from speechkit.errors import ManifestError


def _tree(root):
    chapter = root / "19" / "198"
    chapter.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, seconds in [("19-198-0000", 1.0), ("19-198-0001", 2.0), ("19-198-0004", 40.0), ("19-198-0006", 0.5)]:
        sf.write(chapter / f"{name}.flac", 0.1 * rng.standard_normal(int(16000 * seconds)), 16000)
    (chapter / "19-198-0002.flac").write_text("not audio at all")
    (chapter / "19-198-0003.flac").write_bytes(b"")
    (chapter / "19-198-0005.flac").write_bytes(b"")
    (chapter / "19-198.trans.txt").write_text(
        "19-198-0000 HELLO WORLD\n"
        "19-198-0001 it's fine, thanks\n"
        "19-198-0002 CORRUPT FILE\n"
        "19-198-0003 ZERO LENGTH FILE\n"
        "19-198-0004 FAR TOO LONG\n"
        "19-198-0005 1234\n"
        "19-198-0009 NO AUDIO FOR THIS ONE\n"
        "\n"
    )
    return root


def test_import_counts_every_skip_by_reason(tmp_path):
    root = _tree(tmp_path / "LibriSpeech")
    out = tmp_path / "m.jsonl"
    assert main(["data", "import-librispeech", str(root), "--out", str(out), "--max-duration", "35"]) == 0
    utts = read_manifest(out)
    assert [(u.id, u.text, u.speaker) for u in utts] == [("19-198-0000", "HELLO WORLD", "19"),
                                                         ("19-198-0001", "IT'S FINE THANKS", "19")]
    assert abs(utts[1].duration - 2.0) < 1e-3
    report = json.loads((tmp_path / "m.jsonl.report.json").read_text())
    assert report["by_reason"] == {"duration_out_of_range": 1, "empty_line": 1, "empty_text": 1, "missing_audio": 1,
                                   "no_transcript": 1, "unreadable": 2}
    assert report["skipped"] == 7
    assert any("19-198-0002.flac" in item["item"] for item in report["items"]["unreadable"])
    assert not list(tmp_path.glob("*.tmp.*"))
    lines = out.read_text().splitlines()
    assert json.loads(lines[0])["audio"] == "LibriSpeech/19/198/19-198-0000.flac"


def test_import_missing_root_is_an_error(tmp_path, capsys):
    assert main(["data", "import-librispeech", str(tmp_path / "nope"), "--out", str(tmp_path / "m.jsonl")]) == 1
    assert "nope" in capsys.readouterr().err


def test_manifest_round_trip_and_bad_lines(tmp_path):
    utts = [Utterance("a", str(tmp_path / "a.flac"), 1.5, "A", "s1"), Utterance("b", "/abs/b.flac", 2.0, "B", "s2")]
    path = tmp_path / "m.jsonl"
    write_manifest(path, utts)
    assert read_manifest(path) == utts
    with open(path, "a") as f:
        f.write("{not json\n")
        f.write('{"id": "c", "audio": "c.flac"}\n')
    with pytest.raises(ManifestError, match=r"m.jsonl:3: not valid JSON"):
        read_manifest(path)
    report = SkipReport()
    assert read_manifest(path, skip_report=report) == utts
    assert report.counts == {"bad_fields": 1, "not_json": 1}
    assert "m.jsonl:4" in report.items["bad_fields"][0]["item"]


def test_combine_filters_speakers_and_hours_and_text_writes_transcripts(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_manifest(a, [Utterance("1", "/x/1.flac", 10.0, "ONE", "s1"), Utterance("2", "/x/2.flac", 10.0, "TWO", "s2")])
    write_manifest(b, [Utterance("3", "/x/3.flac", 10.0, "THREE", "s1"),
                       Utterance("4", "/x/4.flac", 10.0, "FOUR", "s1")])
    out = tmp_path / "c.jsonl"
    assert main(["data", "combine", str(a), str(b), "--out", str(out), "--speakers", "s1",
                 "--max-hours", str(25 / 3600)]) == 0
    assert [u.id for u in read_manifest(out)] == ["1", "3"]
    assert main(["data", "text", str(a), str(b), "--out", str(tmp_path / "t.txt")]) == 0
    assert (tmp_path / "t.txt").read_text() == "ONE\nTWO\nTHREE\nFOUR\n"


def test_combine_manifests_keeps_order_and_stops_at_the_cap(tmp_path):
    a = tmp_path / "a.jsonl"
    write_manifest(a, [Utterance(str(i), f"/x/{i}.flac", 10.0, "WORD", f"s{i % 2}") for i in range(6)])
    out = str(tmp_path / "out.jsonl")
    assert [u.id for u in combine_manifests([a], out)] == ["0", "1", "2", "3", "4", "5"]
    kept = combine_manifests([a, a], out, speakers={"s1"}, max_hours=35 / 3600)
    assert [u.id for u in kept] == ["1", "3", "5"]
    assert read_manifest(out) == kept
    assert combine_manifests([a], out, max_hours=5 / 3600) == [] and read_manifest(out) == []
    assert write_transcripts([a], str(tmp_path / "t.txt")) == 6
