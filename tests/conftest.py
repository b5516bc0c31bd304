"""Shared fixtures: workspaces on SQLite and PostgreSQL, real image files, shared data.

Postgres tests read ``CURATE_TEST_POSTGRES_URL`` (set by .ci/run); each test gets its
own schema so tests never see each other's rows. Without the variable they skip,
except under ``CI=true`` where a missing database is a failure.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from curate.datasets import shared_data_dir
from helpers import write_image
from curate.workspace import init_workspace

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("CURATE_TEST_POSTGRES_URL")


def need(condition: bool, reason: str) -> None:
    """Skip with ``reason`` unless ``condition``; under CI=true, fail instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors on a shared 2-core machine: one intra-op torch thread is ~5x faster."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def shared_data() -> Path:
    d = shared_data_dir()
    need(d is not None, "../shared/data not found on this machine")
    return d


@pytest.fixture
def pg_url():
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    need(bool(PG_URL), "CURATE_TEST_POSTGRES_URL not set (PostgreSQL tests)")
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as c:
        c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """Both backends: the database tests run on each."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_url")


@pytest.fixture
def ws(tmp_path, db_url):
    """A fresh workspace on each backend."""
    return init_workspace(tmp_path / "ws", db=db_url)


@pytest.fixture
def sqlite_ws(tmp_path):
    return init_workspace(tmp_path / "ws")


@pytest.fixture
def index(ws):
    idx = ws.open_index()
    yield idx
    idx.close()


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """An ImageFolder layout: 3 classes x 8 distinct RGB images, 16x16 PNG."""
    root = tmp_path / "images"
    for c in range(3):
        for i in range(8):
            write_image(root / f"class{c}" / f"img{i}.png", seed=100 * c + i)
    return root
