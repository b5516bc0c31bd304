"""curate.plot: projections and PNG rendering; the CLI over a tiny index."""

import numpy as np
import pytest
from PIL import Image

from curate.errors import CurateError
from curate.plot import plot_embedding, project_2d


def test_project_2d_identity_pca_tsne():
    rng = np.random.default_rng(0)
    X2 = rng.normal(size=(30, 2)).astype(np.float32)
    c, how = project_2d(X2)
    assert how == "identity" and np.array_equal(c, X2)
    X = rng.normal(size=(30, 8))
    c, how = project_2d(X)
    assert how == "pca" and c.shape == (30, 2)
    c, how = project_2d(X, "tsne")
    assert how == "tsne" and c.shape == (30, 2) and np.isfinite(c).all()
    with pytest.raises(CurateError, match="NaN"):
        project_2d(np.full((3, 4), np.nan))
    with pytest.raises(CurateError, match="unknown projection"):
        project_2d(X, "umap")


@pytest.mark.parametrize("colors", [None, ["a", "b", None] * 10, list(np.linspace(0, 1, 30)),
                                    list(range(30))])
def test_plot_embedding_writes_png(tmp_path, colors):
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(30, 2))
    sel = np.zeros(30, bool)
    sel[:3] = True
    flag = np.zeros(30, bool)
    flag[-2:] = True
    out = plot_embedding(coords, tmp_path / "sub" / "map.png", colors, selected=sel, flagged=flag,
                         title="t")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 100


def test_plot_embedding_bad_input(tmp_path):
    with pytest.raises(CurateError, match="coords must be"):
        plot_embedding(np.zeros((3, 3)), tmp_path / "a.png")
    with pytest.raises(CurateError, match="colors has 2 entries"):
        plot_embedding(np.zeros((3, 2)), tmp_path / "a.png", colors=["a", "b"])
    with pytest.raises(CurateError, match="PNG"):
        plot_embedding(np.zeros((3, 2)), tmp_path / "a.jpg")


def test_cli_plot_embedding(tmp_path, monkeypatch, image_folder):
    import json

    from click.testing import CliRunner

    from curate.cli import main

    monkeypatch.delenv("CURATE_WORKSPACE", raising=False)
    monkeypatch.delenv("CURATE_DB", raising=False)
    ws = tmp_path / "ws"
    runner = CliRunner()

    def run(*args, code=0):
        r = runner.invoke(main, ["-w", str(ws), *map(str, args)], catch_exceptions=False)
        assert r.exit_code == code, (r.output, r.stderr)
        return r

    runner.invoke(main, ["init", str(ws)], catch_exceptions=False)
    run("ingest", image_folder / "class0", image_folder / "class1", "--labels", "folders")
    run("ingest", image_folder / "class2", "--batch", "b2")
    emb = json.loads(run("embed", "--encoder", "pixels-pca", "--image-size", "16", "--json").stdout)
    run("select", "--budget", "3")
    for color in ("label", "batch", "selection"):
        out = tmp_path / f"{color}.png"
        res = json.loads(run("plot", "embedding", "--set", emb["embedding_set"], "--color", color,
                             "--out", out, "--json").stdout)
        assert out.is_file() and res["points"] == 24 and res["selected"] == 3
    res = json.loads(run("plot", "embedding", "--model", emb["model"], "--batch", "b2", "--tsne",
                         "--json").stdout)
    assert res["points"] == 8 and res["projection"] == "tsne" and res["path"].endswith(".png")
    assert "needs a fitted scorer" in run("plot", "embedding", "--set", emb["embedding_set"],
                                          "--color", "score", code=2).stderr
    assert "no model named" in run("plot", "embedding", "--model", "nope", code=2).stderr
