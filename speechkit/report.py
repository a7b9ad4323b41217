"""The experiment report: one Markdown page (and a self-contained HTML copy) from a recipe's outputs.

``write_report(exp_dir)`` reads what the recipe stages wrote (ASR evaluation reports, training logs,
LM and tuning results, the vocoder evaluation, the exports) and lays them out for a person: the WER
table with confidence intervals next to the released model's figures on the same test set (the
recipes evaluate ``--model ds2-mini`` into ``EXP/eval_released``), per-speaker WER, training curves,
spectrograms of original and
vocoded audio with their wav files, the receptive field, the real-time factors and the export paths.
Missing parts (a stage not run yet) are reported as missing, not invented.

The training runs (``EXP/asr``, ``EXP/vocoder``) are read through ``speechkit.runs.RunDir`` and its
file names; a run file that exists but cannot be read is logged and reported as missing.
"""

import base64
import csv
import datetime
import glob
import json
import logging
import mimetypes
import os
import re
import subprocess

import markdown
from matplotlib.figure import Figure

from speechkit.config import atomic_write_text
from speechkit.errors import ConfigError, RunError
from speechkit.runs import RunDir
from speechkit.vocoder.wavenet import WaveNetConfig, receptive_field

__all__ = ["write_report", "collect"]

logger = logging.getLogger(__name__)

_DECODERS = (("greedy", "greedy"), ("beam", "beam, no LM"), ("beam_lm", "beam + LM"))


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _run(exp_dir, name):
    """``RunDir`` of ``EXP/name``, or None when that stage has not run."""
    path = os.path.join(exp_dir, name)
    return RunDir(path) if os.path.isdir(path) else None


def _from_run(run, name, read):
    """``read()`` when ``run`` holds ``name``; None when it does not, or when the file is unreadable."""
    if run is None or not run.exists(name):
        return None
    try:
        return read()
    except (RunError, ConfigError) as err:
        logger.warning("report: left out: %s", err)
        return None


def _vocoder_description(run):
    """``(model dict, front-end dict)`` from a vocoder run's ``config.yaml``, each None when unknown."""
    config = _from_run(run, RunDir.CONFIG, run.read_config) if run else None
    if not config or "model" not in config:
        return None, None
    source = run.file(RunDir.CONFIG)
    model = _from_run(run, RunDir.CONFIG, lambda: WaveNetConfig.from_dict(config["model"], source=source))
    frontend = _from_run(run, RunDir.CONFIG, run.frontend)
    return (model.to_dict() if model else None), (frontend.to_dict() if frontend else None)


def _read_csv(path):
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [row for row in csv.DictReader(f)]
    except OSError:
        return []


def _eval_sets(root):
    """``{test set: {decoder: report}}`` from ``root/<test set>/<decoder>/report.json``."""
    eval_sets = {}
    for report_path in sorted(glob.glob(os.path.join(root, "*", "*", "report.json"))):
        decoder = os.path.basename(os.path.dirname(report_path))
        test_set = os.path.basename(os.path.dirname(os.path.dirname(report_path)))
        eval_sets.setdefault(test_set, {})[decoder] = _read_json(report_path)
    return eval_sets


def _card(run_dir):
    """The model card in ``run_dir``, or None when it is a training run (or not given)."""
    if run_dir and os.path.isfile(os.path.join(run_dir, RunDir.CARD)):
        return _read_json(os.path.join(run_dir, RunDir.CARD))
    return None


def _released_card(eval_sets):
    """The model card of the released model the ``eval_released`` reports were made with, or None."""
    for reports in eval_sets.values():
        for report in reports.values():
            card = _card((report or {}).get("run_dir"))
            if card:
                return card
    return None


