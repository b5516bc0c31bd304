"""The supervised baseline: fine-tune / linear-probe, penultimate features, softmax confidence."""

import numpy as np
import pytest
import torch
from sqlalchemy import select

from curate.db.models import Model
from curate.embed import predict_proba
from curate.novelty.softmax import softmax_novelty
from curate.trainers.run import load_methods, train

load_methods()
FAST = dict(backbone="small-cnn", image_size=16, channels=1, num_workers=0, progress=False,
            devices=1, accelerator="cpu", checkpoint_every=0,
            holdout_fraction=0.0)  # counts below assume every image trains


def labelled_folder(root, n_per_class=(8, 8, 8)):
    """Grayscale 16 px PNGs in ``root/c<k>/``; class k = a bright band at rows 5k..5k+4."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, n in enumerate(n_per_class):
        for i in range(n):
            x = rng.integers(0, 80, (16, 16)).astype(np.uint8)
            x[5 * c: 5 * c + 5, 2:14] = 230
            (root / f"c{c}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(root / f"c{c}" / f"{i:03d}.png")
    return root


def ingest(index, folder, labels="folders"):
    from curate.ingest import ingest as run_ingest

    run_ingest(index, [str(folder)], labels=labels)


def test_classifier_fine_tune_then_linear_probe(sqlite_ws, tmp_path):
    index = sqlite_ws.open_index()
    ingest(index, labelled_folder(tmp_path / "imgs"))
    run = train(index, sqlite_ws, "classifier", name="cls", epochs=3, batch_size=8,
                optimizer="sgd", **FAST)
    assert run.status == "finished" and run.params["module"]["mode"] == "fine-tune"
    assert run.params["module"]["optimizer"] == "sgd"
    with index.session() as s:
        m = s.scalar(select(Model).where(Model.name == "cls"))
    assert m.params["classes"] == ["c0", "c1", "c2"] and m.params["dim"] == 256

    from curate.embed import embed

    rep = embed(index, sqlite_ws, model="cls", device="cpu", num_workers=0)
    assert rep.dim == 256  # penultimate (backbone) features
    ids, probs, classes = predict_proba(index, sqlite_ws, "cls", device="cpu")
    assert probs.shape == (24, 3) and classes == ["c0", "c1", "c2"]
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    nov = softmax_novelty(probs)
    assert nov.shape == (24,) and (nov >= 0).all() and (nov <= 1 - 1 / 3 + 1e-6).all()

    # linear probe on the fine-tuned backbone: the backbone stays exactly as loaded
    from curate.trainers.encoder import read_encoder_file

    before = read_encoder_file(m.weights_path)["state_dict"]
    run2 = train(index, sqlite_ws, "classifier", name="probe", epochs=1, batch_size=8,
                 mode="linear-probe", weights=m.weights_path, optimizer="sgd", **FAST)
    with index.session() as s:
        w2 = s.scalar(select(Model.weights_path).where(Model.name == "probe"))
    after = read_encoder_file(w2)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert run2.params["module"]["mode"] == "linear-probe"
    index.close()


def test_linear_probe_without_weights_warns(sqlite_ws, tmp_path):
    index = sqlite_ws.open_index()
    ingest(index, labelled_folder(tmp_path / "imgs", (4, 4)))
    with pytest.warns(UserWarning, match="random features"):
        train(index, sqlite_ws, "classifier", epochs=1, batch_size=4, mode="linear-probe", **FAST)
    index.close()


def test_predict_proba_needs_a_classifier_head(sqlite_ws, tmp_path):
    from curate.errors import CurateError

    index = sqlite_ws.open_index()
    ingest(index, labelled_folder(tmp_path / "imgs", (6, 6)))
    train(index, sqlite_ws, "ncl", name="n", epochs=1, batch_size=4, embedding_dim=4, **FAST)
    with pytest.raises(CurateError, match="no classifier head"):
        predict_proba(index, sqlite_ws, "n", device="cpu")
    with pytest.raises(CurateError, match="no model named"):
        predict_proba(index, sqlite_ws, "nope")
    index.close()
