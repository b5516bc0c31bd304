"""The novelty commands end to end through the CLI: fit-scorer, score, check-batch
(--fail-on-shift exits 3), tune-scorer, select --exclude-novel; on SQLite and PostgreSQL."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from curate.cli import main
from novelty_images import write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("cli-novelty-images"))


@pytest.fixture
def run(tmp_path, monkeypatch, db_url):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CURATE_WORKSPACE", raising=False)
    monkeypatch.delenv("CURATE_DB", raising=False)
    runner = CliRunner()
    base = ["-w", str(tmp_path / "ws")] + (["--db", db_url] if db_url else [])

    def _run(*args, code=0):
        r = runner.invoke(main, base + [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == code, (r.exit_code, r.output, r.stderr)
        return r
    return _run


@pytest.fixture
def embedded(run, corpus, tmp_path):
    run("init", tmp_path / "ws")
    for b, folder in corpus.items():
        run("ingest", folder, "--batch", b)
    run("embed", "--encoder", "pixels-pca", "--image-size", "16")


def test_fit_score_check_select(run, embedded, tmp_path):
    fit = json.loads(run("fit-scorer", "--kind", "knn", "--k", "5", "--reference-batch", "ref",
                         "--calibration-fraction", "0.25", "--alpha", "0.1", "--name", "k5",
                         "--json").stdout)
    assert fit["name"] == "k5" and fit["params"]["k"] == 5 and fit["calibration"]["n_cal"] == 20
    r = run("fit-scorer", "--kind", "mahalanobis", "--shrinkage", "0.1",
            "--reference-batch", "ref", "--calibration-fraction", "0.25", "--alpha", "0.1")
    assert "scorer mahalanobis@" in r.stdout and "shrinkage=0.1" in r.stdout

    r = run("score", "--scorer", "k5", "--top", "5", "--out", tmp_path / "scores.parquet")
    assert "k5: 140 scored" in r.stdout and "novel0" in r.stdout and "yes" in r.stdout
    df = pd.read_parquet(tmp_path / "scores.parquet")
    assert len(df) == 140 and df["path"].head(30).str.contains("new-out").all()
    js = json.loads(run("score", "--scorer", "k5", "--batch", "new-out", "--top", "3", "--json").stdout)
    assert js["n_scored"] == 30 and js["n_flagged"] == 30 and len(js["top"]) == 3

    r = run("check-batch", "--batch", "new-in", "--scorer", "k5", "--permutations", "200",
            "--fail-on-shift")
    assert "verdict: no shift" in r.stdout and "MMD^2" in r.stdout
    line = next(x for x in r.stdout.splitlines() if x.startswith("flags: "))
    assert "of 20 scores) an in-distribution batch of" in line and "flags or more with p = " in line
    assert float(line.rsplit("p = ", 1)[1]) > 0.025  # in-distribution: not flagged
    r = run("check-batch", "--batch", "new-out", "--scorer", "k5", "--permutations", "200",
            "--fail-on-shift", code=3)
    assert "SHIFTED" in r.stdout and "verdict: shifted" in r.stdout  # rendered before exit 3
    assert r.stderr.startswith("error: batch 'new-out' is shifted") and r.stderr.count("\n") == 1
    js = json.loads(run("check-batch", "--batch", "new-out", "--scorer", "k5", "--permutations",
                        "200", "--json").stdout)  # without --fail-on-shift: exit 0
    assert js["verdict"] == "shifted" and js["result"]["bh"]["n_batches"] == 2

    js = json.loads(run("select", "--budget", "40", "--exclude-novel", "--scorer", "k5",
                        "--json").stdout)
    assert not any("new-out" in p["path"] for p in js["picks"])
    assert js["params"]["exclude_novel"]["excluded"] >= 30
    r = run("select", "--budget", "5", "--exclude-novel", "--dry-run")  # the latest scorer
    assert "novel excluded by mahalanobis@" in r.stdout


SQLITE_ONLY = pytest.mark.parametrize("db_url", [None], ids=["sqlite"])  # shadows the fixture


@SQLITE_ONLY
def test_tune_scorer(run, embedded):
    # pixels-pca was never trained on these images: no seen/unseen split to score
    # (the full path with a trained run is in tests/novelty/test_tuning.py)
    r = run("tune-scorer", "--candidates", "knn:k=1 knn:k=5", code=2)
    assert "was not trained on these images" in r.stderr and r.stderr.count("\n") == 1
    r = run("tune-scorer", "--candidates", "knn:k=1", "--candidates", "mahalanobis", code=2)
    assert "mix scorer kinds (knn, mahalanobis)" in r.stderr and r.stderr.count("\n") == 1


@SQLITE_ONLY
def test_errors_are_one_line(run, embedded):
    cases = [
        (["score"], "no scorer yet"),
        (["check-batch", "--batch", "new-in"], "no scorer yet"),
        (["select", "--budget", "3", "--exclude-novel"], "no scorer yet"),
        (["select", "--budget", "3", "--scorer", "x"], "--scorer is used with --exclude-novel"),
        (["fit-scorer", "--kind", "nope"], "unknown scorer 'nope'"),
        (["fit-scorer", "--kind", "knn", "--alpha", "1.5"], "1.5 is not in the range 0<x<1"),
        (["fit-scorer", "--kind", "knn", "--reference-batch", "ref"], "below 1/(n+1)=0.1111 for 8"),
        (["fit-scorer", "--kind", "knn", "--k", "200", "--alpha", "0.2"], "needs at least 201"),
        (["fit-scorer", "--kind", "centroid"], "needs labels"),
        (["fit-scorer", "--kind", "knn", "--tau", "0.1"], "bad parameters for scorer 'knn'"),
        (["tune-scorer", "--candidates", "nope"], "unknown scorer 'nope'"),
    ]
    for args, needle in cases:
        r = run(*args, code=2)
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, (args, r.stderr)
        assert needle in r.stderr, (args, r.stderr)
