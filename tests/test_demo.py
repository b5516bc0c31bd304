import logging
import os
import re
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from curate.db.models import Image, SelectionItem
from curate.demo import fresh_dir, run_demo
from curate.workspace import find_workspace


def test_demo_runs_end_to_end_without_training(tmp_path):
    rep = run_demo(tmp_path / "demo", budget=50, train=False)
    assert len(rep.picks) == 50 and rep.picks["image_id"].is_unique
    assert rep.classes_covered >= 9  # k-center covers (nearly) every digit
    idx = find_workspace(rep.workspace).open_index()
    with idx.session() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 1797
        assert s.scalar(select(func.count()).select_from(SelectionItem)) == 50
    idx.close()
    assert fresh_dir(tmp_path / "demo") == tmp_path / "demo-2"


def test_demo_trains_a_quick_ssl_encoder(tmp_path):
    rep = run_demo(tmp_path / "demo", budget=20, train=True, train_seconds=3)
    assert rep.encoder.startswith("demo-simclr") and rep.embedding_set.startswith(rep.encoder)
    assert len(rep.picks) == 20 and rep.picks["score"].iloc[1:].notna().all()
    assert rep.seconds["train"] > 0


# ------------------------------------------------- what a new user sees (issue 13)
BANNERS = ("GPU available:", "TPU available:", "litlogger", "`Trainer.fit` stopped")


def _curate(*args, cwd):
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("CURATE_WORKSPACE", None)
    return subprocess.run([sys.executable, "-m", "curate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def demo_cli(tmp_path_factory):
    """`curate demo --workspace ws --budget 20` run once, as a user would (a subprocess)."""
    cwd = tmp_path_factory.mktemp("demo-cli")
    return cwd, _curate("demo", "--workspace", "ws", "--budget", "20", cwd=cwd)


def test_demo_prints_curates_progress_not_lightnings_banners(demo_cli):
    cwd, p = demo_cli
    assert p.returncode == 0, p.stderr
    for banner in BANNERS + ("LeafSpec", "Loading `train_dataloader`"):
        assert banner not in p.stdout + p.stderr, banner
    lines = p.stderr.splitlines()
    assert any(x.startswith("ingest") and "1797/1797" in x for x in lines), p.stderr
    assert any(x.startswith("embed") and "1797/1797" in x for x in lines), p.stderr
    train = [x for x in lines if x.startswith("train")]
    assert train and re.search(r"epoch [1-4]/4  loss \d+\.\d{4}  [\d,]+ img/s", train[-1]), p.stderr
    steps = re.search(r"(\d+)/(\d+)", train[-1])
    assert steps and steps.group(1) == steps.group(2)  # the bar ends full (time limit or not)
    # the summary, in the folder given by the demo's own --workspace
    assert "digit classes covered by the 20 picks" in p.stdout
    assert f"workspace: {cwd / 'ws'}" in p.stdout and (cwd / "ws" / "curate.toml").is_file()
    assert not (cwd / "curate-demo").exists()


def test_verbose_lets_lightning_speak(demo_cli):
    cwd, p = demo_cli
    assert p.returncode == 0, p.stderr
    common = ["train", "--method", "simclr", "--epochs", "1", "--max-steps", "2",
              "--batch-size", "32", "--no-compare"]
    quiet = _curate("-w", "ws", *common, "--name", "quiet", cwd=cwd)
    loud = _curate("--verbose", "-w", "ws", *common, "--name", "loud", cwd=cwd)
    assert quiet.returncode == 0 and loud.returncode == 0, (quiet.stderr, loud.stderr)
    assert not any(b in quiet.stdout + quiet.stderr for b in BANNERS), quiet.stderr
    assert all(b in loud.stderr for b in BANNERS[:3]), loud.stderr
    for r in (quiet, loud):  # curate's own bar and summary either way
        assert re.search(r"^train .* 2/2 .*epoch 1/1  loss", r.stderr, re.M), r.stderr
        assert "training run" in r.stdout


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.mark.parametrize("verbose", [False, True])
def test_run_demo_verbose_in_python(tmp_path, verbose):
    import lightning.pytorch  # noqa: F401 - its import sets the logger's level; compare after it

    log = logging.getLogger("lightning.pytorch")
    rec, level = _Records(), log.level
    log.addHandler(rec)
    reports: list[tuple] = []
    try:
        rep = run_demo(tmp_path / "demo", budget=10, train=True, train_seconds=2, verbose=verbose,
                       progress=lambda *a: reports.append(a))
    finally:
        log.removeHandler(rec)
    assert rep.encoder.startswith("demo-simclr")
    assert any("GPU available" in x for x in rec.lines) == verbose
    assert log.level == level  # silenced during the fit only
    stages = [r[0] for r in reports]
    assert {"ingest", "train", "embed"} <= set(stages)
    assert stages.index("ingest") < stages.index("train") < stages.index("embed")
    last = [r for r in reports if r[0] == "train"][-1]
    assert last[1] == last[2] and "loss" in last[3] and last[4] == 0  # done: full bar, ETA 0
