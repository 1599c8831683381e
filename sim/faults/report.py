"""Campaign reports: a printed table, CSV/Parquet export, and an HTML page with SVG charts
(AVF per structure with intervals, outcome breakdown, protection trade-off curve)."""

from __future__ import annotations

import csv
import html
import json

__all__ = ["table", "export_csv", "export_parquet", "html_report"]

COLORS = {"masked": "#9bc59d", "latent": "#d9d27a", "sdc": "#d9534f", "due": "#5b8bd9"}


def _pct(x):
    return f"{100 * x:.2f}%"


def table(s) -> str:
    conf = s["spec"]["confidence"]
    lines = [f"{'structure':<14}{'bits':>8}{'n':>7}{'masked':>8}{'latent':>8}{'SDC':>6}"
             f"{'DUE':>6}   {'AVF SDC':>9} [{int(conf * 100)}% Wilson]   {'AVF DUE':>9}"]
    for h, e in s["structures"].items():
        p, lo, hi = e["avf_sdc"]
        lines.append(f"{h:<14}{e['bits']:>8}{e['n']:>7}{e['masked']:>8}{e['latent_n']:>8}"
                     f"{e['sdc']:>6}{e['due']:>6}   {_pct(p):>9} [{_pct(lo)}, {_pct(hi)}]"
                     f"   {_pct(e['avf_due'][0]):>9}")
    o, m = s["overall"], s["safety"]
    lines.append(f"{'all (stratified)':<22}{s['done']:>7}{'':>34}{_pct(o['sdc'][0]):>9} "
                 f"[{_pct(o['sdc'][1])}, {_pct(o['sdc'][2])}]   {_pct(o['due'][0]):>9}")
    lines.append(f"top-1 prediction changed: {_pct(o['top1'][0])} of faults "
                 f"[{_pct(o['top1'][1])}, {_pct(o['top1'][2])}]")
    lines.append(f"FIT raw {m['fit_raw']:.3g} (at {s['fit_per_bit']:g} FIT/bit), FIT SDC "
                 f"{m['fit_sdc']:.3g} [{m['fit_sdc_lo']:.3g}, {m['fit_sdc_hi']:.3g}]; "
                 f"SPFM {_pct(m['spfm'])} [{_pct(m['spfm_hi'])}, {_pct(m['spfm_lo'])}], "
                 f"LFM {_pct(m['lfm'])}; meets: {'ASIL-' + m['asil'] if m['asil'] != 'QM' else 'no ASIL (QM)'}")
    return "\n".join(lines)


def export_csv(db, path):
    rows = db.joined()
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["id"])
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def export_parquet(db, path):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise RuntimeError("Parquet export needs pyarrow: pip install 'llmaccel[faults]'") \
            from None
    rows = db.joined()
    pq.write_table(pa.Table.from_pylist(rows), path)
    return len(rows)


# --- SVG charts --------------------------------------------------------------------------
def _svg_avf(s, w=760):
    items = list(s["structures"].items())
    bar_h, pad, left = 18, 4, 130
    h = len(items) * (2 * bar_h + pad) + 40
    top = max([e["avf_sdc"][2] for _, e in items] + [e["avf_due"][2] for _, e in items] + [0.01])
    scale = (w - left - 20) / top
    out = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg" '
           'font-family="sans-serif" font-size="11">']
    y = 10
    for name, e in items:
        out.append(f'<text x="{left - 6}" y="{y + bar_h + 3}" text-anchor="end">'
                   f'{html.escape(name)}</text>')
        for k, key in (("sdc", "avf_sdc"), ("due", "avf_due")):
            p, lo, hi = e[key]
            out.append(f'<rect x="{left}" y="{y}" width="{p * scale:.1f}" height="{bar_h - 2}" '
                       f'fill="{COLORS[k]}"><title>{name} AVF {k.upper()} {_pct(p)} '
                       f'[{_pct(lo)}, {_pct(hi)}]</title></rect>')
            cy = y + (bar_h - 2) / 2
            out.append(f'<line x1="{left + lo * scale:.1f}" x2="{left + hi * scale:.1f}" '
                       f'y1="{cy}" y2="{cy}" stroke="black"/>')
            for v in (lo, hi):
                out.append(f'<line x1="{left + v * scale:.1f}" x2="{left + v * scale:.1f}" '
                           f'y1="{cy - 4}" y2="{cy + 4}" stroke="black"/>')
            y += bar_h
        y += pad
    for i in range(5):
        v = top * i / 4
        out.append(f'<text x="{left + v * scale:.0f}" y="{h - 8}" text-anchor="middle">'
                   f'{_pct(v)}</text>')
    out.append("</svg>")
    return "".join(out)


def _svg_outcomes(s, w=760):
    items = list(s["structures"].items())
    bar_h, left = 16, 130
    h = len(items) * (bar_h + 4) + 30
    out = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg" '
           'font-family="sans-serif" font-size="11">']
    y = 5
    for name, e in items:
        n = max(e["n"], 1)
        parts = [("masked", e["masked"] - e["latent_n"]), ("latent", e["latent_n"]),
                 ("sdc", e["sdc"]), ("due", e["due"])]
        x = left
        out.append(f'<text x="{left - 6}" y="{y + bar_h - 3}" text-anchor="end">'
                   f'{html.escape(name)}</text>')
        for k, c in parts:
            wd = (w - left - 20) * c / n
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{wd:.1f}" height="{bar_h}" '
                       f'fill="{COLORS[k]}"><title>{name}: {k} {c}/{e["n"]}</title></rect>')
            x += wd
        y += bar_h + 4
    x = left
    for k in COLORS:
        out.append(f'<rect x="{x}" y="{h - 14}" width="10" height="10" fill="{COLORS[k]}"/>'
                   f'<text x="{x + 14}" y="{h - 5}">{k}</text>')
        x += 80
    out.append("</svg>")
    return "".join(out)


