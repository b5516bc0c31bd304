"""`score --out`, `select --out` and `export` carry each image's batch and label (issue 13):
users filter by batch. Real files through the CLI, on SQLite and PostgreSQL."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.db.models import Label
from curate.export import COLUMNS
from curate.workspace import find_workspace
from novelty_images import write_batch


@pytest.fixture
def run(tmp_path, monkeypatch, db_url):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CURATE_WORKSPACE", raising=False)
    monkeypatch.delenv("CURATE_DB", raising=False)
    base = ["-w", str(tmp_path / "ws")] + (["--db", db_url] if db_url else [])

    def _run(*args, code=0):
        r = CliRunner().invoke(main, base + [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == code, (r.exit_code, r.output, r.stderr)
        return r
    return _run


@pytest.fixture
def truth(run, tmp_path):
    """Two batches: 'labelled' (ImageFolder, classes class0/class1) and 'fresh' (no labels);
    returns {file name: (batch, label)}."""
    run("init", tmp_path / "ws")
    write_batch(tmp_path / "labelled", "in", 24, seed=1, labels=2)
    write_batch(tmp_path / "fresh", "novel", 12, seed=2)
    run("ingest", tmp_path / "labelled", "--batch", "labelled", "--labels", "folders")
    run("ingest", tmp_path / "fresh", "--batch", "fresh")
    run("embed", "--encoder", "pixels-pca", "--image-size", "16")
    out = {p.name: ("labelled", p.parent.name) for p in (tmp_path / "labelled").rglob("*.png")}
    out.update({p.name: ("fresh", None) for p in (tmp_path / "fresh").glob("*.png")})
    return out


def _check(df: pd.DataFrame, truth: dict) -> None:
    names = df["path"].map(lambda p: p.rsplit("/", 1)[1])
    assert df["batch"].tolist() == [truth[n][0] for n in names]
    got = [None if pd.isna(v) else v for v in df["label"]]
    assert got == [truth[n][1] for n in names]


def _read(path):
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.DataFrame(json.loads(path.read_text()))


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json"])
def test_score_out_has_batch_and_label(run, truth, tmp_path, suffix):
    run("fit-scorer", "--kind", "knn", "--k", "3", "--reference-batch", "labelled", "--name", "k3",
        "--calibration-fraction", "0.5", "--alpha", "0.1")
    out = tmp_path / f"scores{suffix}"
    r = run("score", "--scorer", "k3", "--top", "3", "--out", out)
    assert "batch" in r.stdout and "label" in r.stdout and "fresh" in r.stdout  # the table too
    df = _read(out)
    assert len(df) == 36 and {"batch", "label"} <= set(df.columns)
    _check(df, truth)
    assert set(df["batch"]) == {"labelled", "fresh"}
    assert df.loc[df["batch"] == "labelled", "label"].isin(["class0", "class1"]).all()
    r = run("score", "--scorer", "k3", "--batch", "fresh", "--json")
    top = json.loads(r.stdout)["top"]
    assert top and all(t["batch"] == "fresh" and t["label"] is None for t in top)


def test_select_out_and_export_have_batch_and_label(run, truth, tmp_path, db_url):
    r = run("select", "--budget", "6", "--strategy", "random", "--out", tmp_path / "picks.parquet")
    assert "batch" in r.stdout
    picks = pd.read_parquet(tmp_path / "picks.parquet")
    assert list(picks.columns) == COLUMNS and len(picks) == 6
    _check(picks, truth)
    assert (picks["batch"] == "fresh").all()  # labelled images are centres, never picked
    js = json.loads(run("select", "--budget", "3", "--batch", "fresh", "--strategy", "random",
                        "--dry-run", "--json").stdout)
    assert [p["batch"] for p in js["picks"]] == ["fresh"] * 3
    # a label arriving after the pick (as from Label Studio) shows in the export
    ws = find_workspace(tmp_path / "ws", db=db_url)
    index = ws.open_index()
    with index.session() as s:
        s.add(Label(image_id=int(picks["image_id"][0]), label="odd", source="label-studio"))
    index.close()
    name = picks["path"][0].rsplit("/", 1)[1]
    truth = {**truth, name: ("fresh", "odd")}
    for fmt, suffix in (("csv", ".csv"), ("json", ".json"), ("parquet", ".parquet")):
        out = tmp_path / f"export{suffix}"
        run("export", "--selection", "latest", "--format", fmt, "--out", out)
        df = _read(out)
        assert list(df.columns) == COLUMNS
        _check(df, truth)
        assert df["label"].notna().sum() == 1
    lines = run("export").stdout.splitlines()  # CSV on standard output
    assert lines[0].split(",") == COLUMNS and all(line.endswith(",fresh") for line in lines[1:])
