"""Render scoring reports (the dicts of ``speechkit.scoring.score``) as Markdown, JSON and a self-contained HTML page.

The HTML page has no external resources: inline CSS and an inline SVG plot of each system's WER with its
confidence interval (and, when speakers are known, each speaker's WER per system), so it can be mailed or
attached to a CI run as a single file.
"""

import html
import json
import math
import os

from speechkit.config import atomic_write_text

__all__ = ["significance_marks", "render_markdown", "render_html", "render_benchmark", "write_report", "summary_lines",
           "MARKS"]

MARKS = {"paired_bootstrap": "*", "mapsswe": "†", "sign_test": "‡"}
"""Mark of each test in the tables: the difference is significant at 95% by that test."""

_PALETTE = ("#3b6ea8", "#d1793b", "#4f9a57", "#b5485b", "#7a5fa8", "#8a6d3b", "#3b9aa0", "#a03b8d")


def _pct(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return "inf" if math.isinf(x) else f"{x * 100:.2f}"


def _interval(pair):
    return f"[{_pct(pair[0])}, {_pct(pair[1])}]"


def significance_marks(report):
    """For each system, the marks of the tests by which it differs significantly from the best system.

    Returns:
        dict name -> str: ``"best"`` for the lowest WER, else the concatenated ``MARKS`` of the tests that
        find the difference significant (empty when none does, or when there is one system).
    """
    systems = report["systems"]
    if len(systems) < 2:
        return {s["name"]: "" for s in systems}
    best = min(systems, key=lambda s: s["wer"])["name"]
    marks = {s["name"]: "" for s in systems}
    marks[best] = "best"
    for comp in report["comparisons"]:
        if best not in (comp["a"], comp["b"]):
            continue
        other = comp["b"] if comp["a"] == best else comp["a"]
        marks[other] = "".join(mark for test, mark in MARKS.items() if comp[test]["significant"])
    return marks


def _rows_system(report):
    marks = significance_marks(report)
    header = ["system", "WER % [95% CI]", "CER % [95% CI]", "SER %", "Corr", "Sub", "Del", "Ins", "missing"]
    if len(report["systems"]) > 1:
        header.append("vs best")
    rows = []
    for s in report["systems"]:
        row = [s["name"], f"{_pct(s['wer'])} {_interval(s['wer_interval'])}",
               f"{_pct(s['cer'])} {_interval(s['cer_interval'])}", _pct(s["ser"]), str(s["correct"]),
               str(s["substitutions"]), str(s["deletions"]), str(s["insertions"]), str(s["missing"]["count"])]
        if len(report["systems"]) > 1:
            row.append(marks[s["name"]] or "n.s.")
        rows.append(row)
    return header, rows


def _rows_comparisons(report):
    header = ["A", "B", "WER A−B (points)", "95% CI", "P(A better)", "bootstrap p", "MAPSSWE p (segments)",
              "sign p (A/B/ties)", "significant at 95%"]
    rows = []
    for c in report["comparisons"]:
        boot, mp, sign = c["paired_bootstrap"], c["mapsswe"], c["sign_test"]
        sig = "".join(mark for test, mark in MARKS.items() if c[test]["significant"])
        rows.append([c["a"], c["b"], f"{c['wer_difference'] * 100:+.2f}",
                     f"[{boot['delta_interval'][0] * 100:+.2f}, {boot['delta_interval'][1] * 100:+.2f}]",
                     f"{boot['prob_a_better']:.3f}", f"{boot['p_value']:.4f}",
                     f"{mp['p_value']:.4f} ({mp['segments']})",
                     f"{sign['p_value']:.4f} ({sign['a_better']}/{sign['b_better']}/{sign['ties']})",
                     (sig + (" yes" if sig else "")) if sig else "no"])
    return header, rows


def _rows_speakers(report):
    systems = report["systems"]
    speakers = sorted({spk for s in systems for spk in (s["per_speaker"] or {})})
    header = ["speaker", "utts", "words"] + [f"{s['name']} WER %" for s in systems]
    rows = []
    for spk in speakers:
        first = next(s["per_speaker"][spk] for s in systems if spk in s["per_speaker"])
        rows.append([spk, str(first["utterances"]), str(first["words"])]
                    + [_pct(s["per_speaker"][spk]["wer"]) if spk in s["per_speaker"] else "" for s in systems])
    return header, rows


def _md_table(header, rows):
    esc = [[c.replace("|", "\\|") for c in row] for row in [header] + rows]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
    return "\n".join(lines)


def _html_table(header, rows):
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _normalizer_text(report):
    n = report["normalizer"]
    if not n.get("enabled", True):
        return "none (tokens compared exactly as written)"
    parts = [f"case {n['case']}", "punctuation removed" if n["punctuation"] else "punctuation kept",
             f"apostrophes {n['apostrophes']}", f"hyphens {n['hyphens']}", f"numbers {n['numbers']}"]
    if n.get("replacements"):
        parts.append(f"{len(n['replacements'])} replacement(s)")
    if n.get("remove_words"):
        parts.append("removed words: " + " ".join(n["remove_words"]))
    return ", ".join(parts)


def _sections(report, table):
    """(title, body) sections shared by Markdown and HTML; ``table(header, rows)`` renders tables."""
    sections = []
    intro = (f"Reference `{report['reference']}` ({report['reference_format']}): {report['utterances']} utterances, "
             f"{report['words']} words. Normaliser: {_normalizer_text(report)}. Missing utterances: "
             f"{'scored as empty' if report['missing_policy'] == 'empty' else 'an error'}. Intervals: "
             f"{report['confidence'] * 100:.0f}% percentile bootstrap over utterances ({report['bootstrap']} "
             "resamples). Word alignment with sclite's weights (sub 4, del 3, ins 3).")
    sections.append(("", intro))
    sections.append(("Systems", table(*_rows_system(report))))
    if report["comparisons"]:
        legend = ("Marks: " + ", ".join(f"{m} {t.replace('_', ' ')}" for t, m in MARKS.items())
                  + " finds the difference significant at 95%; \"vs best\" compares each system with the lowest WER.")
        sections.append(("Significance (matched pairs)", table(*_rows_comparisons(report)) + "\n\n" + legend))
    missing = [(s["name"], s["missing"]) for s in report["systems"] if s["missing"]["count"]]
    if missing:
        lines = []
        for name, m in missing:
            for key, label in (("missing_hypotheses", "no hypothesis"), ("extra_hypotheses", "no reference")):
                if m[key]:
                    shown = ", ".join(m[key][:20]) + (" ..." if len(m[key]) > 20 else "")
                    lines.append(f"- {name}: {len(m[key])} with {label}: {shown}")
        sections.append(("Missing utterances", "\n".join(lines)))
    checked = [s for s in report["systems"] if "sclite" in s]
    if checked:
        rows = []
        for s in checked:
            t = s["sclite"]["counts"]
            rows.append([s["name"], f"{s['substitutions']}/{s['deletions']}/{s['insertions']}",
                         f"{t['S']}/{t['D']}/{t['I']}", f"{_pct(s['wer'])} / {_pct(t['wer'])}",
                         "yes" if s["sclite"]["agree"]
                         else f"NO ({len(s['sclite']['mismatches'])}+ utterances differ)"])
        sections.append(("Cross-check with NIST sclite", table(
            ["system", "speechkit S/D/I", "sclite S/D/I", "WER % speechkit / sclite", "every utterance agrees"], rows)))
    if report["speakers"]:
        sections.append(("Per speaker", table(*_rows_speakers(report))))
    for s in report["systems"]:
        conf = s["confusions"]
        body = []
        if conf["substitutions"]:
            body.append(table(["ref", "hyp", "count"],
                              [[c["ref"], c["hyp"], str(c["count"])] for c in conf["substitutions"]]))
        dels = ", ".join(f"{c['ref']} ({c['count']})" for c in conf["deletions"])
        ins = ", ".join(f"{c['hyp']} ({c['count']})" for c in conf["insertions"])
        body.append(f"Deleted: {dels or 'none'}.\n\nInserted: {ins or 'none'}.")
        sections.append((f"Confusions: {s['name']}", "\n\n".join(body)))
    return sections


def render_markdown(report):
    """The report as Markdown (str)."""
    out = ["# Scoring report", ""]
    for title, body in _sections(report, _md_table):
        if title:
            out += [f"## {title}", ""]
        out += [body, ""]
    for s in report["systems"]:
        if not s["worst"]:
            continue
        out += [f"## Worst utterances: {s['name']}", ""]
        for w in s["worst"]:
            spk = f", speaker {w['speaker']}" if w["speaker"] is not None else ""
            out += [f"{w['id']}{spk}: {w['errors']} errors in {w['words']} words", "", "```", w["alignment"], "```", ""]
    return "\n".join(out).rstrip() + "\n"


def _svg_intervals(report):
    systems = report["systems"]
    width, row_h, left, right = 640, 26, 170, 30
    height = row_h * len(systems) + 40
    top = max([s["wer_interval"][1] for s in systems] + [s["wer"] for s in systems if math.isfinite(s["wer"])]
              + [1e-9])
    top = min(top, 10.0) * 1.1
    scale = (width - left - right) / top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             'aria-label="WER with confidence intervals">']
    for k, s in enumerate(systems):
        y = 20 + k * row_h
        color = _PALETTE[k % len(_PALETTE)]
        wer = min(s["wer"], top) if math.isfinite(s["wer"]) else top
        lo, hi = (min(v, top) for v in s["wer_interval"])
        parts.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" font-size="12">'
                     f'{html.escape(s["name"][:24])}</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{wer * scale:.1f}" height="{row_h - 8}" '
                     f'fill="{color}" opacity="0.75"/>')
        parts.append(f'<line x1="{left + lo * scale:.1f}" x2="{left + hi * scale:.1f}" y1="{y + 11}" y2="{y + 11}" '
                     'stroke="black" stroke-width="2"/>')
        for v in (lo, hi):
            parts.append(f'<line x1="{left + v * scale:.1f}" x2="{left + v * scale:.1f}" y1="{y + 6}" y2="{y + 16}" '
                         'stroke="black" stroke-width="2"/>')
        parts.append(f'<text x="{left + hi * scale + 6:.1f}" y="{y + 15}" font-size="11">{_pct(s["wer"])}%</text>')
    axis_y = 20 + len(systems) * row_h + 4
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{axis_y}" y2="{axis_y}" stroke="#666"/>')
    for t in range(6):
        v = top * t / 5
        parts.append(f'<text x="{left + v * scale:.1f}" y="{axis_y + 14}" font-size="10" text-anchor="middle">'
                     f'{v * 100:.0f}%</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_speakers(report):
    systems = report["systems"]
    speakers = sorted({spk for s in systems for spk in (s["per_speaker"] or {})})[:60]
    if not speakers:
        return ""
    width, height, left, bottom = 640, 220, 40, 60
    top = max([s["per_speaker"][spk]["wer"] for s in systems for spk in speakers
               if spk in s["per_speaker"] and math.isfinite(s["per_speaker"][spk]["wer"])] + [1e-9])
    top = min(top, 10.0) * 1.1
    step = (width - left - 10) / len(speakers)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             'aria-label="WER per speaker">']
    plot_h = height - bottom - 10
    for k, s in enumerate(systems):
        color = _PALETTE[k % len(_PALETTE)]
        for j, spk in enumerate(speakers):
            if spk not in s["per_speaker"]:
                continue
            v = min(s["per_speaker"][spk]["wer"], top)
            x = left + (j + 0.5) * step
            y = 10 + plot_h * (1 - v / top)
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}"><title>'
                         f'{html.escape(s["name"])} {html.escape(spk)}: {_pct(v)}%</title></circle>')
    for j, spk in enumerate(speakers):
        x = left + (j + 0.5) * step
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 14}" font-size="9" text-anchor="end" '
                     f'transform="rotate(-45 {x:.1f} {height - bottom + 14})">{html.escape(spk[:16])}</text>')
    for t in range(5):
        v = top * t / 4
        y = 10 + plot_h * (1 - v / top)
        parts.append(f'<text x="{left - 4}" y="{y + 3:.1f}" font-size="10" text-anchor="end">{v * 100:.0f}%</text>')
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
    parts.append("</svg>")
    legend = " ".join(f'<span style="color:{_PALETTE[k % len(_PALETTE)]}">&#9679;</span> {html.escape(s["name"])}'
                      for k, s in enumerate(systems))
    return "".join(parts) + f"<p>{legend}</p>"


