"""``curate embed --ray`` / ``curate score --ray``: the same shards, rows and scores as the
local path, on a local Ray cluster.

One Ray session (2 CPUs) is shared by the module; the killed-driver test starts its own in
a subprocess. Runs against SQLite and the CI PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from click.testing import CliRunner
from sqlalchemy import func, select

import ray_helpers
from helpers import write_class_images
from curate.db.models import EmbeddingRow, EmbeddingSet, Image, Score
from curate.embed import embed
from curate.embeddings import load_embeddings
from curate.ingest import ingest
from curate.workspace import init_workspace

N = 60  # 3 classes x 20 images, 8x8 RGB


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def images(tmp_path) -> Path:
    return write_class_images(tmp_path / "imgs", classes=3, per_class=20, size=8)


def _workspace(path: Path, images: Path, db=None):
    ws = init_workspace(path, db=db)
    index = ws.open_index()
    ingest(index, [str(images)])
    return ws, index


def _check_store(index, set_name: str, n: int) -> None:
    """Every image once, the count column right, every row inside its shard."""
    with index.session() as s:
        es = s.scalar(select(EmbeddingSet).where(EmbeddingSet.name == set_name))
        rows = s.scalars(select(EmbeddingRow.image_id).where(EmbeddingRow.set_id == es.id)).all()
        assert len(rows) == len(set(rows)) == n == es.count


def _assert_same(ref_index, ref_set, index, set_name, atol=1e-5):
    ids0, X0 = load_embeddings(ref_index, ref_set)
    ids1, X1 = load_embeddings(index, set_name)
    np.testing.assert_array_equal(ids0, ids1)
    np.testing.assert_allclose(X1, X0, rtol=1e-4, atol=atol)


@pytest.mark.parametrize("db_url,encoder", [("sqlite", "pixels-pca"), ("postgres", "pixels-pca"),
                                            ("postgres", "resnet18")], indirect=["db_url"])
def test_ray_embed_equals_local(ray_cluster, tmp_path, images, db_url, encoder):
    kw = dict(encoder=encoder, image_size=8, batch_size=8)
    if encoder == "resnet18":
        torch.manual_seed(0)
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
        kw.update(weights=str(tmp_path / "r18.pth"), image_size=32)
    ref_ws, ref = _workspace(tmp_path / "local", images)
    ws, index = _workspace(tmp_path / "ray", images, db=db_url)
    gone = images / "c1" / "3.png"
    os.remove(gone)  # vanished after ingest: skipped and marked on both paths
    loc = embed(ref, ref_ws, **kw)
    rep = embed(index, ws, ray="local", **kw)
    assert rep.device == "ray:cpu x2" and rep.embedding_set == loc.embedding_set
    assert (rep.embedded, rep.already, rep.missing_files) == (N - 1, 0, [str(gone)])
    _check_store(index, rep.embedding_set, N - 1)
    _assert_same(ref, loc.embedding_set, index, rep.embedding_set, atol=1e-4)
    with index.session() as s:
        assert s.scalar(select(Image.status).where(Image.path == str(gone))) == "rejected"
        es = s.scalar(select(EmbeddingSet))
        assert "torch" in es.versions
        assert s.scalar(select(func.count(func.distinct(EmbeddingRow.shard)))) == 8  # blocks of 8
    with ref.session() as s:
        assert s.scalar(select(EmbeddingSet)).params == es.params
    # a rerun (local or Ray) adds nothing
    assert embed(index, ws, ray="local", **kw).embedded == 0
    assert embed(index, ws, **kw).embedded == 0
    ref.close()
    index.close()


@pytest.fixture
def sabotage(tmp_path, monkeypatch):
    ray_helpers.register()
    control = tmp_path / "control"
    control.mkdir()
    monkeypatch.setenv("CURATE_TEST_SABOTAGE", str(control))
    yield control
    ray_helpers.unregister()


def test_killed_worker_is_restarted_and_its_shard_retried(ray_cluster, tmp_path, images, pg_url,
                                                          sabotage, monkeypatch):
    monkeypatch.setenv("CURATE_TEST_SABOTAGE_MODE", "exit-once")
    kw = dict(encoder=ray_helpers.NAME, image_size=8, batch_size=8)
    ref_ws, ref = _workspace(tmp_path / "local", images)
    loc = embed(ref, ref_ws, **kw)
    ws, index = _workspace(tmp_path / "ray", images, db=pg_url)
    (sabotage / "armed").touch()
    rep = embed(index, ws, ray="local", **kw)
    died = int((sabotage / "exited").read_text())
    assert died != os.getpid()  # a Ray worker process exited mid-shard
    assert (rep.embedded, rep.already) == (N, 0)
    _check_store(index, rep.embedding_set, N)
    _assert_same(ref, loc.embedding_set, index, rep.embedding_set)
    ref.close()
    index.close()


_DRIVER = """
import sys
sys.path.insert(0, {tests!r})
import ray_helpers
ray_helpers.register()
from curate.embed import embed
from curate.workspace import init_workspace
ws = init_workspace({ws!r}, db={db!r})
embed(ws.open_index(), ws, encoder=ray_helpers.NAME, image_size=8, batch_size=4, ray="local")
"""


def test_killed_driver_then_rerun_finishes(ray_cluster, tmp_path, images, pg_url, sabotage,
                                           monkeypatch):
    """SIGKILL of the driver mid-run (blocks of 8 images, loader batches of 4: 15 encode
    calls in all; from call 10 on the driver is killed and the worker exits, so at least 4
    blocks are stored and at least one is not): a rerun adds the rest, without duplicates,
    equal to the local path."""
    monkeypatch.setenv("CURATE_TEST_SABOTAGE_MODE", "kill-driver")
    monkeypatch.setenv("CURATE_TEST_SABOTAGE_KILL_AT", "10")
    kw = dict(encoder=ray_helpers.NAME, image_size=8, batch_size=4)
    ref_ws, ref = _workspace(tmp_path / "local", images)
    loc = embed(ref, ref_ws, **kw)
    ws, index = _workspace(tmp_path / "ray", images, db=pg_url)
    (sabotage / "armed").touch()
    code = _DRIVER.format(tests=str(Path(__file__).parent), ws=str(ws.root), db=pg_url)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == -9, p.stderr[-2000:]
    with index.session() as s:
        stored = s.scalar(select(func.count()).select_from(EmbeddingRow))
    assert 28 <= stored < N and stored % 4 == 0  # whole blocks only
    (sabotage / "armed").unlink()
    rep = embed(index, ws, ray="local", **kw)
    # a block the killed driver's orphaned actor was writing may still commit before the
    # rerun looks: `already` is at least what was counted, and nothing is done twice
    assert rep.already >= stored and rep.embedded + rep.already == N
    _check_store(index, rep.embedding_set, N)
    _assert_same(ref, loc.embedding_set, index, rep.embedding_set)
    ref.close()
    index.close()


def test_cli_embed_ray_local(ray_cluster, tmp_path, images, pg_url):
    from curate.cli import main

    ws, index = _workspace(tmp_path / "ws", images, db=pg_url)
    index.close()
    r = CliRunner().invoke(main, ["-w", str(ws.root), "--db", pg_url, "embed", "--encoder",
                                  "pixels-pca", "--image-size", "8", "--ray", "local",
                                  "--ray-actors", "1", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{"):])
    assert (out["embedded"], out["device"]) == (N, "ray:cpu x1")


def test_without_ray_one_line_error(sqlite_ws, images):
    """`import ray` failing (not installed) gives one line naming the extra, exit 2."""
    index = sqlite_ws.open_index()
    ingest(index, [str(images)])
    index.close()
    code = ("import sys; sys.modules['ray'] = None\n"
            "from curate.cli import main\n"
            "sys.argv = ['curate'] + sys.argv[1:]\nmain()")
    p = subprocess.run([sys.executable, "-c", code, "-w", str(sqlite_ws.root), "embed",
                        "--encoder", "pixels-pca", "--ray", "auto"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip() == ('error: --ray needs Ray Data, which is not installed: '
                                'pip install "curate[ray]"')
    index = sqlite_ws.open_index()
    with index.session() as s:
        assert s.scalar(select(func.count()).select_from(EmbeddingSet)) == 0
    index.close()


def test_sqlite_on_a_cluster_of_other_machines_is_refused():
    from curate.embed_ray import sqlite_reachable

    assert sqlite_reachable(["10.0.0.5"], "10.0.0.5")
    assert not sqlite_reachable(["10.0.0.5", "10.0.0.6"], "10.0.0.5")
    assert not sqlite_reachable(["10.0.0.6"], "10.0.0.5")


def test_ray_score_equals_local(ray_cluster, tmp_path, images, pg_url):
    """`curate score --ray`: row blocks scored on Ray give the local frame (knn: reference
    images leave-one-out, so the blocks must keep each row's own id)."""
    from curate.novelty.stored import fit_scorer, load_for_scorer, load_scorer
    from curate.score_ray import decide_on_ray
    from curate.novelty.scoring import score_images

    ws, index = _workspace(tmp_path / "ws", images, db=pg_url)
    embed(index, ws, encoder="pixels-pca", image_size=8)
    fit_scorer(index, ws, "knn", k=5, alpha=0.2, calibration_fraction=0.25)
    st = load_scorer(index)
    ids, X = load_for_scorer(index, st)
    loc = st.decide(ids, X)
    assert loc["in_reference"].any() and (~loc["in_reference"]).any()
    got = decide_on_ray(st, ids, X, "local", blocks=4)
    pd.testing.assert_frame_equal(got, loc)
    rep = score_images(index, ray="local")
    assert len(rep.scores) == N and rep.n_flagged == int(loc["flagged"].sum())
    with index.session() as s:
        assert s.scalar(select(func.count()).select_from(Score)) == N
    index.close()


def test_unreachable_cluster_is_one_line_exit_4(tmp_path):
    """A HOST:PORT where nothing listens is refused at once (Ray would retry for minutes)."""
    import socket

    from curate.embed_ray import _probe
    from curate.errors import CurateError, ServiceError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(ServiceError, match=rf"cannot reach the Ray cluster at '127.0.0.1:{port}'") as e:
        _probe(f"127.0.0.1:{port}")
    assert e.value.exit_code == 4
    with pytest.raises(CurateError, match="bad Ray address"):
        _probe("host:notaport")
    _probe("auto")  # left to Ray
