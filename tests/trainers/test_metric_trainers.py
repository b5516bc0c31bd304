"""Metric trainers (contrastive, triplet, ncl): learning, recording, resume, export, bad labels."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sqlalchemy import func, select

from curate.db.models import Model, TrainingRun
from curate.errors import CurateError
from curate.trainers import TRAINERS
from curate.trainers.run import load_methods, train

load_methods()
FAST = dict(backbone="small-cnn", image_size=16, channels=1, num_workers=0, progress=False,
            devices=1, accelerator="cpu", checkpoint_every=0,
            holdout_fraction=0.0)  # counts below assume every image trains


def class_images(n_per_class=(8, 8, 8), seed=0):
    """uint8 (N, 16, 16) images whose class is a bright horizontal band, plus labels."""
    rng = np.random.default_rng(seed)
    ys = np.repeat(np.arange(len(n_per_class)), n_per_class)
    X = rng.integers(0, 80, (len(ys), 16, 16)).astype(np.uint8)
    for i, c in enumerate(ys):
        X[i, 5 * c: 5 * c + 5, 2:14] = 230
    return X, ys


def labelled_folder(root: Path, n_per_class=(8, 8, 8)) -> Path:
    X, ys = class_images(n_per_class)
    for i, (x, c) in enumerate(zip(X, ys)):
        p = root / f"c{c}" / f"{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x).save(p)
    return root


def ingest(index, folder, labels="folders"):
    from curate.ingest import ingest as run_ingest

    run_ingest(index, [str(folder)], labels=labels)


def _batch(module, method, X, ys):
    tf = module.train_views()
    views = torch.stack([tf(Image.fromarray(x))[0] for x in X])
    y = torch.as_tensor(ys)
    if method == "contrastive":  # fixed pairs: each anchor with a same-class and an other-class item
        from curate.trainers.pairs import class_pairs

        rows = torch.as_tensor(class_pairs(ys, 0))
        return [views[rows[:, 0]], views[rows[:, 1]]], rows[:, 2]
    return [views], y


@pytest.mark.parametrize("method,opts", [("contrastive", {"embedding_dim": 2}),
                                         ("triplet", {"mining": "all"}),
                                         ("ncl", {"distance": "great-circle"}),
                                         ("classifier", {})])
def test_loss_decreases_on_fixed_batch(method, opts):
    torch.manual_seed(0)
    X, ys = class_images((6, 6, 6))
    m = TRAINERS.get(method)(backbone="small-cnn", image_size=16, channels=1, **opts)
    m.classes = ["0", "1", "2"]
    m._init_classes(3)
    m.log = m.log_dict = m.log_loss = lambda *a, **k: None  # no Trainer attached
    batch = _batch(m, method, X, ys)
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(20):
        opt.zero_grad()
        loss = m.training_step(batch, step)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 1e-3, losses


def test_ncl_vmf_ce_run_recorded_resumed_exported(sqlite_ws, tmp_path):
    """Interrupted after epoch 1 -> failed + checkpoint; resume finishes with the same
    centroids restored; encoder.pt embeds on the sphere; the checkpoint holds the kappas
    (no separate vmf.npz), usable as a vmf scorer on the model's embeddings."""
    from lightning.pytorch.callbacks import Callback

    index = sqlite_ws.open_index()
    ingest(index, labelled_folder(tmp_path / "imgs"))

    class Stop(Callback):  # crash at the start of epoch 2, after epoch 1's checkpoint
        def on_train_epoch_end(self, trainer, pl_module):
            Stop.centroids = pl_module.centroids.clone()

        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(index, sqlite_ws, "ncl", name="n1", epochs=2, batch_size=8, vmf=True, with_ce=True,
              embedding_dim=8, callbacks=[Stop()], **FAST)
    with index.session() as s:
        assert s.scalar(select(TrainingRun.status).where(TrainingRun.name == "n1")) == "failed"

    class Check(Callback):
        def on_train_start(self, trainer, pl_module):
            Check.restored = pl_module.centroids.clone()

    run = train(index, sqlite_ws, resume="n1", callbacks=[Check()])
    assert run.status == "finished" and run.data["steps"] == 6
    assert torch.allclose(Check.restored, Stop.centroids)
    with index.session() as s:
        model = s.scalar(select(Model).where(Model.name == "n1"))
    p = model.params
    assert p["dim"] == 8 and p["normalize"] is True and p["classes"] == ["c0", "c1", "c2"]
    assert "vmf_params" not in p
    ckpt = Path(run.checkpoint_path)
    assert not (ckpt.parents[1] / "vmf.npz").exists()
    ncl = torch.load(ckpt, map_location="cpu", weights_only=False)["ncl"]
    means, kappas = np.array(ncl["means"]), np.array(ncl["kappas"])
    assert means.shape == (3, 8) and ncl["labels"] == ["c0", "c1", "c2"]
    assert (kappas > 0).all() and np.allclose(np.linalg.norm(means, axis=1), 1, atol=1e-5)
    from curate.embed import embed
    from curate.embeddings import load_embeddings

    rep = embed(index, sqlite_ws, model="n1", device="cpu", num_workers=0)
    assert rep.dim == 8 and rep.embedded == 24
    _, Z = load_embeddings(index, rep.embedding_set)
    assert np.allclose(np.linalg.norm(Z, axis=1), 1, atol=1e-4)
    from curate.novelty.vmf import VMFScorer

    assert np.isfinite(VMFScorer.from_params(means, kappas, ncl["labels"]).score_samples(Z)).all()
    from curate.encoders import ENCODERS

    enc = ENCODERS.get("trained")(weights=model.weights_path)
    x = torch.stack([enc.transform(Image.open(next((tmp_path / "imgs" / "c0").iterdir())))] * 2)
    pr = enc.predict_proba(x)
    assert pr.shape == (2, 3) and torch.allclose(pr.sum(1), torch.ones(2))
    index.close()