def render_html(report):
    """The report as one self-contained HTML page (str): inline CSS and SVG, no scripts, no external files."""
    body = ["<h1>Scoring report</h1>"]
    for title, content in _sections(report, _html_table):
        if title:
            body.append(f"<h2>{html.escape(title)}</h2>")
        if content.startswith("<table"):
            first, _, rest = content.partition("</table>")
            body.append(first + "</table>")
            if rest.strip():
                body.append(f"<p>{html.escape(rest.strip())}</p>")
        else:
            body.append("".join(f"<p>{html.escape(p)}</p>" for p in content.split("\n\n")))
        if title == "Systems":
            body.append(_svg_intervals(report))
        if title == "Per speaker":
            body.append(_svg_speakers(report))
    for s in report["systems"]:
        if not s["worst"]:
            continue
        body.append(f"<h2>Worst utterances: {html.escape(s['name'])}</h2>")
        for w in s["worst"]:
            spk = f", speaker {w['speaker']}" if w["speaker"] is not None else ""
            body.append(f"<p>{html.escape(w['id'] + spk)}: {w['errors']} errors in {w['words']} words</p>"
                        f"<pre>{html.escape(w['alignment'])}</pre>")
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
             "text-align:left;font-size:13px}th{background:#f0f0f0}pre{background:#f7f7f7;padding:6px;"
             "overflow-x:auto}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Scoring report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(report, out_dir, *, stem="score"):
    """Atomically write ``STEM.json``, ``STEM.md`` and ``STEM.html`` into ``out_dir`` (created if needed).

    Returns:
        dict format -> path.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {ext: os.path.join(out_dir, f"{stem}.{ext}") for ext in ("json", "md", "html")}
    atomic_write_text(paths["json"], json.dumps(report, indent=2, ensure_ascii=False, allow_nan=True) + "\n")
    atomic_write_text(paths["md"], render_markdown(report))
    atomic_write_text(paths["html"], render_html(report))
    return paths


def summary_lines(report):
    """One line per system (and per significant comparison) for a terminal."""
    marks = significance_marks(report)
    lines = []
    for s in report["systems"]:
        mark = f"  {marks[s['name']]}" if marks[s["name"]] else ""
        lines.append(f"{s['name']}: WER {_pct(s['wer'])}% {_interval(s['wer_interval'])} "
                     f"(S {s['substitutions']} D {s['deletions']} I {s['insertions']} / N {report['words']}), "
                     f"CER {_pct(s['cer'])}%, missing {s['missing']['count']}{mark}")
    for c in report["comparisons"]:
        sig = "".join(mark for test, mark in MARKS.items() if c[test]["significant"])
        lines.append(f"{c['a']} vs {c['b']}: {c['wer_difference'] * 100:+.2f} points, bootstrap p "
                     f"{c['paired_bootstrap']['p_value']:.4f}, MAPSSWE p {c['mapsswe']['p_value']:.4f}, sign p "
                     f"{c['sign_test']['p_value']:.4f}" + (f"  significant {sig}" if sig else "  not significant"))
    return lines


def _benchmark_rows(report):
    marks = significance_marks(report)
    header = ["system", "WER % [95% CI]", "CER %", "Sub/Del/Ins", "RTF", "missing", "vs best"]
    rows = []
    for s in report["systems"]:
        rtf = "" if s.get("rtf") is None else f"{s['rtf']:.4f}" + (" (cached)" if s.get("cached") else "")
        rows.append([s["name"], f"{_pct(s['wer'])} {_interval(s['wer_interval'])}", _pct(s["cer"]),
                     f"{s['substitutions']}/{s['deletions']}/{s['insertions']}", rtf, str(s["missing"]["count"]),
                     marks[s["name"]] if len(report["systems"]) > 1 else ""])
    return header, rows


def render_benchmark(results, *, config_path=None):
    """Markdown and HTML (self-contained) for a benchmark: one table and one WER plot per test set.

    Args:
        results: list of dicts with ``test_set``, ``manifest`` and ``report`` (a ``score_sets`` report whose
            systems may carry ``rtf`` and ``cached``).
        config_path: optional str, named in the heading.

    Returns:
        (markdown str, html str).
    """
    title = "Benchmark" + (f": {config_path}" if config_path else "")
    legend = ("\"vs best\": " + ", ".join(f"{m} {t.replace('_', ' ')}" for t, m in MARKS.items())
              + " = significantly worse than the best system at 95%; n.s. = not significant. RTF = recognition wall "
              "time / audio time, as recorded when the hypotheses were made.")
    md = [f"# {title}", "", legend, ""]
    body = [f"<h1>{html.escape(title)}</h1><p>{html.escape(legend)}</p>"]
    for r in results:
        report = r["report"]
        header, rows = _benchmark_rows(report)
        for row in rows:
            row[-1] = row[-1] or ("n.s." if len(rows) > 1 else "")
        heading = f"{r['test_set']} ({report['utterances']} utterances, {report['words']} words, `{r['manifest']}`)"
        md += [f"## {heading}", "", _md_table(header, rows), ""]
        body.append(f"<h2>{html.escape(heading)}</h2>" + _html_table(header, rows) + _svg_intervals(report))
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
             "text-align:left;font-size:13px}th{background:#f0f0f0}")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + html.escape(title)
            + f"</title><style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return "\n".join(md).rstrip() + "\n", page
