"""The one image dataset (curate.data.ImageDataset) over records, sources and the trainers'
views: unreadable images are reported by index, never raised."""

import numpy as np
import PIL.Image
import pytest
import torch

from curate.data import ImageDataset, ImageRecord, RecordSource, collate_skip_missing
from curate.trainers.datamodule import ArraySource, ViewDataset
from helpers import write_image


def to_tensor(img):
    return torch.from_numpy(np.asarray(img, np.uint8).copy())


def test_records_missing_files_and_bombs_are_none(tmp_path, monkeypatch):
    recs = [ImageRecord(1, str(write_image(tmp_path / "a.png"))), ImageRecord(2, str(tmp_path / "gone.png")),
            ImageRecord(3, str(write_image(tmp_path / "b.png", seed=1)))]
    ds = ImageDataset(recs, to_tensor, channels=1)
    assert isinstance(ds.source, RecordSource) and len(ds) == 3
    assert ds[0][0] == 0 and ds[0][1].shape == (16, 16) and ds[1] == (1, None)
    idx, x, missing = collate_skip_missing([ds[i] for i in range(3)])
    assert idx.tolist() == [0, 2] and missing == [1] and x.shape == (2, 16, 16)
    # a file replaced by a decompression bomb since ingest: skipped like a missing one
    view = ViewDataset(recs, lambda im: [to_tensor(im)], labels=[4, 5, 6])
    assert view[1] is None and view[0][1] == 4 and view[2][1] == 6
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)  # 16x16 > 2 * 100: Pillow refuses it
    assert ds[2] == (2, None) and view[2] is None


def test_sources_share_the_loader():
    X = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    ds = ImageDataset(ArraySource(X), to_tensor)
    assert [i for i, _ in (ds[0], ds[1])] == [0, 1] and torch.equal(ds[1][1], torch.from_numpy(X[1]))
    views = ViewDataset(ArraySource(X), lambda im: [to_tensor(im)])
    assert views[0][1] == -1 and torch.equal(views[0][0][0], torch.from_numpy(X[0]))
    with pytest.raises(IndexError):
        ds[2]
