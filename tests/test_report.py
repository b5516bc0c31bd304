"""curate report: a real report on sklearn's digits, parsed, opened in headless Chromium.

The digits are written as PNGs in three batches (two in distribution, one inverted and
shifted, plus a broken file), ingested, embedded with pixels-pca, a quick SimCLR run is
trained, then select, fit-scorer, score, check-batch and simulate run; the report of
that index is parsed (every section present, every picture decodes) and screenshotted.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import need
from curate.report import N_NOVEL, N_TYPICAL, build_report
from curate.report.html import SECTIONS

SECTION_IDS = [sid for sid, _ in SECTIONS]


class Page(HTMLParser):
    """Section ids, <img> sources, card titles, row classes and links of a report."""

    def __init__(self, text: str):
        super().__init__()
        self.sections, self.imgs, self.links, self.row_classes = [], [], [], []
        self.cards: dict[str, list[str]] = {}
        self.empty: dict[str, int] = {}
        self._section, self._in_b = None, False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self._section = a.get("id")
            self.sections.append(self._section)
        elif tag == "img":
            self.imgs.append((self._section, a.get("src", "")))
        elif tag in ("a", "link", "script", "iframe"):
            self.links.append((tag, a.get("href") or a.get("src") or ""))
        elif tag == "tr" and self._section == "batch-checks":
            self.row_classes.append(a.get("class", ""))
        elif tag == "p" and a.get("class") == "empty":
            self.empty[self._section] = self.empty.get(self._section, 0) + 1
        elif tag == "b":
            self._in_b = True

    def handle_endtag(self, tag):
        if tag == "b":
            self._in_b = False

    def handle_data(self, data):
        if self._in_b and (data.startswith("#") or data.startswith("id ")):
            self.cards.setdefault(self._section, []).append(data)


def decode_img(src: str) -> Image.Image:
    m = re.fullmatch(r"data:image/(jpeg|png);base64,([A-Za-z0-9+/=]+)", src)
    assert m, f"not an inline base64 image: {src[:60]}"
    im = Image.open(io.BytesIO(base64.b64decode(m.group(2), validate=True)))
    im.load()
    assert im.format == m.group(1).upper() and im.width > 0 and im.height > 0
    return im


@pytest.fixture(scope="module")
def digits_ws(tmp_path_factory):
    """A workspace with every kind of stored result; returns (ws, info)."""
    from curate.datasets import load_digits, write_pngs
    from curate.embed import embed
    from curate.ingest import ingest
    from curate.novelty.batch_check import check_batch
    from curate.novelty.scoring import score_images
    from curate.novelty.stored import fit_scorer
    from curate.select.selection import select_images
    from curate.simulate import simulate
    from curate.trainers.run import quick_demo_train
    from curate.workspace import init_workspace

    root = tmp_path_factory.mktemp("report")
    X, y = load_digits()
    perm = np.random.default_rng(0).permutation(len(X))
    X, y = X[perm], y[perm]
    write_pngs(X[:500], y[:500], root / "r1", upscale=4)
    write_pngs(X[500:800], y[500:800], root / "r2", upscale=4)
    write_pngs(255 - X[800:860], y[800:860], root / "odd", upscale=4)
    (root / "odd" / "0" / "broken.png").write_bytes(b"not a png")
    ws = init_workspace(root / "ws")
    index = ws.open_index()
    ingest(index, [root / "r1"], batch="round-1", labels="folders")
    ingest(index, [root / "r2"], batch="round-2")
    ingest(index, [root / "odd"], batch="odd")
    run = quick_demo_train(index, ws, seconds=3, epochs=2)
    rep = embed(index, ws, encoder="pixels-pca", device="cpu")
    sel = select_images(index, 40, embeddings=rep.embedding_set, seed=0)
    fit = fit_scorer(index, ws, "knn", k=5, reference_batches=["round-1"], alpha=0.05)
    score_images(index, fit.name)
    verdicts = {b: check_batch(index, b, fit.name, permutations=200).verdict
                for b in ("round-2", "odd")}
    sim = simulate(index, ["random", "kcenter"], [10, 20], seeds=2)
    index.close()
    return ws, {"selection": sel, "scorer": fit.name, "verdicts": verdicts, "run": run,
                "simulation": sim.name, "root": root}


@pytest.fixture(scope="module")
def digits_report(digits_ws):
    ws, info = digits_ws
    index = ws.open_index()
    try:
        res = build_report(index, ws, out=info["root"] / "out" / "report.html")
    finally:
        index.close()
    return res, Path(res.path).read_text(encoding="utf-8"), info


def test_report_has_every_section_and_every_image_decodes(digits_report):
    res, text, info = digits_report
    page = Page(text)
    assert page.sections == SECTION_IDS
    assert len(page.imgs) == res.images_shown + res.figures
    for _, src in page.imgs:
        decode_img(src)
    # self-contained: no external resource, only in-page links
    assert all(tag == "a" and href.startswith("#") for tag, href in page.links), page.links
    assert "http://" not in text and "https://" not in text
    # selection: every pick, in rank order, with its thumbnail
    picks = info["selection"].picks
    titles = page.cards["selection"]
    assert titles == [f"#{r} · id {i}" for r, i in zip(picks["rank"], picks["image_id"])]
    sel_imgs = [s for sec, s in page.imgs if sec == "selection"]
    thumbs = [decode_img(s) for s in sel_imgs if s.startswith("data:image/jpeg")]
    assert len(thumbs) == 40 and all(max(im.size) <= 96 for im in thumbs)
    assert sum(s.startswith("data:image/png") for s in sel_imgs) == 1  # the pool map
    # novelty: most novel + in-distribution thumbnails, histogram, explanations
    assert len(page.cards["novelty"]) == N_NOVEL + N_TYPICAL
    assert "above " in text and "nearest reference image" in text
    assert f"{info['scorer']}" in text and "guaranteed FPR" in text
    # batch checks: the inverted batch is shifted and highlighted, the other is not
    assert info["verdicts"] == {"round-2": "no shift", "odd": "shifted"}
    assert page.row_classes.count("shifted") == 1
    assert re.search(r'<tr class="shifted">(?:(?!</tr>).)*>odd<', text)
    # overview: batches, the rejected file and its reason, labels per class, run + wall time
    assert ">round-1<" in text and ">odd<" in text and "not an image" in text
    assert "Labels per class (10 classes)" in text
    assert info["run"] in text and "simclr" in text
    # simulations and training curves drawn; nothing says "nothing to show" here
    assert res.sections["simulations"] == 1 and res.sections["training_curves"] == 1
    assert info["simulation"] in text
    assert not page.empty.get("selection") and not page.empty.get("novelty")
    assert not page.empty.get("simulations") and not page.empty.get("training")
    assert res.bytes == len(text.encode()) and res.bytes < 2_000_000


def test_report_batch_filter_and_thumbnail_cap(digits_ws, monkeypatch):
    import curate.report as report

    ws, info = digits_ws
    monkeypatch.setattr(report, "MAX_PICKS_SHOWN", 10)
    index = ws.open_index()
    try:
        res = build_report(index, ws, out=info["root"] / "cap.html", batch="odd",
                           selection=info["selection"].selection_id, scorer=info["scorer"])
    finally:
        index.close()
    text = Path(res.path).read_text()
    page = Page(text)
    assert len(page.cards["selection"]) == 10 and "Showing the first 10 of 40 picks" in text
    assert page.row_classes == ["", "shifted"]  # header row, then the one check of batch odd
    assert "batch odd only" in text
    # every most-novel / typical image shown comes from batch odd
    cards = re.findall(r'<div class="card[^"]*">.*?</div>', text.split('id="novelty"')[1]
                       .split("</section>")[0])
    assert cards and all("batch odd" in c for c in cards)


def test_report_of_an_empty_workspace_says_so(tmp_path):
    from curate.workspace import init_workspace

    ws = init_workspace(tmp_path / "ws")
    index = ws.open_index()
    try:
        res = build_report(index, ws, out=tmp_path / "r.html")
    finally:
        index.close()
    page = Page(Path(res.path).read_text())
    assert page.sections == SECTION_IDS and page.imgs == []
    for sid in ("selection", "novelty", "batch-checks", "simulations", "training"):
        assert page.empty.get(sid) == 1, sid
    assert res.images_shown == 0 and res.figures == 0
    from curate.errors import CurateError

    index = ws.open_index()
    try:
        with pytest.raises(CurateError, match="is a folder"):
            build_report(index, ws, out=tmp_path)
    finally:
        index.close()


def test_report_on_both_backends_with_a_missing_file(ws, tmp_path):
    """The report's queries on SQLite and PostgreSQL; a picked file deleted since is named."""
    from helpers import write_class_images

    from curate.embed import embed
    from curate.ingest import ingest
    from curate.novelty.batch_check import check_batch
    from curate.novelty.stored import fit_scorer
    from curate.select.selection import select_images

    write_class_images(tmp_path / "a", classes=3, per_class=30)
    write_class_images(tmp_path / "b", classes=[3, 4], per_class=20, seed=1)
    index = ws.open_index()
    try:
        ingest(index, [tmp_path / "a"], batch="a", labels="folders")
        ingest(index, [tmp_path / "b"], batch="b")
        embed(index, ws, encoder="pixels-pca", device="cpu")
        sel = select_images(index, 6, strategy="kcenter")
        fit = fit_scorer(index, ws, "mahalanobis", reference_batches=["a"], alpha=0.1,
                         calibration_fraction=0.2)
        assert check_batch(index, "b", fit.name, permutations=100).shifted
        Path(sel.picks["path"].iloc[0]).unlink()
        res = build_report(index, ws, out=tmp_path / "r.html")
    finally:
        index.close()
    text = Path(res.path).read_text()
    page = Page(text)
    assert page.sections == SECTION_IDS
    assert len(page.cards["selection"]) == 5 and "1 picked files no longer exist" in text
    assert "No stored scores for this scorer; run `curate score --scorer" in text
    assert page.row_classes.count("shifted") == 1
    for _, src in page.imgs:
        decode_img(src)