def collect(exp_dir):
    """Gather every figure the report shows into one dict (also written as ``report.json``)."""
    eval_sets = _eval_sets(os.path.join(exp_dir, "eval"))
    released = _eval_sets(os.path.join(exp_dir, "eval_released"))
    asr, vocoder, tts = _run(exp_dir, "asr"), _run(exp_dir, "vocoder"), _run(exp_dir, "tts")
    decode = _from_run(asr, RunDir.DECODE, asr.decode_config) if asr else None
    tts_eval = _read_json(os.path.join(exp_dir, "tts_eval", "report.json"))
    vocoder_model, vocoder_frontend = _vocoder_description(vocoder)
    return {
        "exp_dir": os.path.abspath(exp_dir),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "revision": _revision(),
        "eval": eval_sets,
        "released_eval": released,
        "released_card": _released_card(released),
        "decode": decode.to_dict() if decode else None,
        "lm": _read_json(os.path.join(exp_dir, "lm", "lm.json")),
        "asr_training": _from_run(asr, RunDir.SUMMARY, asr.summary) if asr else None,
        "vocoder_training": _from_run(vocoder, RunDir.SUMMARY, vocoder.summary) if vocoder else None,
        "vocoder_eval": _read_json(os.path.join(exp_dir, "vocoder_eval", "report.json")),
        "vocoder_model": vocoder_model,
        "vocoder_frontend": vocoder_frontend,
        "tts_training": _from_run(tts, RunDir.SUMMARY, tts.summary) if tts else None,
        "tts_eval": tts_eval,
        "tts_released_card": _card(((tts_eval or {}).get("summary") or {}).get("tts_run")),
        "exports": {name: os.path.abspath(os.path.join(exp_dir, "export", name))
                    for name in ("asr", "vocoder") if os.path.isdir(os.path.join(exp_dir, "export", name))},
    }


def _revision():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=os.path.dirname(__file__)).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _step_losses(path):
    """Per-step training loss from the ASR trainer's ``batches.jsonl`` (skipped steps left out)."""
    steps, losses = [], []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                entry = json.loads(line)
                if not entry.get("nonfinite"):
                    steps.append(entry["step"])
                    losses.append(entry["loss"])
    except (OSError, ValueError, KeyError):
        return [], []
    return steps, losses


