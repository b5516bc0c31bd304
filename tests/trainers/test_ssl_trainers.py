"""SSL trainers (simclr, moco, dino, dino-neg, autoencoder): steps on real PNGs through
the index, learning on a fixed batch, export round-trip, the negative loss."""

import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from PIL import Image
from sqlalchemy import select

from curate.db.models import Model
from curate.encoders import ENCODERS
from curate.errors import CurateError
from curate.trainers import TRAINERS
from curate.trainers.datamodule import ArraySource, ImageDataModule, ViewDataset, collate_views
from curate.trainers.methods.dino import negative_loss
from curate.trainers.encoder import read_encoder_file
from curate.trainers.run import load_methods, quiet_lightning, train
from curate.workspace import init_workspace

load_methods()
quiet_lightning()
SSL = ["autoencoder", "dino", "dino-neg", "moco", "simclr"]
FAST = dict(image_size=16, batch_size=8, num_workers=0, progress=False, devices=1,
            accelerator="cpu", checkpoint_every=0)
SMALL = {"dino": dict(out_dim=256, local_crops=2), "dino-neg": dict(out_dim=256, local_crops=2),
         "moco": dict(queue_size=64)}


def class_images(n=24, size=16, seed=0):
    rng = np.random.default_rng(seed)
    ys = np.arange(n) % 3
    X = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
    for i, c in enumerate(ys):
        X[i, 5 * c: 5 * c + 5, 2:size - 2] = 230
    return X, ys


@pytest.fixture(scope="module")
def ws_index(tmp_path_factory):
    from curate.ingest import ingest

    root = tmp_path_factory.mktemp("ssl")
    X, ys = class_images()
    for i, (x, c) in enumerate(zip(X, ys)):
        p = root / "imgs" / f"c{c}" / f"{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x).save(p)
    ws = init_workspace(root / "ws")
    index = ws.open_index()
    ingest(index, [str(root / "imgs")], batch="b1", labels="folders")
    yield ws, index
    index.close()


def test_ssl_methods_are_registered():
    assert set(SSL) <= set(TRAINERS.names())


@pytest.mark.parametrize("method", SSL)
def test_two_steps_record_a_run_and_export_the_backbone(ws_index, method):
    ws, index = ws_index
    run = train(index, ws, method, name=f"two-{method}", max_steps=2, knn_monitor=method == "simclr",
                **FAST, **SMALL.get(method, {}))
    assert run.status == "finished" and run.data["steps"] == 2 and run.data["images"] > 0
    assert run.data["ids_sha256"] and run.versions.get("torch")
    assert all(math.isfinite(e["loss"]) for e in run.metrics) and run.metrics
    if method == "simclr":
        assert "knn_acc" in run.metrics[-1] and run.data["holdout"] > 0
    with index.session() as s:
        m = s.scalar(select(Model).where(Model.name == run.name))
    assert m.encoder == "trained" and m.run_id == run.id and m.params["channels"] == 1
    assert Path(run.checkpoint_path).is_file() and Path(m.weights_path).is_file()

    # round trip: Lightning checkpoint -> fresh module == encoder.pt -> `trained` encoder
    ckpt = torch.load(run.checkpoint_path, map_location="cpu", weights_only=False)
    module = TRAINERS.get(method)(**{k: v for k, v in ckpt["hyper_parameters"].items()})
    module.load_state_dict(ckpt["state_dict"])
    enc = ENCODERS.get(m.encoder)(weights=Path(m.weights_path), image_size=m.params["image_size"],
                                  **{k: v for k, v in m.params.items() if k != "image_size"})
    x = torch.stack([enc.transform(Image.fromarray(a)) for a in class_images(4, seed=5)[0]])
    a = torch.nn.functional.normalize(module.embed(x), dim=1)
    b = enc.encode(x)
    assert b.shape == (4, module.feature_dim) and torch.allclose(a, b, atol=1e-6)
    file = read_encoder_file(m.weights_path)
    own = module.scoring_backbone().state_dict()
    assert all(torch.equal(file["state_dict"][k], own[k]) for k in own)


class _Losses(Callback):
    def __init__(self):
        self.values = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.values.append(float(outputs["loss"]))


