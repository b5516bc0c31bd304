"""``curate simulate`` end to end in subprocesses: tables, --json, --out files, the stored
run (SQLite and PostgreSQL), and one-line user errors with exit code 2."""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from curate.db.models import Simulation
from curate.embed import embed
from curate.ingest import ingest
from curate.workspace import init_workspace
from helpers import write_class_images


def _fill(root: Path, db: str | None = None, labels: bool = True) -> Path:
    """A workspace: b1 = 3 classes x 30 labelled images, b2 = 3 x 10, one = 12 of c0; embedded."""
    ws = init_workspace(root / "ws", db=db)
    index = ws.open_index()
    lab = "folders" if labels else None
    ingest(index, [write_class_images(root / "b1", 3, 30, seed=1)], batch="b1", labels=lab)
    ingest(index, [write_class_images(root / "b2", 3, 10, seed=2)], batch="b2", labels=lab)
    ingest(index, [write_class_images(root / "one", [0], 12, seed=3)], batch="one", labels=lab)
    embed(index, ws, encoder="pixels-pca", image_size=8)
    index.close()
    return ws.root


@pytest.fixture(scope="module")
def wsdir(tmp_path_factory):
    return _fill(tmp_path_factory.mktemp("sim"))


def _cmd(*args):
    return [sys.executable, "-m", "curate", *map(str, args)]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("CURATE_WORKSPACE", "CURATE_DB")}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _cli(*args, cwd):
    return subprocess.run(_cmd(*args), cwd=cwd, capture_output=True, text=True, env=_env())


def test_table_out_files_and_stored_run(wsdir, tmp_path):
    out = tmp_path / "out"
    r = _cli("-w", wsdir, "simulate", "--strategies", "random,kcenter", "--budgets", "3,6,12",
             "--seeds", "2", "--batch", "b1", "--test-batch", "b2", "--out", out, "--name", "run1",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "simulation 1 (run1)" in r.stdout and "pool 90, test 30" in r.stdout
    assert "paired difference to random" in r.stdout and "kcenter" in r.stdout
    assert "written:" in r.stdout and "Traceback" not in r.stderr
    with Image.open(out / "accuracy_vs_budget.png") as im:
        im.load()
        assert im.format == "PNG"
    assert (out / "results.csv").read_text().count("\n") == 1 + 2 * 3 * 2
    index = init_workspace(wsdir).open_index()
    with index.session() as s:
        row = s.scalar(select(Simulation).where(Simulation.name == "run1"))
        assert row.params["test_batch"] == "b2" and row.params["pool_size"] == 90
        assert len(row.results) == 12 and row.summary["baseline"] == "random"
    index.close()


def test_json_on_postgres(tmp_path, pg_url):
    ws = _fill(tmp_path, db=pg_url)
    r = _cli("--db", pg_url, "-w", ws, "simulate", "--strategies", "random,kcenter",
             "--budgets", "4,8", "--seeds", "2", "--probe", "knn", "--rounds", "one-shot", "--json",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    js = json.loads(r.stdout)
    assert js["params"]["probe"] == "knn" and js["params"]["rounds"] == "one-shot"
    assert len(js["results"]) == 8 and js["files"] == []
    assert {x["strategy"] for x in js["summary"]} == {"random", "kcenter"}
    index = init_workspace(ws, db=pg_url).open_index()
    with index.session() as s:
        row = s.get(Simulation, js["simulation_id"])
        assert row.params["probe"] == "knn" and len(row.results) == 8 and row.versions
    index.close()


def test_user_errors_are_one_line_with_exit_code_2(wsdir, tmp_path):
    unlabelled = _fill(tmp_path / "u", labels=False)
    base = ["simulate", "--strategies", "random", "--seeds", "1"]
    cases = [
        ([unlabelled, *base, "--budgets", "5"], "no labelled images"),
        ([wsdir, *base, "--budgets", "5", "--batch", "one", "--test-batch", "b2"], "fewer than 2 classes"),
        ([wsdir, *base, "--budgets", "5", "--batch", "b1", "--test-batch", "b1"], "overlap the pool"),
        ([wsdir, *base, "--budgets", "10,500"], "budget 500 is larger than the pool"),
        ([wsdir, *base, "--budgets", "20,10"], "strictly increasing"),
        ([wsdir, *base, "--budgets", "0,10"], "must be positive"),
        ([wsdir, "simulate", "--strategies", "random,nope", "--budgets", "5"], "unknown strategy 'nope'"),
        ([wsdir, "simulate", "--probe", "svm", "--budgets", "5"], "'svm' is not one of"),
    ]
    with ThreadPoolExecutor(2) as pool:          # two at a time: each process imports torch
        runs = list(pool.map(lambda c: _cli("-w", *c[0], cwd=tmp_path), cases))
    for (args, needle), r in zip(cases, runs):
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr and needle in r.stderr, (args, r.stderr)
        if "--probe" not in args:                 # ours: one line; click's usage error: 3 lines
            assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("args,needle", [
    (["--budgets", "ten"], "comma-separated integers"),
    (["--test-batch", "b2", "--test-fraction", "0.3"], "--test-batch or --test-fraction"),
])
def test_option_errors(wsdir, args, needle):
    from click.testing import CliRunner

    from curate.cli import main

    r = CliRunner().invoke(main, ["-w", str(wsdir), "simulate", *args])
    assert r.exit_code == 2 and needle in r.stderr and r.stderr.count("\n") == 1
