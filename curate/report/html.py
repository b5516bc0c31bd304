"""Pure HTML assembly of ``curate report``: gathered data and picture URIs in, one string out.

No file, database or network access here. Every value is escaped; pictures are
``data:`` URIs (no external resource: the page opens from disk, offline, as one file).
Section ids: ``overview``, ``selection``, ``novelty``, ``batch-checks``, ``simulations``,
``training``, ``lineage``. A section with nothing to show says so in one line.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

SECTIONS = (("overview", "Overview"), ("selection", "Selection"), ("novelty", "Novelty"),
            ("batch-checks", "Batch checks"), ("simulations", "Simulations"),
            ("training", "Training runs"), ("lineage", "Lineage"))

CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#c8cfda;font-size:13px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #dde1e7;padding:6px 24px;z-index:2}
nav a{margin-right:16px;color:#2d5fa8;text-decoration:none;font-weight:600}
main{padding:8px 24px 24px;max-width:1400px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:12px 18px;margin:16px 0}
h2{font-size:18px;margin:4px 0 10px}h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:12.5px}
th,td{border-bottom:1px solid #e6e9ee;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.shifted td{background:#fde2e1}tr.shifted td.verdict{color:#b42318;font-weight:700}
.empty{color:#6b7380;font-style:italic}.note{color:#4b5361;font-size:12.5px}
.grid{display:flex;flex-wrap:wrap;gap:8px}
.card{width:128px;border:1px solid #e1e4ea;border-radius:6px;padding:4px;background:#fafbfc;font-size:11px}
.card img,.card .missing{display:block;width:96px;height:96px;margin:0 auto 3px;object-fit:contain;
  image-rendering:pixelated;background:#eef0f3}
.card .missing{line-height:96px;text-align:center;color:#999}
.card.flagged{border-color:#d92d20}.card b{font-size:11.5px}
.card .why{color:#4b5361;font-size:10.5px}
img.fig{max-width:100%;height:auto;border:1px solid #eef0f3}
.row{display:flex;flex-wrap:wrap;gap:8px 36px;align-items:flex-start}
.figs{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
details{margin:6px 0}summary{cursor:pointer;color:#2d5fa8}
pre{background:#f3f4f6;padding:8px;font-size:11.5px;overflow:auto;max-height:300px}
footer{padding:0 24px 24px}
"""


# ----------------------------------------------------------------------- formatting
def fmt(v: Any) -> str:
    """A cell value as escaped text: floats to 4 significant digits, None/NaN empty."""
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.4g}"
    if isinstance(v, (dt.datetime, pd.Timestamp)):
        return html.escape(v.strftime("%Y-%m-%d %H:%M"))
    try:
        if pd.isna(v):
            return ""
    except (TypeError, ValueError):
        pass
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return fmt(v.item())
    return html.escape(str(v))