@pytest.mark.parametrize("method", SSL)
def test_loss_decreases_on_a_fixed_batch(method):
    """20 steps on one fixed batch of views. DINO: teacher centring is frozen
    (center_momentum=1) because on a fixed batch the centre converges to the batch mean
    and flattens the teacher target, which raises L_pos again after ~6 steps. MoCo: the
    queue fills with this batch's own keys, so the loss falls towards ~log(queue/B + 1)."""
    L.seed_everything(0, verbose=False)
    X, _ = class_images(16)
    extra = dict(SMALL.get(method, {}))
    if method.startswith("dino"):
        extra.update(center_momentum=1.0, local_crops=1)
    m = TRAINERS.get(method)(backbone="small-cnn", image_size=16, channels=1, batch_size=16,
                             lr=3e-3, **extra)
    ds = ViewDataset(ArraySource(X), m.train_views())
    batch = collate_views([ds[i] for i in range(16)])
    loader = torch.utils.data.DataLoader([batch] * 20, batch_size=None)
    rec = _Losses()
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, max_epochs=1,
              enable_checkpointing=False, enable_model_summary=False, callbacks=[rec]).fit(m, loader)
    v = rec.values
    if method == "moco":  # step 0 meets a random queue (near-zero loss); compare from step 1
        v = v[1:]
    assert len(v) >= 19 and np.mean(v[-3:]) < np.mean(v[:3]), v


def test_negative_loss_is_log_k_for_uniform_output_and_larger_otherwise():
    K = 64
    uniform = torch.zeros(5, K)
    assert torch.isclose(negative_loss([uniform, uniform + 3.0], 0.1), torch.tensor(math.log(K)))
    peaked = torch.randn(2, 5, K)
    assert negative_loss(peaked, 0.1) > math.log(K) + 1e-3
    manual = -(1 / K) * torch.log_softmax(peaked / 0.1, -1).sum(-1).mean()
    assert torch.isclose(negative_loss(peaked, 0.1), manual)


def test_dino_neg_views_and_losses():
    m = TRAINERS.get("dino-neg")(image_size=16, channels=1, out_dim=128, local_crops=2,
                                 neg_local_crops=1, neg_shift="perm-4")
    views = m.train_views()(Image.fromarray(class_images(1)[0][0]))
    assert [v.shape[-1] for v in views] == [16, 16, 8, 8, 16, 8]  # 2 global, 2 local | 1+1 negative
    batch = ([torch.stack([v] * 4) for v in views], torch.zeros(4, dtype=torch.long))
    loss = m.training_step(batch, 0)
    assert torch.isfinite(loss) and loss > math.log(128)  # L_neg >= log K, L_pos >= 0


def test_dino_neg_aux_folder(ws_index, tmp_path):
    ws, index = ws_index
    with pytest.raises(CurateError, match="no such folder"):
        train(index, ws, "dino-neg", name="aux-missing", neg_source="aux",
              aux=str(tmp_path / "nope"), max_steps=1, **FAST, out_dim=64, local_crops=1)
    aux = tmp_path / "aux"
    aux.mkdir()
    for i in range(4):
        Image.fromarray(np.full((20, 20), 40 * i, np.uint8)).save(aux / f"{i}.png")
    run = train(index, ws, "dino-neg", name="aux-ok", neg_source="combined", aux=str(aux),
                max_steps=1, **FAST, out_dim=64, local_crops=1)
    assert run.status == "finished" and run.data["aux_images"] == 4 and run.data["aux_kind"] == "folder"
    with pytest.raises(CurateError, match="needs --aux"):
        TRAINERS.get("dino-neg")(image_size=16, channels=1, neg_source="aux")


@pytest.mark.parametrize("method", TRAINERS.names())
def test_bad_options_are_one_line_errors(method):
    with pytest.raises(CurateError, match="has no option"):
        TRAINERS.get(method)(image_size=16, channels=1, no_such_option=1)
    with pytest.raises(CurateError, match="too small"):
        TRAINERS.get(method)(backbone="resnet18", image_size=8, channels=1)


def test_datamodule_over_arrays_caps_the_batch():
    X, ys = class_images(6)
    m = TRAINERS.get("simclr")(image_size=16, channels=1)
    dm = ImageDataModule(ArraySource(X), m.train_views(), labels=ys, batch_size=256, num_workers=0)
    assert dm.effective_batch_size(1) == 6 and dm.effective_batch_size(2) == 3
    with pytest.raises(CurateError, match="at least 2"):
        ImageDataModule(ArraySource(X[:1]), m.train_views())
