"""Stress (issue 11): concurrent ``curate ingest`` processes on one index, over
overlapping folders holding the same bytes under different paths. Afterwards: no
sha256 twice among ok images, every file recorded exactly once, no traceback."""

import hashlib
import json
import shutil
import subprocess
import sys

from sqlalchemy import func, select

from helpers import write_image
from curate.db.models import DuplicatePath, Image
from curate.workspace import init_workspace

PROCESSES = 4
IMAGES = 40


def test_concurrent_ingests_keep_one_image_per_content(tmp_path, db_url):
    ws = init_workspace(tmp_path / "ws", db=db_url)
    src = [write_image(tmp_path / "src" / f"{i}.png", size=(8, 8), seed=i) for i in range(IMAGES)]
    folders = []
    for k in range(PROCESSES):  # folder k: every image k..k+IMAGES/2, under names of its own
        d = tmp_path / f"f{k}"
        d.mkdir()
        for i in range(k * IMAGES // 8, k * IMAGES // 8 + IMAGES // 2):
            shutil.copy(src[i % IMAGES], d / f"f{k}_{i}.png")
        folders.append(d)
    db = ["--db", db_url] if db_url else []
    procs = [subprocess.Popen([sys.executable, "-m", "curate", "-w", str(ws.root), *db, "ingest",
                              str(folders[k]), str(folders[(k + 1) % PROCESSES]), "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(PROCESSES)]
    outs = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    for rc, _, err in outs:
        assert rc == 0 and "Traceback" not in err, err
    reps = [json.loads(out) for _, out, _ in outs]

    files = {str(p) for d in folders for p in d.iterdir()}
    contents = {hashlib.sha256(open(p, "rb").read()).hexdigest() for p in files}
    idx = ws.open_index()
    with idx.session() as s:
        ok = s.execute(select(Image.sha256, func.count()).where(Image.status == "ok")
                       .group_by(Image.sha256)).all()
        image_paths = list(s.scalars(select(Image.path)))
        dup_paths = list(s.scalars(select(DuplicatePath.path)))
        statuses = set(s.scalars(select(Image.status)))
    idx.close()
    assert all(n == 1 for _, n in ok), "the same bytes are stored twice as ok images"
    assert {sha for sha, _ in ok} == contents
    assert statuses == {"ok"}
    recorded = image_paths + dup_paths
    assert len(recorded) == len(set(recorded)) and set(recorded) == files  # each file once
    assert sum(r["added"] for r in reps) == len(contents)
    assert sum(r["added"] + r["duplicates"] for r in reps) == len(files)