def text(v: Any) -> str:
    """``v`` as plain (unescaped) text; None and NaN give ""."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def seconds(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    v = float(v)
    return f"{v:.1f} s" if v < 120 else f"{int(v // 60)} min {int(v % 60)} s"


def empty(msg: str) -> str:
    return f'<p class="empty">{html.escape(msg)}</p>'


def note(msg: str) -> str:
    return f'<p class="note">{html.escape(msg)}</p>'


def table(df: pd.DataFrame, columns: Iterable[str] | None = None,
          row_class: Callable[[Any], str] | None = None,
          cell: dict[str, Callable[[Any], str]] | None = None) -> str:
    """``df`` as an HTML table of ``columns`` (default all); ``row_class(row)`` gives a
    CSS class per row; ``cell[col](value)`` formats (and must escape) that column."""
    cols = list(columns) if columns is not None else list(df.columns)
    cell = cell or {}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in df.itertuples(index=False):
        d = dict(zip(df.columns, r))
        cls = row_class(d) if row_class else ""
        tds = []
        for c in cols:
            v = d.get(c)
            num = isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))
            tcls = ' class="verdict"' if c == "verdict" else (' class="num"' if num else "")
            tds.append(f"<td{tcls}>{cell[c](v) if c in cell else fmt(v)}</td>")
        tr = f'<tr class="{html.escape(cls)}">' if cls else "<tr>"
        body.append(f"{tr}{''.join(tds)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure(uri: str | None, alt: str) -> str:
    return f'<img class="fig" src="{uri}" alt="{html.escape(alt)}">' if uri else ""


def card(uri: str | None, title: str, lines: list[str], flagged: bool = False) -> str:
    """One thumbnail with a bold ``title`` and plain-text ``lines`` (escaped here)."""
    pic = (f'<img src="{uri}" alt="{html.escape(title)}">' if uri
           else '<div class="missing">no file</div>')
    text = "<br>".join(html.escape(x) for x in lines if x)
    return (f'<div class="card{" flagged" if flagged else ""}">{pic}<b>{html.escape(title)}</b>'
            f"<br>{text}</div>")


def details(summary: str, obj: Any) -> str:
    body = json.dumps(obj, indent=1, default=str, sort_keys=True)
    return f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(body)}</pre></details>"


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>{body}</section>'


# ------------------------------------------------------------------------- sections
def _block(title: str, body: str) -> str:
    return f"<div><h3>{html.escape(title)}</h3>{body}</div>"


def render_overview(ov: dict) -> str:
    b, rr, lab = ov["batches"], ov["rejected_reasons"], ov["labels"]
    n_rej = int(rr["files"].sum()) if len(rr) else 0
    rej = empty("No rejected files.")
    if len(rr):
        ex = ov["rejected_examples"]
        rej = table(rr) + (f"<details><summary>latest {len(ex)} rejected files</summary>"
                           f"{table(ex)}</details>")
    labs = empty("No labels yet (ingest with --labels, or pull from Label Studio).")
    if len(lab):
        labs = table(lab)
        other = {k: v for k, v in ov["label_status"].items() if k != "labeled"}
        if other:
            labs += note("Label rows not counted as labels: "
                         + ", ".join(f"{k} {v}" for k, v in sorted(other.items())))
    sets, models, runs = ov["embedding_sets"], ov["models"], ov["runs"]
    row1 = [_block(f"Batches ({len(b)}; {ov['n_ok']} ok images, {ov['n_labelled']} labelled)",
                   table(b) if len(b) else empty("No batch ingested yet (run `curate ingest`).")),
            _block(f"Labels per class ({len(lab)} classes)", labs),
            _block(f"Rejected files ({n_rej})", rej)]
    row2 = [_block(f"Embedding sets ({len(sets)})",
                   table(sets) if len(sets) else empty("No embeddings yet (run `curate embed`).")),
            _block(f"Models ({len(models)})", table(models) if len(models) else empty("No models yet."))]
    runs_html = empty("No training runs (curate train).")
    if runs:
        runs_html = table(pd.DataFrame(runs), ["id", "run", "method", "status", "key parameters",
                                               "epochs done", "wall time", "last loss",
                                               "last kNN acc", "started"],
                          cell={"wall time": seconds})
    body = (f'<div class="row">{"".join(row1)}</div><div class="row">{"".join(row2)}</div>'
            + _block(f"Training runs ({len(runs)})", runs_html))
    return section("overview", "Overview", body)


def render_selection(sel: dict | None, thumbs: dict, map_uri: str | None, map_note: str,
                     max_shown: int) -> str:
    if sel is None:
        return section("selection", "Selection", empty("No selection yet (run `curate select`)."))
    p, picks = sel["params"], sel["picks"]
    head = (f"Selection {sel['id']}: {sel['strategy']}, budget {sel['budget']}, "
            f"{len(picks)} picks over {sel['embedding_set'] or '?'} "
            f"(pool {p.get('pool_size', '?')}, {p.get('n_centres', '?')} seeds/centres, "
            f"metric {p.get('metric', '?')}), {fmt(sel['created'])}")
    out = [f"<p><b>{html.escape(head)}</b></p>"]
    if p.get("score"):
        out.append(note(f"score: {p['score']}"))
    info = p.get("info") or {}
    if info.get("chose"):
        out.append(note(f"{sel['strategy']} chose {info['chose']}"))
    if info.get("fallback"):
        out.append(note(f"fallback: {info['fallback']}"))
    if sel["missing"]:
        out.append(note(f"{len(sel['missing'])} picked files no longer exist (left out, marked "
                        "rejected)."))
    if len(picks) > max_shown:
        out.append(note(f"Showing the first {max_shown} of {len(picks)} picks (thumbnail cap)."))
    cards = []
    for r in picks.head(max_shown).itertuples():
        sc = f"score {fmt(r.score)}" if fmt(r.score) else ""   # random picks have none
        cards.append(card(thumbs.get(int(r.image_id)), f"#{r.rank} · id {r.image_id}",
                          [sc, f"label {text(r.label)}" if text(r.label) else "unlabelled",
                           f"batch {text(r.batch)}" if text(r.batch) else ""]))
    out.append(f'<div class="grid">{"".join(cards)}</div>' if cards else empty("This selection has no picks."))
    out.append("<h3>The pool in 2-D, picks ringed</h3>")
    out.append(figure(map_uri, "embedding map") if map_uri else empty(map_note or "No map."))
    if map_uri and map_note:
        out.append(note(map_note))
    listed = sel["listed"]
    if len(listed) > 1:
        out.append(f"<details><summary>all selections ({len(listed)} latest)</summary>"
                   f"{table(listed)}</details>")
    return section("selection", "Selection", "".join(out))


def render_novelty(nov: dict | None, thumbs: dict, hist_uri: str | None) -> str:
    if nov is None:
        return section("novelty", "Novelty", empty("No novelty scorer yet (run `curate fit-scorer`)."))
    cal = nov["calibration"]
    sc = nov["scores"]
    nflag = int(sc["flagged"].sum()) if len(sc) else 0
    out = [f"<p><b>{html.escape(nov['name'])}</b> ({html.escape(nov['kind'])} on "
           f"{html.escape(nov['embedding_set'])}): threshold {fmt(nov['threshold'])} at alpha "
           f"{fmt(nov['alpha'])} (guaranteed FPR {fmt(cal.get('guaranteed_fpr'))}; "
           f"{cal.get('n_ref', '?')} reference, {cal.get('n_cal', '?')} calibration images)"
           + (f"; batch {html.escape(nov['batch'])} only" if nov["batch"] else "") + "</p>"]
    if not len(sc):
        out.append(empty(f"No stored scores for this scorer; run `curate score --scorer {nov['name']}`."))
    else:
        out.append(note(f"{len(sc)} images scored, {nflag} flagged ({100 * nflag / len(sc):.1f}%; "
                        f"expected at most {100 * float(nov['alpha']):.1f}% in distribution)."))
    out.append(figure(hist_uri, "novelty score histogram") if hist_uri else "")
    if nov.get("explain_error"):
        out.append(note(f"explanations unavailable: {nov['explain_error']}"))
    if len(nov["top"]):
        out.append(f"<h3>Most novel ({len(nov['top'])})</h3>")
        out.append('<div class="grid">' + "".join(
            card(thumbs.get(int(r.image_id)), f"id {r.image_id}",
                 [f"score {r.score:.4g}", f"p = {r.p_value:.3g}" + (" · flagged" if r.flagged else ""),
                  f"label {text(r.label)}" if text(r.label) else "",
                  f"batch {text(r.batch)}" if text(r.batch) else "", text(r.explain)],
                 flagged=bool(r.flagged))
            for r in nov["top"].itertuples()) + "</div>")
    if len(nov["typical"]):
        out.append(f"<h3>In-distribution examples ({len(nov['typical'])} unflagged, drawn at random)</h3>")
        out.append('<div class="grid">' + "".join(
            card(thumbs.get(int(r.image_id)), f"id {r.image_id}",
                 [f"score {r.score:.4g}", f"p = {r.p_value:.3g}",
                  f"label {text(r.label)}" if text(r.label) else "",
                  f"batch {text(r.batch)}" if text(r.batch) else ""])
            for r in nov["typical"].itertuples()) + "</div>")
    return section("novelty", "Novelty", "".join(out))


def _pct(v) -> str:
    return "" if v is None or v != v else f"{100 * float(v):.1f}%"


def _p(v) -> str:
    return "" if v is None or v != v else f"{float(v):.3g}"


def render_checks(checks: pd.DataFrame, series_uri: str | None) -> str:
    if not len(checks):
        return section("batch-checks", "Batch checks",
                       empty("No batch checks yet (run `curate check-batch --batch NAME`)."))
    n_sh = int((checks["verdict"] == "shifted").sum())
    out = [note(f"{len(checks)} checks, {n_sh} shifted (highlighted). Flag test: beta-binomial on "
                "the flag count; MMD: permutation test; verdict: Benjamini-Hochberg over the "
                "batches checked with the same scorer.")]
    cols = ["check", "batch", "scorer", "verdict", "flagged", "expected", "n_flagged", "n_batch",
            "flag_p", "mmd_p", "mmd_effect", "combined_p", "bh_p", "bh_family", "checked"]
    out.append(table(checks, cols, row_class=lambda r: "shifted" if r["verdict"] == "shifted" else "",
                     cell={"flagged": _pct, "expected": _pct, "flag_p": _p, "mmd_p": _p,
                           "combined_p": _p, "bh_p": _p}))
    ev = checks[checks["evidence"].astype(bool)]
    if len(ev):
        out.append("<details><summary>evidence per check</summary><ul>" + "".join(
            f"<li>check {int(r.check)} ({html.escape(str(r.batch))}): {html.escape(str(r.evidence))}</li>"
            for r in ev.itertuples()) + "</ul></details>")
    out.append("<h3>Flag rate across batches</h3>")
    out.append(figure(series_uri, "flag rates") if series_uri else empty("No flag rates stored."))
    return section("batch-checks", "Batch checks", "".join(out))


def render_simulations(sims: list, curves: dict) -> str:
    if not sims:
        return section("simulations", "Simulations", empty("No simulations (run `curate simulate`)."))
    out = []
    for sim in sims:
        p = sim["params"]
        out.append(f"<h3>{html.escape(sim['name'])} (id {sim['id']})</h3>")
        out.append(note(f"{p.get('probe')} probe, {p.get('rounds')}, pool {p.get('pool_size')}, test "
                        f"{p.get('test_size')}, {p.get('seeds')} seeds, set {p.get('embedding_set')}, "
                        f"{seconds(sim['wall_seconds'])}"))
        out.append(figure(curves.get(sim["id"]), "accuracy vs budget"))
        sm = sim["summary"]
        if len(sm):
            cols = [c for c in ("strategy", "budget", "n_seeds", "accuracy", "diff", "diff_low",
                                "diff_high") if c in sm.columns]
            out.append(f"<details><summary>accuracy and paired difference to random</summary>"
                       f"{table(sm, cols)}</details>")
    return section("simulations", "Simulations", "".join(out))


def render_training(runs: list, curves: dict) -> str:
    shown = [r for r in runs if curves.get(r["id"])]
    if not shown:
        return section("training", "Training runs", empty("No training curves (no run recorded "
                                                           "per-epoch metrics)."))
    figs = "".join(figure(curves[r["id"]], f"training curves of {r['run']}") for r in shown)
    return section("training", "Training runs",
                   note("Per-epoch metrics stored with each run (loss; kNN accuracy with "
                        "--knn-monitor).") + f'<div class="figs">{figs}</div>')


def render_lineage(meta: dict, data) -> str:
    rows = [("generated", meta.get("generated")), ("workspace", meta.get("workspace")),
            ("index", meta.get("index")), ("options", json.dumps(data.options)),
            ("render time", seconds(meta.get("seconds"))), ("versions", ", ".join(
                f"{k} {v}" for k, v in (meta.get("versions") or {}).items()))]
    body = "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{fmt(v)}</td></tr>"
                               for k, v in rows) + "</table>"
    if data.selection:
        s = data.selection
        body += details(f"selection {s['id']}: parameters and versions",
                        {"params": s["params"], "versions": s["versions"],
                         "embedding_set": s["embedding_set"], "embedding_set_id": s["embedding_set_id"]})
    if data.novelty:
        n = data.novelty
        body += details(f"scorer {n['name']} (id {n['id']}): parameters, calibration, versions",
                        {"params": n["params"], "calibration": n["calibration"],
                         "versions": n["versions"], "alpha": n["alpha"], "threshold": n["threshold"]})
    for r in data.overview["runs"]:
        body += details(f"training run {r['run']} (id {r['id']})",
                        {"params": r["params"], "versions": r["versions"]})
    for sim in data.simulations:
        body += details(f"simulation {sim['name']} (id {sim['id']})",
                        {"params": sim["params"], "versions": sim["versions"]})
    return section("lineage", "Lineage", body)


def render(data, pics: dict, meta: dict, max_picks: int) -> str:
    """The whole page. ``pics``: ``thumbs`` {image id: URI}, ``map`` / ``map_note``,
    ``histogram``, ``flag_rates``, ``sim_curves`` {sim id: URI}, ``train_curves``
    {run id: URI}. ``meta``: generated, workspace, index, versions, seconds."""
    thumbs = pics.get("thumbs", {})
    nav = "".join(f'<a href="#{sid}">{html.escape(t)}</a>' for sid, t in SECTIONS)
    ov = data.overview
    nb = len(ov["batches"])
    sub = (f"{ov['n_ok']} ok images in {nb} batch{'es' if nb != 1 else ''} · "
           f"generated {meta.get('generated', '')}")
    parts = [render_overview(ov),
             render_selection(data.selection, thumbs, pics.get("map"), pics.get("map_note", ""),
                              max_picks),
             render_novelty(data.novelty, thumbs, pics.get("histogram")),
             render_checks(data.checks, pics.get("flag_rates")),
             render_simulations(data.simulations, pics.get("sim_curves", {})),
             render_training(ov["runs"], pics.get("train_curves", {}))]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>curate report</title><style>{CSS}</style></head><body>"
            f"<header><h1>curate report</h1><p>{html.escape(sub)}</p></header><nav>{nav}</nav>"
            f"<main>{''.join(parts)}</main><footer>{render_lineage(meta, data)}</footer>"
            "</body></html>\n")
