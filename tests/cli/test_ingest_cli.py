"""``curate ingest`` as a user runs it (subprocesses): bad input ends in one line on
stderr and exit 2, never a traceback, on SQLite and PostgreSQL (issue 11)."""

import json
import os
import resource
import signal
import subprocess
import sys

import pandas as pd
import pytest

from helpers import write_image
from curate.workspace import init_workspace


def _cmd(ws, db_url, *args):
    db = ["--db", db_url] if db_url else []
    return [sys.executable, "-m", "curate", "-w", str(ws), *db, "ingest", *map(str, args)]


@pytest.fixture
def cli(tmp_path, db_url):
    ws = init_workspace(tmp_path / "ws", db=db_url).root

    def run(*args, timeout=120, **kw):
        return subprocess.run(_cmd(ws, db_url, *args), capture_output=True, text=True,
                              timeout=timeout, cwd=tmp_path, **kw)
    run.ws, run.db_url = ws, db_url
    return run


def one_line_error(r, needle):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def summary(r):
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_bad_input_is_one_line_and_keeps_the_index(cli, tmp_path, image_folder):
    """Items 12, 18, 23: NUL bytes, over-long names, empty batch, header-only manifest."""
    write_image(tmp_path / "a.png", seed=1)
    pd.DataFrame({"path": ["a\x00.png"]}).to_parquet(tmp_path / "nul.parquet")
    pd.DataFrame({"path": ["a.png"], "label": ["x" * 300]}).to_csv(tmp_path / "long.csv", index=False)
    (tmp_path / "header.csv").write_text("path,label\n")
    assert summary(cli(image_folder, "--json"))["added"] == 24
    cases = [
        ([tmp_path / "nul.parquet"], "data row 1: contains a NUL byte"),
        ([tmp_path / "long.csv"], "label is 300 characters; the limit is 255"),
        ([image_folder, "--batch", "b" * 10_000], "batch name is 10000 characters; the limit is 255"),
        ([image_folder, "--batch", ""], "--batch must not be empty"),
        ([tmp_path / "header.csv", "--batch", "h"], "lists no paths (header only"),
    ]
    for args, needle in cases:
        one_line_error(cli(*args), needle)
    rep = summary(cli(image_folder, "--json"))  # nothing recorded was lost, no batch was added
    assert (rep["already_indexed"], rep["batch"]) == (24, "default")


@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_pixels_must_be_positive(cli, image_folder, value):
    """Item 21: 0 is not silently the default, -1 does not reject everything."""
    r = cli(image_folder, "--max-pixels", value)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "x>=1" in r.stderr, r.stderr
    assert summary(cli(image_folder, "--max-pixels", "1000", "--json"))["added"] == 24


def test_fifo_and_dev_zero_do_not_hang(cli, tmp_path):
    """Item 6: a FIFO and a symlink to /dev/zero (followed with --allow-outside) are rejected."""
    d = tmp_path / "d"
    write_image(d / "ok.png", seed=2)
    os.mkfifo(d / "pipe.png")
    os.symlink("/dev/zero", d / "x.png")
    rep = summary(cli(d, "--json", timeout=60))
    assert rep["added"] == 1 and [f["reason"] for f in rep["skipped_files"]] == [
        f"symlink leaves {d} (--allow-outside to follow)"]
    rep = summary(cli(d, "--json", "--allow-outside", timeout=60))
    assert sorted(f["reason"] for f in rep["rejected_files"]) == [
        "cannot read file: not a regular file (FIFO)",
        "cannot read file: not a regular file (character device)"]


def test_same_folder_twice_at_once(cli, image_folder):
    """Item 3: both processes finish without a traceback; every image is stored once."""
    procs = [subprocess.Popen(_cmd(cli.ws, cli.db_url, image_folder, "--json"), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outs = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    for rc, out, err in outs:
        assert rc == 0 and "Traceback" not in err, err
    reps = [json.loads(out) for _, out, _ in outs]
    assert sum(r["added"] for r in reps) == 24
    assert all(r["added"] + r["already_indexed"] == 24 for r in reps)


@pytest.mark.parametrize("content,needle", [(b"", "is damaged (empty, 0 bytes)"),
                                            (b"garbage " * 100, "is damaged (not a SQLite database)")])
def test_damaged_sqlite_index_is_refused_untouched(tmp_path, image_folder, content, needle):
    """Item 23: a zero-byte (or garbage) index.sqlite is not silently rebuilt."""
    ws = init_workspace(tmp_path / "ws").root
    db = ws / "data" / "index.sqlite"
    db.write_bytes(content)
    r = subprocess.run(_cmd(ws, None, image_folder), capture_output=True, text=True)
    one_line_error(r, needle)
    assert db.read_bytes() == content


def test_disk_full_during_ingest_is_one_line_and_a_rerun_completes(tmp_path):
    """Item 17: writes past a file-size limit fail with EFBIG, as on a full disk."""
    ws = init_workspace(tmp_path / "ws").root
    for i in range(300):
        write_image(tmp_path / "imgs" / f"{i}.png", size=(8, 8), seed=i)

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    r = subprocess.run(_cmd(ws, None, tmp_path / "imgs"), capture_output=True, text=True,
                       preexec_fn=small_files)
    one_line_error(r, "cannot write to the index database")
    r = subprocess.run(_cmd(ws, None, tmp_path / "imgs", "--json"), capture_output=True, text=True)
    rep = summary(r)
    assert rep["added"] + rep["already_indexed"] == 300 and rep["rejected"] == 0
