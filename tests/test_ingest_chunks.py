"""Ingest's chunked, pipelined recording (issue 14): kill -9 mid-run then a rerun, copies
across chunks, labels written in bulk, names the index cannot store. Both databases."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
from PIL import Image as PILImage
from sqlalchemy import func, select

from helpers import write_image
from curate.db.models import DuplicatePath, Image, Label
from curate.ingest import ingest


def _recorded(index):
    with index.session() as s:
        images = dict(s.execute(select(Image.path, Image.sha256).where(Image.status == "ok")).all())
        dups = dict(s.execute(select(DuplicatePath.path, DuplicatePath.image_id)).all())
    return images, dups


def test_kill_9_mid_ingest_loses_nothing_and_a_rerun_finishes(ws, tmp_path):
    n = 6000
    d = tmp_path / "many"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):   # tiny distinct PNGs: thousands per second are ingested
        PILImage.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8)).save(d / f"{i:05d}.png")
    db = ["--db", ws.db_url] if not ws.db_url.startswith("sqlite") else []
    proc = subprocess.Popen([sys.executable, "-m", "curate", "-w", str(ws.root), *db, "ingest",
                             str(d), "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    index = ws.open_index()
    try:
        seen, deadline = 0, time.monotonic() + 120
        while seen == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
            with index.session() as s:
                seen = s.scalar(select(func.count()).select_from(Image))
        proc.send_signal(signal.SIGKILL)   # after the first committed chunk
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, "ingest ended before it could be killed"
        before, _ = _recorded(index)
        assert 0 < len(before) < n
        rep = ingest(index, [d])
        after, dups = _recorded(index)
    finally:
        index.close()
    assert before.items() <= after.items()   # nothing recorded was lost or changed
    assert (rep.added, rep.already, rep.rejected, dups) == (n - len(before), len(before), [], {})
    assert set(after) == {str(p) for p in d.iterdir()}
    assert set(after.values()) == {hashlib.sha256(p.read_bytes()).hexdigest() for p in d.iterdir()}


def test_copies_across_chunks_point_at_one_owner(index, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    src = [write_image(tmp_path / f"src{i}.png", seed=i) for i in range(3)]
    for k in range(7):   # 21 files, 3 contents; chunks of 2 split the copies over many chunks
        for i, p in enumerate(src):
            shutil.copy(p, d / f"{k}_{i}.png")
    (d / "z_bad.png").write_bytes(b"not a png")
    rep = ingest(index, [d], chunk_size=2, workers=3)
    assert (rep.files, rep.added, rep.duplicates, len(rep.rejected)) == (22, 3, 18, 1)
    images, dups = _recorded(index)
    with index.session() as s:
        ids = dict(s.execute(select(Image.id, Image.sha256)).all())
    assert len(dups) == 18 and all(ids[i] in set(images.values()) for i in dups.values())
    for p, i in dups.items():
        assert ids[i] == hashlib.sha256(open(p, "rb").read()).hexdigest()
    rep2 = ingest(index, [d], chunk_size=5)
    assert (rep2.already, rep2.added, rep2.duplicates, len(rep2.rejected)) == (21, 0, 0, 1)


def test_labels_are_written_in_bulk_and_changed_on_rerun(index, tmp_path):
    paths = [write_image(tmp_path / "imgs" / f"{i}.png", seed=40 + i) for i in range(5)]
    m = tmp_path / "m.csv"
    pd.DataFrame({"path": [str(p) for p in paths], "label": ["a", "b", "a", "b", "a"]}).to_csv(m, index=False)
    rep = ingest(index, [m], chunk_size=2)
    assert (rep.added, rep.labels) == (5, 5)
    with index.session() as s:
        rows = s.execute(select(Label.label, Label.source, Label.status, Label.created_at)).all()
    assert sorted(r[0] for r in rows) == ["a", "a", "a", "b", "b"]
    assert all(r[1] == "manifest" and r[2] == "labeled" and r[3] is not None for r in rows)
    pd.DataFrame({"path": [str(p) for p in paths], "label": ["a", "b", "c", "b", "a"]}).to_csv(m, index=False)
    rep = ingest(index, [m])
    assert (rep.already, rep.labels) == (5, 1)   # one label changed, the rest as they were
    with index.session() as s:
        assert s.scalar(select(Label.label).join(Image).where(Image.path == str(paths[2]))) == "c"
        assert s.scalar(select(func.count()).select_from(Label)) == 5


def test_a_name_that_is_not_utf8_is_skipped_not_a_traceback(index, tmp_path):
    d = tmp_path / "d"
    ok = write_image(d / "ok.png", seed=60)
    bad = os.path.join(os.fsencode(d), b"bad\xff.png")
    shutil.copy(write_image(tmp_path / "other.png", seed=61), bad)
    rep = ingest(index, [d])
    assert rep.added == 1
    assert rep.skipped == [(f"{d}/bad\\xff.png", "file name is not valid UTF-8, which the index "
                                                   "cannot store: rename the file")]
    assert list(_recorded(index)[0]) == [str(ok)]