def test_contrastive_knn_2d_embeds_unnormalised(sqlite_ws, tmp_path):
    index = sqlite_ws.open_index()
    ingest(index, labelled_folder(tmp_path / "imgs"))
    run = train(index, sqlite_ws, "contrastive", name="c1", epochs=2, batch_size=8, pairs="knn",
                knn_negatives="same-class", embedding_dim=2, **FAST)
    assert run.status == "finished" and run.params["module"]["pairs"] == "knn"
    assert run.metrics[-1]["epoch"] == 1 and "d_neg" in run.metrics[-1]
    from curate.embed import embed
    from curate.embeddings import load_embeddings

    rep = embed(index, sqlite_ws, model="c1", device="cpu", num_workers=0)
    _, Z = load_embeddings(index, rep.embedding_set)
    assert Z.shape == (24, 2) and not np.allclose(np.linalg.norm(Z, axis=1), 1, atol=1e-3)
    index.close()


def test_pair_table_refreshed_each_epoch():
    import lightning as L

    from curate.trainers.augment import eval_transform
    from curate.trainers.datamodule import ArraySource, ImageDataModule
    from curate.trainers.pairs import knn_table

    X, ys = class_images((8, 8))
    m = TRAINERS.get("contrastive")(backbone="small-cnn", image_size=16, channels=1, pairs="knn",
                                    embedding_dim=3)
    dm = ImageDataModule(ArraySource(X), m.train_views(), labels=ys, classes=["a", "b"],
                         batch_size=8, num_workers=0, eval_fn=eval_transform(16, 1))
    L.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_checkpointing=False,
              enable_model_summary=False, accelerator="cpu").fit(m, datamodule=dm)
    assert m._pairs_epoch == 2  # refreshed after each of the 2 epochs
    rows = m._pairs.numpy()
    table = knn_table(m.embed_source(dm.source, dm.eval_fn), ys)
    pos = rows[rows[:, 2] == 1]
    assert all(j in table[i] for i, j, _ in pos)  # positives are current neighbours


@pytest.mark.parametrize("counts,opts,match", [
    (None, {}, "no labelled images"),
    ((8,), {}, "only one class"),
    ((8, 1), {}, "fewer than 2 images"),
    ((8, 5), {"pairs": "knn"}, "fewer than 6 images"),
])
def test_bad_labels_one_line_error_and_no_run(sqlite_ws, tmp_path, counts, opts, match):
    index = sqlite_ws.open_index()
    if counts is None:
        ingest(index, labelled_folder(tmp_path / "imgs", (4, 4)), labels=None)
    else:
        ingest(index, labelled_folder(tmp_path / "imgs", counts))
    with pytest.raises(CurateError, match=match) as e:
        train(index, sqlite_ws, "contrastive", epochs=1, batch_size=4, **opts, **FAST)
    assert "\n" not in str(e.value)
    with index.session() as s:
        assert s.scalar(select(func.count(TrainingRun.id))) == 0
    index.close()


def test_cli_train_metric_methods_embed_and_plot(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from curate.cli import main

    monkeypatch.delenv("CURATE_WORKSPACE", raising=False)
    monkeypatch.delenv("CURATE_DB", raising=False)
    ws, runner = tmp_path / "ws", CliRunner()

    def run(*args, code=0):
        r = runner.invoke(main, ["-w", str(ws), *map(str, args)], catch_exceptions=False)
        assert r.exit_code == code, (r.output, r.stderr)
        return r

    runner.invoke(main, ["init", str(ws)], catch_exceptions=False)
    run("ingest", labelled_folder(tmp_path / "imgs", (6, 6, 6)), "--labels", "folders")
    fast = ["--image-size", 16, "--workers", 0, "--accelerator", "cpu", "--devices", 1,
            "--checkpoint-every", 0, "--holdout-fraction", 0, "--json"]  # 6 per class: keep all
    js = json.loads(run("train", "--method", "ncl", "--vmf", "--with-ce", "--distance", "cosine",
                        "--embedding-dim", 4, "--epochs", 1, "--batch-size", 6, "--name", "n",
                        *fast).stdout)
    mod = js["params"]["module"]
    assert (mod["vmf"], mod["with_ce"], mod["distance"], mod["embedding_dim"]) == (True, True, "cosine", 4)
    js = json.loads(run("train", "--method", "classifier", "--name", "cls", *fast).stdout)
    a = js["params"]["args"]  # the paper-000 defaults, as nothing was given
    assert (a["epochs"], a["batch_size"], a["optimizer"]) == (5, 32, "sgd")
    js = json.loads(run("train", "--method", "contrastive", "--pairs", "knn", "--embedding-dim", 2,
                        "--margin", 2.0, "--epochs", 1, "--batch-size", 6, "--name", "c2", *fast).stdout)
    assert js["params"]["module"]["margin"] == 2.0
    run("embed", "--model", "c2")
    res = json.loads(run("plot", "embedding", "--model", "c2", "--out", tmp_path / "m.png",
                         "--json").stdout)
    assert res["projection"] == "identity" and (tmp_path / "m.png").is_file()
    r = run("train", "--method", "triplet", "--distance", "great-circle", *fast, code=2)
    assert r.stderr.startswith("error: option distance must be one of") and r.stderr.count("\n") == 1