def _cli(args, ws=None, code=0):
    from curate.cli import main

    pre = ["-w", str(ws)] if ws else []
    r = CliRunner().invoke(main, [*pre, *map(str, args)], catch_exceptions=False)
    assert r.exit_code == code, (r.output, r.stderr)
    return r


def test_cli_report_and_its_errors(digits_ws, tmp_path, monkeypatch):
    ws, info = digits_ws
    monkeypatch.delenv("CURATE_WORKSPACE", raising=False)
    monkeypatch.delenv("CURATE_DB", raising=False)
    out = tmp_path / "cli.html"
    r = _cli(["report", "--out", out, "--json"], ws.root)
    res = json.loads(r.stdout)
    assert res["path"] == str(out) and out.stat().st_size == res["bytes"]
    assert res["sections"]["selection"] == info["selection"].selection_id
    assert "written:" in _cli(["report", "--out", out], ws.root).stdout
    monkeypatch.chdir(tmp_path)
    for args, pre, msg in [
        (["report"], tmp_path / "nowhere", "no workspace at"),
        (["report", "--selection", "999"], ws.root, "no selection with id 999"),
        (["report", "--selection", "first"], ws.root, "selection must be an id or 'latest'"),
        (["report", "--scorer", "nope"], ws.root, "no scorer named 'nope'"),
        (["report", "--batch", "nope"], ws.root, "no batch named 'nope'"),
        (["report", "--out", tmp_path], ws.root, "is a directory"),
        (["report", "--out", tmp_path / "r.pdf"], ws.root, "use a .html name"),
    ]:
        err = _cli(args, pre, code=2).stderr
        assert err.startswith("error: ") and msg in err and err.count("\n") == 1, err
    assert not (tmp_path / "report.html").exists()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_renders_in_headless_chromium(digits_report, tmp_path):
    """A real browser opens the file and paints it: a non-blank 1280x2000 screenshot."""
    browser = _chromium()
    need(browser is not None, "chromium not installed (apt-get install -y chromium)")
    res, _, _ = digits_report
    shot = tmp_path / "shot.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
           "--window-size=1280,2000", Path(res.path).resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert shot.is_file(), proc.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        px = np.asarray(im.convert("RGB"), dtype=np.int64)
    assert px.std() > 20  # not a blank page
    assert len(np.unique(px.reshape(-1, 3) // 8, axis=0)) > 50  # text, tables, thumbnails
    assert px[:40, :200].mean() < 80  # the dark header: the inline CSS was applied
    assert (px[:80].mean(axis=(0, 1)) < px[200:].mean(axis=(0, 1))).all()


def test_demo_prints_the_report_line_and_its_report_renders(tmp_path, monkeypatch):
    """From `curate demo` to `curate report`, as the demo's last line says."""
    monkeypatch.delenv("CURATE_WORKSPACE", raising=False)
    monkeypatch.delenv("CURATE_DB", raising=False)
    demo = tmp_path / "demo"
    out = _cli(["demo", "--no-train", "--budget", "20"], demo).stdout
    line = [x for x in out.splitlines() if "curate report" in x]
    assert line and f"cd {demo.resolve()} && curate report --out report.html" in line[-1]
    monkeypatch.chdir(demo)
    assert "written: report.html" in _cli(["report", "--out", "report.html"]).stdout
    page = Page((demo / "report.html").read_text())
    assert page.sections == SECTION_IDS and len(page.cards["selection"]) == 20
    for _, src in page.imgs:
        decode_img(src)
