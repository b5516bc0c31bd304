"""Each script in examples/ runs as a user would run it (a subprocess, in a fresh folder,
on sklearn's digits) and prints what its docstring promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, tmp_path: Path, *args: str, expect_rc: int = 0) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    p = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == expect_rc, f"{name} exited {p.returncode}:\n{p.stdout}\n{p.stderr[-3000:]}"
    return p.stdout


def test_every_example_is_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    tested = set(re.findall(r'run_example\("(\w+\.py)"', Path(__file__).read_text()))
    assert scripts == tested and 3 <= len(scripts) <= 5


def test_labeling_round(tmp_path):
    out = run_example("labeling_round.py", tmp_path, "ws")
    assert "600 images ingested" in out
    rounds = re.findall(r"round (\d): 30 picks by auto \((\w+)\), digits covered (\d+)/10, "
                        r"picked again (\d+)", out)
    assert [r[0] for r in rounds] == ["1", "2"], out
    assert all(int(r[2]) >= 7 for r in rounds), out  # random 30 of 600 cover ~9.6; floor 7
    assert rounds[1][3] == "0", out  # labelled and earlier picks are never picked again
    assert out.count("30 labels stored") == 2, out
    r1, r2 = (pd.read_csv(tmp_path / "ws" / f"round{i}.csv") for i in (1, 2))
    assert len(r1) == len(r2) == 30 and not set(r1["image_id"]) & set(r2["image_id"])


def test_ci_gate(tmp_path):
    out = run_example("ci_gate.py", tmp_path, "ws", expect_rc=3)
    assert re.search(r"^incoming-same: no shift \(\d+/300 flagged", out, re.M), out
    assert re.search(r"^incoming-inverted: shifted \((\d+)/300 flagged", out, re.M), out
    assert int(re.search(r"incoming-inverted: shifted \((\d+)/300", out).group(1)) > 250
    assert "gate: FAIL, shifted: incoming-inverted\n" in out


def test_simulate_strategies(tmp_path):
    out = run_example("simulate_strategies.py", tmp_path)
    for s in ("random", "kcenter", "typiclust", "badge"):
        assert re.search(rf"^{s}\s+0\.\d{{3}}", out, re.M), out
    best, acc, rand = re.search(r"best at 20 labels: (\S+) \((\S+) vs random (\S+)\)", out).groups()
    assert best != "random" and float(acc) > float(rand) > 0.3, out


@pytest.mark.slow
def test_train_and_compare(tmp_path):
    out = run_example("train_and_compare.py", tmp_path, "ws")
    assert re.search(r"^trained simclr-digits: \d+ steps, loss \d", out, re.M), out
    rows = dict(re.findall(r"^\s*(10-NN accuracy|OOD AUROC inverted \(knn\))\s+pixels-pca\S*\s+(\S+)",
                           out, re.M))
    assert float(rows["10-NN accuracy"]) > 0.8 and float(rows["OOD AUROC inverted (knn)"]) > 0.9, out
    assert re.search(r"^simclr-digits@16: .*pixels-pca", out, re.M), out
    assert re.search(r"^knn k by sensitivity: \{'kind': 'knn', 'k': \d+\}", out, re.M), out