def _plot_curves(exp_dir, out_png):
    """Training curves: ASR loss per step with dev WER per epoch, vocoder loss and accuracy per epoch."""
    asr, vocoder = _run(exp_dir, "asr"), _run(exp_dir, "vocoder")
    asr_rows = _read_csv(asr.file(RunDir.TRAIN_LOG)) if asr else []
    steps, losses = _step_losses(asr.file(RunDir.BATCHES)) if asr else ([], [])
    vocoder_rows = _read_csv(vocoder.file(RunDir.TRAIN_LOG)) if vocoder else []
    panels = [p for p in (("asr", asr_rows or steps), ("vocoder", vocoder_rows)) if p[1]]
    if not panels:
        return None
    fig = Figure(figsize=(5.5 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (name, _) in zip(axes[0], panels):
        if name == "asr":
            ax.set_title("ASR (Deep Speech 2)")
            if steps:
                ax.plot(steps, losses, lw=0.8, label="CTC loss per step")
                ax.set_xlabel("step")
            if asr_rows and "val_wer" in asr_rows[0] and "step" in asr_rows[0]:
                twin = ax.twinx()
                twin.plot(_floats(asr_rows, "step"), _floats(asr_rows, "val_wer"), color="tab:red", marker="s",
                          label="dev WER")
                twin.set_ylabel("dev WER (greedy)", color="tab:red")
        else:
            ax.set_title("vocoder (WaveNet)")
            x = list(range(1, len(vocoder_rows) + 1))
            ax.plot(x, _floats(vocoder_rows, "loss"), marker="o", label="loss")
            ax.set_xlabel("epoch")
            if "accuracy" in vocoder_rows[0]:
                twin = ax.twinx()
                twin.plot(x, _floats(vocoder_rows, "accuracy"), color="tab:red", marker="s", label="accuracy")
                twin.set_ylabel("teacher-forced accuracy", color="tab:red")
        ax.set_ylabel("loss")
        ax.legend(loc="upper right")
    fig.tight_layout()
    tmp = f"{out_png[:-4]}.tmp.{os.getpid()}.png"
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, out_png)
    return out_png


def _floats(rows, key):
    """Column ``key`` as floats; CSVLogger's empty and ``NA`` cells become NaN."""
    out = []
    for row in rows:
        try:
            out.append(float(row[key]))
        except (TypeError, ValueError):
            out.append(float("nan"))
    return out


def _num(summary, key):
    """``summary[key]`` as a float; NaN when absent or None (a stage that measured nothing)."""
    value = summary.get(key)
    return float("nan") if value is None else float(value)


def _pct(value):
    return "–" if value is None else f"{100 * value:.2f}%"


def _ci(report, key):
    lo, hi = report.get(f"{key}_ci95", (None, None))
    return "" if lo is None else f" [{100 * lo:.1f}, {100 * hi:.1f}]"


def _released_lines(reports, released, card):
    """The from-scratch run's test figures next to the released model's, on the same test set."""
    if not released:
        return []
    name = (card or {}).get("name", "released model")
    lines = [f"Next to the released model `{name}` (`speechkit eval --model {name}`) on the same test set:", "",
             f"| decoder | this run: WER | `{name}`: WER [95% CI] | this run: RTF | `{name}`: RTF |",
             "|---|---|---|---|---|"]
    for key, label in _DECODERS:
        ours, theirs = reports.get(key), released.get(key)
        if theirs:
            our_wer, our_rtf = (_pct(ours["wer"]), f"{ours['decode_rtf']:.4f}") if ours else ("n/a", "n/a")
            lines.append(f"| {label} | {our_wer} | {_pct(theirs['wer'])}{_ci(theirs, 'wer')} | {our_rtf} | "
                         f"{theirs['decode_rtf']:.4f} |")
    training = (card or {}).get("training") or {}
    if training:
        lines += ["", f"`{name}` was trained for {training.get('steps')} steps ({_num(training, 'wall_hours'):.1f} "
                  f"wall hours) on {card.get('data')}; its card: `models/{name}/README.md`."]
    return lines + [""]


def _tts_lines(training, evaluation, released=None, rows=4):
    """The text-to-speech section: training, the intelligibility pair, MCD-DTW, RTF, and listening examples."""
    lines = ["## Text to speech (tts-mini)", ""]
    if released:
        t = released.get("training") or {}
        lines += [f"The released model `{released['name']}` ({t.get('steps')} steps, {_num(t, 'wall_hours'):.2f} h "
                  f"of training; its card: `models/{released['name']}/README.md`), evaluated on this run's held-out "
                  "sentences.", ""]
    elif training:
        lines += [f"Training: {training.get('step')} steps ({_num(training, 'epochs_done'):.1f} epochs), stopped by "
                  f"{str(training.get('stopped')).replace('_', ' ')}; durations from CTC forced alignment.", ""]
    if not evaluation:
        return lines + ["No TTS evaluation yet (stage 10 has not run).", ""]
    s = evaluation["summary"]
    lines += [f"{s['utterances']} held-out sentences, {s['seconds_synthesized']:.1f} s synthesised with "
              f"{s['vocoder']} (RTF {s['rtf']:.2f}); MCD-DTW against the recordings {s['mcd_dtw_mel_db']:.2f} dB "
              "(predicted mel).", ""]
    if "wer_synthesized" in s:
        lines += [f"Intelligibility (ASR greedy WER of `{os.path.basename(str(s['asr_run']))}`): recordings "
                  f"{_pct(s['wer_recorded'])}, synthesised {_pct(s['wer_synthesized'])}.", ""]
    for row in evaluation["utterances"][:rows]:
        lines.append(f"- `{row['id']}` \"{row['text']}\": [synthesised](tts_eval/{row['wav']})"
                     + (f"; ASR heard \"{row['asr_synthesized']}\"" if "asr_synthesized" in row else ""))
        if row.get("png"):
            lines += ["", f"![{row['id']}](tts_eval/{row['png']})", ""]
    return lines + [""]


def _markdown(data, exp_dir, curves_png):
    lines = [f"# speechkit experiment report: `{os.path.basename(os.path.abspath(exp_dir))}`", "",
             f"Written {data['date']} at revision `{data['revision']}` on a {os.cpu_count()}-core CPU machine.", ""]
    lines += ["## Speech recognition (Deep Speech 2)", ""]
    if not data["eval"]:
        lines += ["No ASR evaluation yet (stage 6 has not run).", ""]
    for test_set, reports in data["eval"].items():
        lines += [f"### {test_set}", "",
                  "| decoder | WER [95% CI] | CER [95% CI] | utterances | RTF (front end + model) "
                  "| RTF (with decoding) |",
                  "|---|---|---|---|---|---|"]
        for key, label in _DECODERS:
            r = reports.get(key)
            if r:
                lines.append(f"| {label} | {_pct(r['wer'])}{_ci(r, 'wer')} | {_pct(r['cer'])}{_ci(r, 'cer')} | "
                             f"{r['utterances']} | {r['rtf']:.4f} | {r['decode_rtf']:.4f} |")
        best = reports.get("beam_lm") or reports.get("greedy")
        if best and best.get("per_speaker"):
            lines += ["", f"Per-speaker WER ({'beam + LM' if 'beam_lm' in reports else 'greedy'}):", "",
                      "| speaker | utterances | words | WER |", "|---|---|---|---|"]
            lines += [f"| {spk} | {s['utterances']} | {s['words']} | {_pct(s['wer'])} |"
                      for spk, s in best["per_speaker"].items()]
        if best and best.get("worst"):
            w = best["worst"][0]
            lines += ["", f"Worst utterance `{w['id']}` (WER {_pct(w['wer'])}):", "", "```", w["alignment"], "```"]
        lines.append("")
        lines += _released_lines(reports, data.get("released_eval", {}).get(test_set), data.get("released_card"))
    training = data["asr_training"]
    if training:
        lines += [f"Training: {training.get('step')} steps ({_num(training, 'epochs_done'):.1f} epochs) on "
                  f"{training.get('training_utterances')} utterances, "
                  f"stopped by {str(training.get('stopped')).replace('_', ' ')}; "
                  f"{_num(training, 'throughput_audio_s_per_s'):.1f} s of audio per second "
                  f"({_num(training, 'audio_s_per_cpu_s'):.1f} per CPU-second); best dev WER "
                  f"{_pct(training.get('best_dev_wer'))}; {training.get('parameters') or 0:,} parameters.", ""]
    decode, lm = data["decode"], data["lm"]
    if decode:
        lines += [f"Tuned on dev: alpha = {decode.get('alpha')}, beta = {decode.get('beta')}, "
                  f"beam width {decode.get('beam_width')}.", ""]
    if lm:
        lines += [f"Language model: {lm.get('order')}-gram KenLM on {lm.get('sentences')} sentences "
                  f"({lm.get('words')} words, vocabulary {lm.get('vocabulary_size')}); held-out perplexity "
                  f"{lm.get('perplexity', float('nan')):.1f} "
                  f"(OOV rate {100 * lm.get('heldout_oov_rate', float('nan')):.2f}%).", ""]
    if curves_png:
        lines += ["## Training curves", "", f"![training curves]({os.path.relpath(curves_png, exp_dir)})", ""]
    lines += ["## Vocoder (WaveNet)", ""]
    model, frontend = data["vocoder_model"], data["vocoder_frontend"]
    if model:
        rf = receptive_field(layers_per_stack=model["layers_per_stack"], stacks=model["stacks"],
                             kernel_size=model["kernel_size"],
                             sample_rate=(frontend or {}).get("sample_rate", 16000))
        lines += [f"{model['stacks']} stacks x {model['layers_per_stack']} layers, "
                  f"residual {model['residual_channels']}, gate {model['gate_channels']}, "
                  f"skip {model['skip_channels']}; receptive field {rf.samples} samples "
                  f"({rf.ms:.1f} ms).", ""]
    training = data.get("vocoder_training")
    if training:
        lines += [f"Training: {training.get('step')} steps ({_num(training, 'epochs_done'):.1f} epochs), stopped by "
                  f"{str(training.get('stopped')).replace('_', ' ')}; "
                  f"{_num(training, 'samples_per_second'):,.0f} samples per second.", ""]
    v = data["vocoder_eval"]
    if not v:
        lines += ["No vocoder evaluation yet (stage 8 has not run).", ""]
    else:
        s = v["summary"]
        lines += ["| measure | vocoded | 8-bit mu-law original (floor) |", "|---|---|---|",
                  f"| log-spectral distance (dB) | {s['lsd_db']:.2f} | {s['mulaw_lsd_db']:.2f} |",
                  f"| mel-cepstral distortion (dB) | {s['mcd_db']:.2f} | {s['mulaw_mcd_db']:.2f} |",
                  f"| generation real-time factor | {s['rtf']:.2f} | |", ""]
        if "wer_vocoded" in s:
            lines += [f"Round trip (ASR greedy WER on the same {s['utterances']} utterances): original audio "
                      f"{_pct(s['wer_original'])}, vocoded audio {_pct(s['wer_vocoded'])}.", ""]
        for row in v["utterances"]:
            safe = row["id"].replace(os.sep, "_")
            lines.append(f"- `{row['id']}`: LSD {row['lsd_db']:.2f} dB, MCD {row['mcd_db']:.2f} dB; "
                         f"[original](vocoder_eval/wav/{safe}_original.wav), "
                         f"[vocoded](vocoder_eval/wav/{safe}_vocoded.wav)"
                         + (f"; ASR on vocoded: \"{row['asr_vocoded']}\"" if "asr_vocoded" in row else ""))
            if "png" in row:
                lines += ["", f"![{row['id']}](vocoder_eval/{row['png']})", ""]
        lines.append("")
    lines += _tts_lines(data.get("tts_training"), data.get("tts_eval"), data.get("tts_released_card"))
    lines += ["## Exported models", ""]
    if data["exports"]:
        lines += [f"- {name}: `{path}`" for name, path in data["exports"].items()]
    else:
        lines.append("No exports yet (stage 9 has not run).")
    return "\n".join(lines) + "\n"


def _html(markdown_text, exp_dir):
    """Self-contained HTML: images inlined as data URIs so the page can be mailed or archived alone."""
    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])

    def inline(match):
        path = os.path.join(exp_dir, match.group(1))
        if not os.path.isfile(path):
            return match.group(0)
        mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
        with open(path, "rb") as f:
            return f'src="data:{mime};base64,{base64.b64encode(f.read()).decode("ascii")}"'

    body = re.sub(r'src="([^":]+)"', inline, body)
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>speechkit report</title>"
            f"<style>{style}</style></head><body>{body}</body></html>\n")


def write_report(exp_dir):
    """Write ``report.md``, ``report.html``, ``report.json`` and ``training_curves.png`` into ``exp_dir``.

    Returns:
        dict, the collected figures.
    """
    data = collect(exp_dir)
    curves = _plot_curves(exp_dir, os.path.join(exp_dir, "training_curves.png"))
    text = _markdown(data, exp_dir, curves)
    atomic_write_text(os.path.join(exp_dir, "report.md"), text)
    atomic_write_text(os.path.join(exp_dir, "report.html"), _html(text, exp_dir))
    atomic_write_text(os.path.join(exp_dir, "report.json"), json.dumps(data, indent=2) + "\n")
    logger.info("wrote %s/report.md and report.html", exp_dir)
    return data
