"""Long-audio segmentation: boundary error and recovered sentences on chapters built from mini-corpus test speech.

Usage: python benchmarks/bench_segment.py [--data data/mini] [--model ds2-mini] [--speakers all] [--seed 0]
                                          [--work DIR] [--hour]

For each test speaker (one chapter per speaker), the speaker's test sentences are concatenated in order with
pauses of 0.3-1.2 s (one of 3 s), over a noise floor 60 dB below full scale. The book text holds every sentence,
with punctuation, in paragraphs of three or four sentences; one paragraph (three sentences) is left out of the
audio, and one unscripted sentence of another split (dev), absent from the text, is added to the audio. The true
boundaries of a sentence are where its own file's sound starts and ends (40 dB below its peak). Then
``speechkit.data.segment.segment_recording`` runs with the released model at its defaults, and the figures are:

- recovered: share of the sentences that are both read and in the text that come back as kept utterances with
  exactly their text, overlapping their true span (goal >= 95%);
- boundary error: |speech start - true start| and |speech end - true end| over the recovered sentences, median
  and 95th percentile (goal: median <= 40 ms), also before the energy refinement (the CTC frames alone);
- false keeps: kept utterances of left-out text, or covering the unscripted sentence (goal 0).

``--hour`` also builds one recording of about an hour (the chapters repeated, each with its text) and reports
the wall time and the peak resident memory (VmHWM) of segmenting it in a fresh process, next to those of the
chapters played once (about 12 minutes): memory that does not grow with the recording.
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

import librosa
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _row import row  # noqa: E402
from speechkit import audio as audio_io  # noqa: E402
from speechkit.data.manifest import read_manifest  # noqa: E402

RATE = 16000
LEFT_OUT = 3


def _speech_span(audio):
    _, (on, off) = librosa.effects.trim(audio, top_db=40, frame_length=320, hop_length=80)
    return on / RATE, off / RATE


def build_chapter(utterances, extra, folder, name, rng):
    """Write NAME.flac and NAME.txt; return the truth: per sentence, text, span (None when not read), in_text."""
    count = len(utterances)
    left_out = set(range(count // 2, count // 2 + LEFT_OUT))
    insert_after = max(0, count // 4 - 1)
    long_pause_after = count - 3
    noise = np.random.default_rng(rng.randrange(1 << 30))
    pieces, truth, t = [np.zeros(RATE, np.float32)], [], 1.0
    for i, utt in enumerate(utterances):
        if i in left_out:
            truth.append({"text": utt.text, "span": None, "in_text": True})
            continue
        audio = audio_io.load(utt.audio, sample_rate=RATE)
        on, off = _speech_span(audio)
        truth.append({"text": utt.text, "span": (t + on, t + off), "in_text": True})
        pieces.append(audio)
        t += len(audio) / RATE
        pause = 3.0 if i == long_pause_after else rng.uniform(0.3, 1.2)
        pieces.append(np.zeros(int(pause * RATE), np.float32))
        t += int(pause * RATE) / RATE
        if i == insert_after:
            audio = audio_io.load(extra.audio, sample_rate=RATE)
            on, off = _speech_span(audio)
            truth.append({"text": extra.text, "span": (t + on, t + off), "in_text": False})
            pieces += [audio, np.zeros(int(0.6 * RATE), np.float32)]
            t += len(audio) / RATE + int(0.6 * RATE) / RATE
    pieces.append(np.zeros(RATE, np.float32))
    audio = np.concatenate(pieces)
    audio = audio + noise.normal(0, 1e-3, audio.shape).astype(np.float32)
    audio_io.save(os.path.join(folder, name + ".flac"), audio, sample_rate=RATE)
    sentences = [u.text.capitalize() + "." for u in utterances]
    first, last = min(left_out), max(left_out) + 1
    paragraphs = [sentences[i:min(i + 4, first)] for i in range(0, first, 4)] + [sentences[first:last]]
    paragraphs += [sentences[i:i + 4] for i in range(last, count, 4)]
    with open(os.path.join(folder, name + ".txt"), "w", encoding="utf-8") as f:
        f.write("\n\n".join(" ".join(p) for p in paragraphs) + "\n")
    return truth, len(audio) / RATE


def score_chapter(truth, out_dir):
    records = [json.loads(line) for line in open(os.path.join(out_dir, "sentences.jsonl"), encoding="utf-8")]
    kept = [r for r in records if r["status"] == "kept"]
    starts, ends, raw_starts, raw_ends = [], [], [], []
    recovered, expected, false_keeps = 0, 0, 0
    for item in truth:
        if item["span"] is None:
            false_keeps += sum(1 for r in kept if r["text"] == item["text"])
            continue
        lo, hi = item["span"]
        overlapping = [r for r in kept if r["speech_end"] > lo and r["speech_start"] < hi]
        if not item["in_text"]:
            false_keeps += sum(1 for r in overlapping if min(hi, r["speech_end"]) - max(lo, r["speech_start"]) > 0.5)
            continue
        expected += 1
        match = [r for r in overlapping if r["part_text"] == item["text"]]
        if len(match) == 1:
            recovered += 1
            starts.append(abs(match[0]["speech_start"] - lo))
            ends.append(abs(match[0]["speech_end"] - hi))
            raw_starts.append(abs(match[0]["start"] - lo))
            raw_ends.append(abs(match[0]["end"] - hi))
    return {"expected": expected, "recovered": recovered, "false_keeps": false_keeps, "errors": starts + ends,
            "raw_errors": raw_starts + raw_ends, "start_errors": starts, "end_errors": ends,
            "rejected": len(records) - len(kept)}


def _segment_in_fresh_process(audio, text, out, model):
    """Segment one recording in a new Python process; its wall time and peak resident memory (VmHWM)."""
    code = ("import json, sys, time\n"
            "from speechkit.asr.inference import load_run\nfrom speechkit.models import resolve_model\n"
            "from speechkit.data.segment import segment_recording\n"
            f"r = load_run(resolve_model({model!r}, family='asr'))\nt = time.perf_counter()\n"
            f"rep = segment_recording(r, {audio!r}, open({text!r}, encoding='utf-8').read(), {out!r}, "
            "speaker='1', chapter='1')\nwall = time.perf_counter() - t\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print(json.dumps({'wall': wall, 'utterances': rep['utterances'], 'sentences': rep['sentences'], "
            "'seconds': rep['seconds'], 'rss_mb': int(hwm) / 1024}))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _long_recordings(chapters, work, model):
    """All chapters once (about 12 min), then repeated to an hour, each with its text, segmented in fresh processes.

    Both are long enough to fill the recogniser's batches of windows, so a difference in peak memory
    between them is what grows with the recording.
    """
    results = []
    for name, target in (("once", 0.0), ("hour", 3600.0)):
        audios, texts, seconds = [], [], 0.0
        while not audios or seconds < target:
            for chapter in chapters:
                audio = audio_io.load(os.path.join(work, chapter + ".flac"), sample_rate=RATE)
                audios.append(audio)
                texts.append(open(os.path.join(work, chapter + ".txt"), encoding="utf-8").read())
                seconds += len(audio) / RATE
                if target and seconds >= target:
                    break
        path = os.path.join(work, name + ".flac")
        audio_io.save(path, np.concatenate(audios), sample_rate=RATE)
        del audios
        with open(os.path.join(work, name + ".txt"), "w", encoding="utf-8") as f:
            f.write("\n\n".join(texts))
        results.append(_segment_in_fresh_process(path, os.path.join(work, name + ".txt"),
                                                 os.path.join(work, name + "_out"), model))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/mini")
    parser.add_argument("--model", default="ds2-mini")
    parser.add_argument("--speakers", default="all", help="comma-separated test speakers, or all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="folder for the chapters and outputs (default: a temporary one)")
    parser.add_argument("--hour", action="store_true", help="also segment an hour-long recording (time, memory)")
    args = parser.parse_args()

    from speechkit.asr.inference import load_run
    from speechkit.data.segment import segment_recording
    from speechkit.models import resolve_model

    rng = random.Random(args.seed)
    test = read_manifest(os.path.join(args.data, "test.jsonl"))
    dev = read_manifest(os.path.join(args.data, "dev.jsonl"))
    speakers = sorted({u.speaker for u in test}) if args.speakers == "all" else args.speakers.split(",")
    recognizer = load_run(resolve_model(args.model, family="asr"))
    work = args.work or tempfile.mkdtemp(prefix="bench_segment_")
    os.makedirs(work, exist_ok=True)
    totals = {"expected": 0, "recovered": 0, "false_keeps": 0, "errors": [], "raw_errors": [], "rejected": 0}
    audio_seconds, wall = 0.0, 0.0
    for speaker in speakers:
        utterances = sorted((u for u in test if u.speaker == speaker), key=lambda u: u.id)
        name = f"chapter{speaker}"
        truth, seconds = build_chapter(utterances, rng.choice(dev), work, name, rng)
        with open(os.path.join(work, name + ".truth.json"), "w", encoding="utf-8") as f:
            json.dump(truth, f, indent=1)
        start = time.perf_counter()
        segment_recording(recognizer, os.path.join(work, name + ".flac"),
                          open(os.path.join(work, name + ".txt"), encoding="utf-8").read(),
                          os.path.join(work, name), speaker=speaker, chapter="1")
        wall += time.perf_counter() - start
        audio_seconds += seconds
        result = score_chapter(truth, os.path.join(work, name))
        for key in ("expected", "recovered", "false_keeps", "rejected"):
            totals[key] += result[key]
        totals["errors"] += result["errors"]
        totals["raw_errors"] += result["raw_errors"]
        err = np.array(result["errors"]) * 1000
        print(f"speaker {speaker}: {seconds:.1f} s, {len(truth)} sentences, recovered {result['recovered']}/"
              f"{result['expected']}, false keeps {result['false_keeps']}, rejected {result['rejected']}, "
              f"boundary error median {np.median(err):.0f} ms, p95 {np.percentile(err, 95):.0f} ms", flush=True)
    err = np.array(totals["errors"]) * 1000
    raw = np.array(totals["raw_errors"]) * 1000
    share = totals["recovered"] / totals["expected"]
    figures = (f"{len(speakers)} chapters, {audio_seconds / 60:.1f} min; recovered {totals['recovered']}/"
               f"{totals['expected']} ({share * 100:.1f}%); boundary error median {np.median(err):.0f} ms, "
               f"p95 {np.percentile(err, 95):.0f} ms (CTC frames alone: median {np.median(raw):.0f} ms, "
               f"p95 {np.percentile(raw, 95):.0f} ms); false keeps {totals['false_keeps']} (left-out text or "
               f"unscripted speech); {totals['rejected']} rejected; segmentation RTF {wall / audio_seconds:.4f}")
    if args.hour:
        one, hour = _long_recordings([f"chapter{s}" for s in speakers], work, args.model)
        figures += (f"; fresh process, peak RSS (VmHWM) and wall: {one['seconds'] / 60:.1f}-min recording "
                    f"{one['rss_mb']:.0f} MB, {one['wall']:.0f} s; {hour['seconds'] / 60:.0f}-min recording "
                    f"{hour['rss_mb']:.0f} MB, {hour['wall']:.0f} s (RTF {hour['wall'] / hour['seconds']:.3f}), "
                    f"{hour['utterances']} utterances from {hour['sentences']} sentences")
    print(f"work folder: {work}; peak RSS of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(row(figures))


if __name__ == "__main__":
    main()
