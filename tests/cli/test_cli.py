"""The CLI end to end: commands, JSON output, one-line errors with exit codes."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from curate.cli import main


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CURATE_WORKSPACE", raising=False)
    monkeypatch.delenv("CURATE_DB", raising=False)
    runner = CliRunner()

    def _run(*args, code=0):
        r = runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == code, (r.exit_code, r.output, r.stderr)
        return r
    return _run


def test_init_ingest_embed_select(run, tmp_path, image_folder):
    run("init", "ws")
    os.chdir(tmp_path / "ws")  # found from the current folder
    rep = json.loads(run("ingest", image_folder, "--labels", "folders", "--batch", "b1", "--json").stdout)
    assert (rep["added"], rep["labels"], rep["rejected"]) == (24, 24, 0)
    out = json.loads(run("embed", "--encoder", "pixels-pca", "--image-size", "16", "--json").stdout)
    assert out["embedded"] == 24
    # every image is labelled here, so the pool is empty
    r = run("select", "--budget", "3", code=2)
    assert "larger than the pool of 0" in r.stderr
    run("ingest", tmp_path / "images", "--batch", "b2")  # same files: nothing new
    r = run("select", "--budget", "3", "--json", code=2)


def test_select_table_and_export(run, tmp_path, image_folder):
    run("init", "ws")
    ws = tmp_path / "ws"
    run("-w", ws, "ingest", image_folder)
    run("-w", ws, "embed", "--encoder", "pixels-pca", "--image-size", "16")
    r = run("-w", ws, "select", "--budget", "4", "--out", tmp_path / "picks.csv")
    assert "selection 1" in r.stdout and "img" in r.stdout
    assert (tmp_path / "picks.csv").read_text().count("\n") == 5
    js = json.loads(run("-w", ws, "select", "--budget", "2", "--json", "--dry-run").stdout)
    assert js["selection_id"] is None and len(js["picks"]) == 2 and js["params"]["n_centres"] == 4


@pytest.mark.parametrize("args,code,needle", [
    (["select", "--budget", "5"], 2, "no curate workspace"),
])
def test_no_workspace(run, args, code, needle):
    assert needle in run(*args, code=code).stderr


def _cli(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "curate", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_user_errors_are_one_line_without_traceback(tmp_path, image_folder):
    ws = tmp_path / "ws"
    assert _cli("init", ws, cwd=tmp_path).returncode == 0
    _cli("-w", ws, "ingest", image_folder, cwd=tmp_path)
    cases = [
        (["select", "--budget", "3"], 2, "no embedding set yet"),
        (["embed", "--encoder", "resnet18"], 2, "needs --weights: a torchvision name"),
        (["embed", "--encoder", "resnet50", "--weights", tmp_path / "nope.pth"], 2, "weights file not found"),
        (["ingest", tmp_path / "missing"], 2, "path not found"),
        (["--db", "postgresql+psycopg://u@127.0.0.1:1/x", "select", "--budget", "1"], 4, "cannot open index database"),
    ]
    for args, code, needle in cases:
        r = _cli("-w", ws, *args, cwd=tmp_path)
        assert r.returncode == code, (args, r.stderr)
        assert "Traceback" not in r.stderr and needle in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    # nothing already recorded was lost
    r = _cli("-w", ws, "ingest", image_folder, "--json", cwd=tmp_path)
    assert json.loads(r.stdout)["already_indexed"] == 24