def _svg_tradeoff(points, target=None, w=760, h=320):
    """points: [{area_overhead, spfm, label, chosen}]"""
    left, bottom = 60, 40
    xs = [p["area_overhead"] for p in points] or [0]
    ys = [p["spfm"] for p in points] or [1]
    xmax = max(xs) * 1.1 or 1
    ymin = min(min(ys), target or 1) - 0.01
    sx = lambda v: left + (w - left - 20) * v / xmax          # noqa: E731
    sy = lambda v: (h - bottom) - (h - bottom - 10) * (v - ymin) / (1 - ymin)   # noqa: E731
    out = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg" '
           'font-family="sans-serif" font-size="11">',
           f'<line x1="{left}" y1="{h - bottom}" x2="{w - 10}" y2="{h - bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="10" x2="{left}" y2="{h - bottom}" stroke="black"/>',
           f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">area overhead</text>',
           f'<text x="12" y="{h / 2}" transform="rotate(-90 12 {h / 2})" '
           'text-anchor="middle">SPFM</text>']
    if target:
        out.append(f'<line x1="{left}" x2="{w - 10}" y1="{sy(target):.1f}" y2="{sy(target):.1f}" '
                   f'stroke="#d9534f" stroke-dasharray="4"/><text x="{w - 12}" '
                   f'y="{sy(target) - 4:.1f}" text-anchor="end">target {_pct(target)}</text>')
    front = sorted(points, key=lambda p: p["area_overhead"])
    best, path = -1, []
    for p in front:
        if p["spfm"] > best:
            best = p["spfm"]
            path.append(f"{sx(p['area_overhead']):.1f},{sy(p['spfm']):.1f}")
    out.append(f'<polyline points="{" ".join(path)}" fill="none" stroke="#555"/>')
    for p in points:
        c = "#d9534f" if p.get("chosen") else ("#5b8bd9" if p.get("measured") else "#888")
        out.append(f'<circle cx="{sx(p["area_overhead"]):.1f}" cy="{sy(p["spfm"]):.1f}" '
                   f'r="{5 if p.get("chosen") or p.get("measured") else 3}" fill="{c}">'
                   f'<title>{html.escape(p["label"])}: +{_pct(p["area_overhead"])} area, '
                   f'SPFM {_pct(p["spfm"])}</title></circle>')
    for i in range(5):
        v = xmax * i / 4
        out.append(f'<text x="{sx(v):.0f}" y="{h - bottom + 14}" text-anchor="middle">'
                   f'{_pct(v)}</text>')
        v = ymin + (1 - ymin) * i / 4
        out.append(f'<text x="{left - 4}" y="{sy(v) + 4:.0f}" text-anchor="end">{_pct(v)}</text>')
    out.append("</svg>")
    return "".join(out)


def html_report(s, plan=None) -> str:
    """``s``: a campaign summary; ``plan``: the protection planner's result (optional)."""
    spec = s["spec"]
    m = s["safety"]
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>llmaccel fault campaign"
             "</title><style>body{font-family:sans-serif;max-width:900px;margin:2em auto}"
             "pre{background:#f4f4f4;padding:1em;overflow-x:auto}</style></head><body>",
             f"<h1>Fault campaign: {html.escape(spec['workload'])} on "
             f"{html.escape(spec['config'])}"
             + (f" + {html.escape(', '.join(spec['protect']))}" if spec["protect"] else "")
             + "</h1>",
             f"<p>{s['done']} of {s['planned']} injections; fault models "
             f"{html.escape(', '.join(spec['models']))}; margin {spec['margin']}, confidence "
             f"{spec['confidence']}; seed {spec['seed']}. SPFM <b>{_pct(m['spfm'])}</b>, LFM "
             f"<b>{_pct(m['lfm'])}</b>, FIT SDC {m['fit_sdc']:.3g} at {s['fit_per_bit']:g} "
             f"FIT/bit: {'meets ASIL-' + m['asil'] if m['asil'] != 'QM' else 'meets no ASIL'}."
             "</p>",
             "<h2>AVF per structure (SDC red, DUE blue; Wilson intervals)</h2>", _svg_avf(s),
             "<h2>Outcomes per structure</h2>", _svg_outcomes(s)]
    if plan:
        parts += [f"<h2>Protection trade-off (target SPFM {_pct(plan['target_spfm'])}, "
                  f"ASIL-{plan['asil']})</h2>",
                  _svg_tradeoff(plan["points"], plan["target_spfm"]),
                  f"<p>Chosen: {html.escape(', '.join(plan['chosen']) or 'none')} "
                  f"(+{_pct(plan['chosen_area_overhead'])} area, predicted SPFM "
                  f"{_pct(plan['chosen_spfm'])}).</p>"]
    parts += ["<h2>Table</h2><pre>", html.escape(table(s)), "</pre>",
              "<details><summary>summary JSON</summary><pre>",
              html.escape(json.dumps({k: v for k, v in s.items() if k != "info"}, indent=1,
                                     default=str)), "</pre></details></body></html>"]
    return "".join(parts)
