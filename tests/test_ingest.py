import os
import shutil

import pandas as pd
import pytest
from sqlalchemy import func, select

from helpers import write_image
from curate.db.models import Batch, DuplicatePath, Image, Label
from curate.errors import CurateError
from curate.ingest import ingest


def counts(index):
    with index.session() as s:
        return {st: n for st, n in s.execute(select(Image.status, func.count()).group_by(Image.status))}


def test_folder_with_labels_then_rerun_adds_nothing(index, image_folder):
    rep = ingest(index, [image_folder], batch="b1", labels="folders")
    assert (rep.files, rep.added, rep.labels, rep.rejected) == (24, 24, 24, [])
    with index.session() as s:
        labs = dict(s.execute(select(Image.path, Label.label).join(Label, Label.image_id == Image.id)).all())
        assert labs[str(image_folder / "class1" / "img3.png")] == "class1"
        assert s.scalar(select(Label.source).limit(1)) == "folder"
        assert s.scalar(select(Batch.name)) == "b1"
    rep2 = ingest(index, [image_folder], batch="b1", labels="folders")
    assert (rep2.added, rep2.already, rep2.labels, rep2.duplicates) == (0, 24, 0, 0)
    assert counts(index) == {"ok": 24}


def test_same_bytes_are_one_image(index, tmp_path):
    a = write_image(tmp_path / "a" / "x.png", seed=1)
    (tmp_path / "b").mkdir()
    shutil.copy(a, tmp_path / "b" / "copy.png")
    rep = ingest(index, [tmp_path / "a", tmp_path / "b"])
    assert (rep.added, rep.duplicates) == (1, 1)
    with index.session() as s:
        dup = s.scalar(select(DuplicatePath))
        assert dup.path.endswith("copy.png")
        assert s.get(Image, dup.image_id).path.endswith("x.png")
    assert ingest(index, [tmp_path / "b"]).already == 1


def test_bad_files_are_rejected_and_the_batch_continues(index, tmp_path):
    d = tmp_path / "mixed"
    good = write_image(d / "good.jpg", size=(32, 32), fmt="JPEG", seed=3)
    (d / "zero.png").write_bytes(b"")
    (d / "text.jpg").write_text("not an image")
    (d / "trunc.jpg").write_bytes(good.read_bytes()[:200])
    write_image(d / "deep16.tif", mode="I;16", fmt="TIFF", seed=4)
    write_image(d / "alpha.png", mode="RGBA", seed=5)
    write_image(d / "ünï cødé name.png", seed=6)
    write_image(d / "sub dir" / "spaced file.bmp", seed=7, fmt="BMP")
    (d / "notes.txt").write_text("ignored: not an image extension")
    rep = ingest(index, [d])
    reasons = {os.path.basename(p): r for p, r in rep.rejected}
    assert set(reasons) == {"zero.png", "text.jpg", "trunc.jpg"}
    assert reasons["zero.png"] == "zero-byte file"
    assert rep.added == 5
    with index.session() as s:
        paths = set(s.scalars(select(Image.path).where(Image.status == "ok")))
    assert str(d / "ünï cødé name.png") in paths and str(d / "sub dir" / "spaced file.bmp") in paths
    # rejected files are recorded with their reason; a rerun adds nothing and re-checks them
    assert counts(index) == {"ok": 5, "rejected": 3}
    rep2 = ingest(index, [d])
    assert (rep2.already, rep2.added, len(rep2.rejected)) == (5, 0, 3)
    assert counts(index) == {"ok": 5, "rejected": 3}


def test_symlink_loops_do_not_hang(index, tmp_path):
    d = tmp_path / "loopy"
    write_image(d / "a.png", seed=1)
    os.symlink(d, d / "back")            # directory loop
    os.symlink(d / "self.png", d / "self.png")  # file that points at itself
    rep = ingest(index, [d])
    assert rep.added == 1
    assert [os.path.basename(p) for p, _ in rep.rejected] == ["self.png"]
    assert "cannot read file" in rep.rejected[0][1]


def test_manifest_with_labels(index, tmp_path):
    a = write_image(tmp_path / "imgs" / "a.png", seed=1)
    b = write_image(tmp_path / "imgs" / "b.png", seed=2)
    pd.DataFrame({"path": ["imgs/a.png", str(b)], "label": ["cat", "dog"]}).to_csv(tmp_path / "m.csv", index=False)
    pd.DataFrame({"path": [str(a)]}).to_parquet(tmp_path / "m.parquet")
    rep = ingest(index, [tmp_path / "m.csv"])
    assert (rep.added, rep.labels) == (2, 2)
    with index.session() as s:
        assert sorted(s.scalars(select(Label.label))) == ["cat", "dog"]
        assert set(s.scalars(select(Label.source))) == {"manifest"}
    assert ingest(index, [tmp_path / "m.parquet"]).already == 1


def test_labels_csv_for_a_folder(index, tmp_path, image_folder):
    pd.DataFrame({"path": [str(image_folder / "class0" / "img0.png")], "label": ["special"]}).to_csv(
        tmp_path / "labels.csv", index=False)
    rep = ingest(index, [image_folder], labels=str(tmp_path / "labels.csv"))
    assert rep.labels == 1


@pytest.mark.parametrize("make,match", [
    (lambda p: p / "empty", "no image files"),
    (lambda p: p / "nope", "path not found"),
])
def test_bad_inputs_raise_one_line_and_keep_index(index, image_folder, tmp_path, make, match):
    ingest(index, [image_folder])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CurateError, match=match) as e:
        ingest(index, [make(tmp_path)])
    assert "\n" not in str(e.value)
    assert counts(index) == {"ok": 24}


def test_manifest_without_path_column(index, tmp_path):
    pd.DataFrame({"file": ["x.png"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(CurateError, match="no 'path' column"):
        ingest(index, [tmp_path / "m.csv"])
