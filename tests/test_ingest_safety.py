"""Ingest against hostile or broken inputs (issue 11): special files, escaping paths,
foreign formats, bad manifests, re-checks, EXIF orientation, database-held uniqueness."""

import os
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import EpsImagePlugin, Image as PILImage
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import IntegrityError

from helpers import write_image
from curate.db.index import _alembic_config, open_index
from curate.db.models import Batch, Image, Label
from curate.errors import CurateError
from curate.imageio import inspect_image, load_image
from curate.ingest import ingest


def statuses(index):
    with index.session() as s:
        return dict(s.execute(select(Image.status, func.count()).group_by(Image.status)).all())


# item 6: FIFOs and devices are never read; reads are bounded
def test_fifo_and_device_are_rejected_without_reading(index, tmp_path):
    d = tmp_path / "d"
    write_image(d / "ok.png", seed=1)
    os.mkfifo(d / "pipe.png")
    os.symlink("/dev/zero", d / "zero.png")
    rep = ingest(index, [d], allow_outside=True)  # follow the link to /dev/zero: still not read
    reasons = {os.path.basename(p): r for p, r in rep.rejected}
    assert reasons == {"pipe.png": "cannot read file: not a regular file (FIFO)",
                       "zero.png": "cannot read file: not a regular file (character device)"}
    assert rep.added == 1


def test_files_over_max_bytes_are_rejected_unread(tmp_path):
    p = write_image(tmp_path / "x.png", size=(64, 64), seed=2)
    assert inspect_image(p, max_bytes=p.stat().st_size).status == "ok"
    info = inspect_image(p, max_bytes=100)
    assert info.status == "rejected" and info.reason.startswith("cannot read file: file too large")


# item 9: symlinks and manifest paths that leave the given roots
def test_symlinks_leaving_the_folder_are_skipped_and_reported(index, tmp_path):
    outside = write_image(tmp_path / "secret" / "s.png", seed=3)
    d = tmp_path / "d"
    write_image(d / "a.png", seed=4)
    os.symlink(outside, d / "link.png")
    os.symlink(outside.parent, d / "linkdir")
    os.symlink(d / "a.png", d / "inside.png")  # stays inside: followed (a duplicate of a.png)
    rep = ingest(index, [d])
    assert (rep.added, rep.duplicates) == (1, 1)
    assert sorted(os.path.basename(p) for p, _ in rep.skipped) == ["link.png", "linkdir"]
    assert all("symlink leaves" in r for _, r in rep.skipped)
    with index.session() as s:
        assert [os.path.basename(p) for p in s.scalars(select(Image.path))] == ["a.png"]
    rep = ingest(index, [d], allow_outside=True)
    assert (rep.added, rep.duplicates, rep.skipped) == (1, 1, [])


def test_manifest_paths_resolve_in_its_folder_and_may_not_escape(index, tmp_path, monkeypatch):
    secret = write_image(tmp_path / "secret.png", seed=5)
    m = tmp_path / "sub" / "m.csv"
    write_image(m.parent / "imgs" / "a.png", seed=6)
    m.parent.mkdir(exist_ok=True)
    pd.DataFrame({"path": ["imgs/a.png", "../secret.png", str(secret)]}).to_csv(m, index=False)
    monkeypatch.chdir(tmp_path)  # relative to the manifest's folder, not the current one
    rep = ingest(index, [m])
    assert rep.added == 1 and len(rep.skipped) == 2
    assert all("outside the manifest's folder" in r for _, r in rep.skipped)
    with index.session() as s:
        assert list(s.scalars(select(Image.path))) == [str(m.parent / "imgs" / "a.png")]
    assert ingest(index, [m], allow_outside=True).added == 1  # both rows are one file


def test_manifest_with_only_escaping_paths_is_an_error_without_a_batch(index, tmp_path):
    write_image(tmp_path / "x.png", seed=7)
    (tmp_path / "sub").mkdir()
    pd.DataFrame({"path": ["../x.png"]}).to_csv(tmp_path / "sub" / "m.csv", index=False)
    with pytest.raises(CurateError, match="nothing to ingest: 1 paths skipped"):
        ingest(index, [tmp_path / "sub" / "m.csv"], batch="b")
    with index.session() as s:
        assert s.scalar(select(func.count()).select_from(Batch)) == 0


# item 10: only curate's formats are decoded; PostScript never reaches Ghostscript
def test_postscript_named_jpg_never_runs_ghostscript(index, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True)
    p = tmp_path / "d" / "evil.jpg"
    p.parent.mkdir()
    p.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto showpage\n%%EOF\n")
    rep = ingest(index, [p.parent])
    assert [r for _, r in rep.rejected][0].startswith("not an image in a supported format")
    with pytest.raises(OSError):
        load_image(p)
    assert calls == []


# item 12 and 18: NUL bytes and over-long names: the same one-line error on both databases
@pytest.mark.parametrize("path,label,match", [
    ("a\x00.png", "x", "data row 1: contains a NUL byte"),
    ("a.png", "y" * 300, "data row 1: label is 300 characters; the limit is 255"),
])
def test_bad_manifest_rows_are_one_line_errors(index, tmp_path, path, label, match):
    write_image(tmp_path / "a.png", seed=8)
    pd.DataFrame({"path": [path], "label": [label]}).to_parquet(tmp_path / "m.parquet")
    with pytest.raises(CurateError, match=match) as e:
        ingest(index, [tmp_path / "m.parquet"])
    assert "\n" not in str(e.value)
    assert statuses(index) == {}


