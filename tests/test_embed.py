import os

import numpy as np
import pytest
import torch
import torchvision
from sqlalchemy import select

from helpers import write_image
from curate.db.models import EmbeddingSet, Image
from curate.embed import embed
from curate.embeddings import load_embeddings
from curate.errors import CurateError
from curate.ingest import ingest


def test_pixels_pca_embeds_and_resumes(index, ws, image_folder, tmp_path):
    ingest(index, [image_folder], batch="b1")
    rep = embed(index, ws, encoder="pixels-pca", image_size=16, batch_size=7)
    assert (rep.embedded, rep.already, rep.dim) == (24, 0, 24)  # PCA dim capped by 24 images
    ids, X = load_embeddings(index, rep.embedding_set)
    assert X.shape == (24, 24) and X.dtype == np.float32 and np.isfinite(X).all()
    assert list(ids) == sorted(ids)
    # a rerun embeds nothing; new images are embedded with the same fitted PCA
    assert embed(index, ws, encoder="pixels-pca", image_size=16).embedded == 0
    for i in range(3):
        write_image(tmp_path / "new" / f"n{i}.png", seed=900 + i)
    ingest(index, [tmp_path / "new"], batch="b2")
    rep3 = embed(index, ws, encoder="pixels-pca", image_size=16)
    assert (rep3.embedded, rep3.already) == (3, 24)
    ids2, X2 = load_embeddings(index, rep.embedding_set)
    np.testing.assert_array_equal(X2[np.isin(ids2, ids)], X)
    assert len(load_embeddings(index, rep.embedding_set, batch="b2")[0]) == 3
    with index.session() as s:
        es = s.scalar(select(EmbeddingSet))
        assert es.count == 27 and es.params["encoder"] == "pixels-pca" and "torch" in es.versions


def test_missing_file_after_ingest_is_skipped_and_marked(index, ws, image_folder):
    ingest(index, [image_folder])
    gone = image_folder / "class0" / "img0.png"
    os.remove(gone)
    rep = embed(index, ws, encoder="pixels-pca", image_size=16)
    assert rep.embedded == 23 and rep.missing_files == [str(gone)]
    with index.session() as s:
        img = s.scalar(select(Image).where(Image.path == str(gone)))
        assert img.status == "rejected" and "missing" in img.reason


def test_resnet18_from_local_weights_file(sqlite_ws, image_folder, tmp_path):
    index = sqlite_ws.open_index()
    ingest(index, [image_folder])
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    rep = embed(index, sqlite_ws, encoder="resnet18", weights=str(tmp_path / "r18.pth"),
                image_size=32, dtype="float16")
    ids, X = load_embeddings(index, rep.embedding_set)
    assert X.shape == (24, 512) and rep.dtype == "float16"
    # the stored vectors equal a direct forward pass of the same network (no head)
    net.fc = torch.nn.Identity()
    net.eval()
    from curate.encoders.torchvision_backbones import TorchvisionEncoder
    from curate.imageio import load_image
    enc = TorchvisionEncoder("resnet18", tmp_path / "r18.pth", 32)
    with index.session() as s:
        first = s.get(Image, int(ids[0])).path
    with torch.no_grad():
        ref = net(enc.transform(load_image(first))[None]).numpy()[0]
    np.testing.assert_allclose(X[0], ref, rtol=2e-2, atol=2e-2)
    index.close()


@pytest.mark.parametrize("kwargs,match", [
    ({"encoder": "nope"}, "unknown encoder 'nope'"),
    ({"encoder": "resnet18"}, "needs --weights: a torchvision name"),
    ({"encoder": "resnet18", "weights": "/no/such/file.pth"}, "weights file not found"),
    ({"model": "missing-run"}, "no model named 'missing-run'"),
    ({"encoder": "pixels-pca", "dtype": "int8"}, "unknown dtype"),
    ({"encoder": "pixels-pca", "device": "tpu"}, "unknown device"),
])
def test_bad_encoder_inputs(sqlite_ws, image_folder, kwargs, match):
    index = sqlite_ws.open_index()
    ingest(index, [image_folder])
    with pytest.raises(CurateError, match=match):
        embed(index, sqlite_ws, **kwargs)
    index.close()


def test_weights_that_do_not_fit(sqlite_ws, image_folder, tmp_path):
    index = sqlite_ws.open_index()
    ingest(index, [image_folder])
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    (tmp_path / "junk.pth").write_text("junk")
    with pytest.raises(CurateError, match="does not fit resnet18"):
        embed(index, sqlite_ws, encoder="resnet18", weights=str(tmp_path / "bad.pth"))
    with pytest.raises(CurateError, match="cannot read weights file"):
        embed(index, sqlite_ws, encoder="resnet18", weights=str(tmp_path / "junk.pth"))
    index.close()


def test_no_images_yet(sqlite_ws):
    index = sqlite_ws.open_index()
    with pytest.raises(CurateError, match="no ingested images"):
        embed(index, sqlite_ws, encoder="pixels-pca")
    index.close()
