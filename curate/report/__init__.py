"""``curate report``: one self-contained static HTML page of the index, for each round.

:func:`build_report` gathers the data (:mod:`curate.report.gather`, a few set-based
queries), draws the figures and thumbnails (:mod:`curate.report.figures`, reusing
:func:`curate.plot.embedding_map` for the 2-D map and :func:`curate.plot.plot_curves` for
accuracy vs budget) and assembles the page (:mod:`curate.report.html`, pure).

Sections: overview (batches, rejected files, labels per class, embedding sets, models,
training runs), the selection (latest by default: picks in rank order, the pool map),
novelty (score histogram and threshold, most novel images explained, in-distribution
examples), batch checks (verdicts, evidence, flag rates across batches), simulations,
training curves and a lineage footer.

Self-contained: inline CSS, every picture a ``data:`` URI (no sibling folder, no
server, no CDN), so the one file can be mailed or archived. Thumbnails are capped so
the page stays small whatever the index size: at most ``MAX_PICKS_SHOWN`` (200) picks
plus ``N_NOVEL`` (24) most novel and ``N_TYPICAL`` (12) in-distribution images, each a
JPEG of at most 96 px (0.6 KB for a 28-px image, a few KB for a photo): about 1 MB of
thumbnails at most. The map draws at most ``MAP_MAX_POINTS`` (50,000) points,
subsampled (seeded) above that. Only the shown images are read from disk. Measured on
50,000 images (``benchmarks/report_scale.py``): a 1.1 MB page in 6-8 s.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from curate.errors import CurateError
from curate.report.gather import MAX_RUN_CURVES, ReportData, gather

MAX_PICKS_SHOWN = 200
N_NOVEL = 24
N_TYPICAL = 12
MAP_MAX_POINTS = 50_000


@dataclass
class ReportResult:
    path: str
    bytes: int
    images_shown: int   # thumbnails on the page (an image may be shown twice)
    images_read: int    # distinct image files decoded for them
    figures: int
    seconds: float
    sections: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _check_out(out: Path) -> Path:
    if out.is_dir():
        raise CurateError(f"--out {out} is a folder; give a file name such as report.html")
    if out.suffix.lower() not in (".html", ".htm"):
        raise CurateError(f"the report is an HTML file; got {out.name} (use a .html name)")
    return out


def _figures(index, ws, data: ReportData, tmp: Path) -> dict:
    """Every picture of the page as data URIs (see :func:`curate.report.html.render`)."""
    from curate.plot import embedding_map, plot_curves
    from curate.report import figures as F

    pics: dict = {"sim_curves": {}, "train_curves": {}}
    shown: dict[int, str] = {}
    sel, nov = data.selection, data.novelty
    if sel is not None:
        for r in sel["picks"].head(MAX_PICKS_SHOWN).itertuples():
            shown[int(r.image_id)] = r.path
        if sel["embedding_set"]:
            try:
                m = embedding_map(index, ws, set_name=sel["embedding_set"], color="label",
                                  selection_id=sel["id"], scorer=nov["name"] if nov else None,
                                  out=tmp / "map.png", max_points=MAP_MAX_POINTS)
                pics["map"] = F.png_file_uri(m["path"])
                pics["map_note"] = (f"{m['points']} images of {m['embedding_set']} "
                                    f"({m['projection']}), coloured by label; {m['selected']} picks "
                                    "ringed" + (f", {m['flagged']} flagged by {nov['name']} crossed"
                                                if nov else "")
                                    + (" (a seeded subsample)" if m["points"] == MAP_MAX_POINTS else ""))
            except CurateError as exc:
                pics["map_note"] = f"no map: {exc}"
        else:
            pics["map_note"] = "no map: the selection's embedding set is gone"
    if nov is not None:
        for df in (nov["top"], nov["typical"]):
            shown.update({int(i): p for i, p in zip(df["image_id"], df["path"])})
        if len(nov["scores"]) or nov["cal_scores"] is not None:
            pics["histogram"] = F.score_histogram(
                nov["scores"]["score"].to_numpy(), nov["threshold"], nov["cal_scores"],
                title=f"{nov['name']}: scores" + (f" of batch {nov['batch']}" if nov["batch"] else ""))
    if len(data.flag_series):
        pics["flag_rates"] = F.flag_rate_plot(data.flag_series)
    for sim in data.simulations:
        sm = sim["summary"]
        if len(sm) and {"strategy", "budget", "accuracy", "accuracy_low", "accuracy_high"} <= set(sm):
            p = plot_curves(sm, tmp / f"sim-{sim['id']}.png", title=f"{sim['name']}")
            pics["sim_curves"][sim["id"]] = F.png_file_uri(p)
    runs = [r for r in data.overview["runs"] if r["metrics"]][-MAX_RUN_CURVES:]
    for r in runs:
        uri = F.training_curves(r["metrics"], title=f"{r['run']} ({r['method']})")
        if uri:
            pics["train_curves"][r["id"]] = uri
    pics["thumbs"] = F.thumbnails(shown)
    return pics


def build_report(index, ws, out: Path | str = "report.html", selection: int | str = "latest",
                 scorer: str | None = None, batch: str | None = None) -> ReportResult:
    """Write the report to ``out`` (an .html file, replaced atomically); returns a summary.

    ``selection``: an id or ``"latest"``; ``scorer``: the novelty scorer shown (default the
    latest); ``batch``: restrict the novelty scores and the batch-check table to one batch.
    Unknown names raise :class:`CurateError` before anything is written. Cost: O(N) rows
    read for N images, one 2-D projection, and one decode per shown thumbnail; a
    50k-image index renders in seconds (``benchmarks/report_scale.py``).
    """
    from curate.provenance import utcnow, versions
    from curate.report.html import render

    t0 = time.perf_counter()
    out = _check_out(Path(out))
    data = gather(index, selection, scorer, batch, N_NOVEL, N_TYPICAL)
    with tempfile.TemporaryDirectory(prefix="curate-report-") as tmp:
        pics = _figures(index, ws, data, Path(tmp))
    meta = {"generated": f"{utcnow():%Y-%m-%d %H:%M:%S} UTC", "workspace": str(ws.root),
            "index": getattr(index, "url", ""), "versions": versions(),
            "seconds": time.perf_counter() - t0}
    page = render(data, pics, meta, MAX_PICKS_SHOWN)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp_out.write_text(page, encoding="utf-8")
        os.replace(tmp_out, out)
    except OSError as exc:
        raise CurateError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    thumbs = pics["thumbs"]
    on_page = list(data.selection["picks"]["image_id"].head(MAX_PICKS_SHOWN)) if data.selection else []
    if data.novelty:
        on_page += list(data.novelty["top"]["image_id"]) + list(data.novelty["typical"]["image_id"])
    n_img = sum(1 for i in on_page if thumbs.get(int(i)))
    n_fig = sum(1 for k in ("map", "histogram", "flag_rates") if pics.get(k)) + \
        len(pics["sim_curves"]) + len(pics["train_curves"])
    sections = {"selection": data.selection["id"] if data.selection else None,
                "scorer": data.novelty["name"] if data.novelty else None,
                "batch_checks": int(len(data.checks)), "simulations": len(data.simulations),
                "training_curves": len(pics["train_curves"])}
    return ReportResult(str(out), len(page.encode("utf-8")), n_img,
                        sum(1 for v in thumbs.values() if v), n_fig,
                        round(time.perf_counter() - t0, 3), sections)


__all__ = ["build_report", "ReportResult", "MAX_PICKS_SHOWN", "N_NOVEL", "N_TYPICAL",
           "MAP_MAX_POINTS"]