@pytest.mark.parametrize("batch,match", [
    ("", "must not be empty"), ("   ", "must not be empty"),
    ("b" * 10_000, "10000 characters; the limit is 255"), ("a\tb", "control characters"),
])
def test_bad_batch_names_are_refused(index, image_folder, batch, match):
    with pytest.raises(CurateError, match=match):
        ingest(index, [image_folder], batch=batch)
    assert statuses(index) == {}
    ingest(index, [image_folder], batch="b" * 255)  # the limit itself is fine on both
    with index.session() as s:
        assert s.scalar(select(Batch.name)) == "b" * 255


# item 21: --max-pixels / --max-bytes must be positive
@pytest.mark.parametrize("kw", [{"max_pixels": 0}, {"max_pixels": -1}, {"max_bytes": 0}])
def test_limits_must_be_positive(index, image_folder, kw):
    with pytest.raises(CurateError, match="must be a positive whole number"):
        ingest(index, [image_folder], **kw)


# item 22: rejected files are checked again on a rerun
def test_rejected_files_are_rechecked_on_rerun(index, tmp_path):
    d = tmp_path / "d"
    good = write_image(tmp_path / "src.png", size=(32, 32), seed=9).read_bytes()
    other = write_image(d / "other.png", size=(32, 32), seed=10)
    (d / "late.png").write_bytes(good[:100])          # truncated copy, fixed later
    (d / "twin.png").write_bytes(b"")                   # becomes other.png's bytes later
    rep = ingest(index, [d])
    assert (rep.added, len(rep.rejected)) == (1, 2)
    (d / "late.png").write_bytes(good)
    shutil.copy(other, d / "twin.png")
    rep = ingest(index, [d])
    assert (rep.added, rep.recovered, rep.duplicates, rep.already, rep.rejected) == (1, 1, 1, 1, [])
    assert statuses(index) == {"ok": 2, "duplicate": 1}
    with index.session() as s:
        img = s.scalar(select(Image).where(Image.path == str(d / "late.png")))
        assert (img.width, img.height, img.reason) == (32, 32, None)
    assert ingest(index, [d]).already == 3


# item 25: conflicting labels for one path are reported, none silently wins
def test_conflicting_manifest_labels_are_reported(index, tmp_path):
    write_image(tmp_path / "a.png", seed=11)
    write_image(tmp_path / "b.png", seed=12)
    rows = [("a.png", "cat"), ("a.png", "dog"), ("b.png", "cow"), ("b.png", "cow")] * 50
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(tmp_path / "m.csv", index=False)
    rep = ingest(index, [tmp_path / "m.csv"])
    assert rep.conflicts == [(str(tmp_path / "a.png"), ["cat", "dog"])]
    assert (rep.added, rep.labels) == (2, 1)
    with index.session() as s:
        assert list(s.execute(select(Image.path, Label.label).join(Label))) == [(str(tmp_path / "b.png"), "cow")]


# item 26: EXIF orientation is applied in ingest (size) and in load_image (pixels)
def test_exif_orientation_is_applied_everywhere(index, tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = (255, 0, 0)  # left half red, stored landscape 20x10
    exif = PILImage.Exif()
    exif[0x0112] = 6           # "rotate 90 CW to display"
    p = tmp_path / "d" / "phone.jpg"
    p.parent.mkdir()
    PILImage.fromarray(arr).save(p, exif=exif, quality=95)
    ingest(index, [p.parent])
    with index.session() as s:
        assert s.execute(select(Image.width, Image.height)).one() == (10, 20)
    rgb, gray = load_image(p, 3), load_image(p, 1)
    assert rgb.size == gray.size == (10, 20)
    px = np.asarray(rgb, dtype=float)
    assert px[:10, :, 0].mean() > 200 and px[10:, :, 0].mean() < 50  # red is on top now


# item 2: the database holds one ok image per sha256, and migration 0003 makes it so
def test_database_refuses_a_second_ok_image_with_the_same_bytes(index):
    with index.session() as s:
        s.add_all([Image(path="/a.png", sha256="f" * 64, status="ok"),
                   Image(path="/r1.png", sha256="f" * 64, status="rejected"),
                   Image(path="/r2.png", sha256="f" * 64, status="rejected")])
    with pytest.raises(IntegrityError):
        with index.session() as s:
            s.add(Image(path="/b.png", sha256="f" * 64, status="ok"))


def test_migration_0003_keeps_old_duplicates_out_of_the_ok_set(tmp_path, db_url):
    from alembic import command

    url = db_url or f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = create_engine(url)
    with engine.begin() as c:
        command.upgrade(_alembic_config(c), "0002")
        c.execute(text("INSERT INTO images (id, path, sha256, status, first_seen) VALUES "
                       "(1, '/a', 'aa', 'ok', '2026-01-01'), (2, '/b', 'aa', 'ok', '2026-01-01'),"
                       "(3, '/c', 'aa', 'ok', '2026-01-01'), (4, '/d', 'bb', 'ok', '2026-01-01')"))
        c.execute(text("INSERT INTO labels (image_id, label, source, status, created_at) "
                       "VALUES (2, 'cat', 'folder', 'labeled', '2026-01-01')"))
    engine.dispose()
    idx = open_index(url)
    with idx.session() as s:
        rows = s.execute(select(Image.id, Image.status, Image.reason).order_by(Image.id)).all()
        assert [(i, st) for i, st, _ in rows] == [(1, "ok"), (2, "duplicate"), (3, "duplicate"), (4, "ok")]
        assert "same bytes as image 1" in rows[1][2]
        assert s.scalar(select(Label.image_id)) == 2  # nothing recorded is lost
    idx.close()
