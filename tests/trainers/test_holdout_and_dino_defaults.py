"""`curate train --holdout-fraction` (images the encoder never sees, stored with the run)
and the DINO defaults of thesis 003: teacher-temperature schedule 0.04 -> 0.01, lambda
scaling of L_neg."""

import lightning as L
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from lightning.pytorch.callbacks import Callback

from curate.cli import main
from curate.errors import CurateError
from curate.provenance import ids_hash, read_split
from curate.trainers import TRAINERS
from curate.trainers.datamodule import ArraySource, ImageDataModule, holdout_split
from curate.trainers.run import load_methods, quiet_lightning, train

load_methods()
quiet_lightning()
FAST = dict(image_size=16, batch_size=8, num_workers=0, progress=False, devices=1,
            accelerator="cpu", checkpoint_every=0)
SMALL = dict(out_dim=64, hidden_dim=32, bottleneck_dim=16, local_crops=2)


@pytest.fixture(scope="module")
def ws_index(tmp_path_factory):
    from helpers import gray_noise_workspace

    ws, index = gray_noise_workspace(tmp_path_factory.mktemp("holdout"), 40, batch="b1")
    yield ws, index
    index.close()


def test_holdout_split_is_seeded_and_reproducible():
    a = holdout_split(100, 0.1, 0)
    assert len(a) == 10 and np.array_equal(a, holdout_split(100, 0.1, 0)) and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, holdout_split(100, 0.1, 1))
    assert len(holdout_split(100, 0.0, 0)) == 0 and len(holdout_split(3, 0.5, 0)) == 0  # < 2 left
    with pytest.raises(CurateError, match="holdout-fraction must be in"):
        holdout_split(10, 1.0, 0)


def test_train_holds_out_images_and_stores_their_ids(ws_index):
    ws, index = ws_index
    run = train(index, ws, "simclr", name="held", max_steps=1, **FAST)  # default fraction 0.1
    split = run.data["holdout_split"]
    assert run.params["args"]["holdout_fraction"] == 0.1 and split["n_holdout"] == 4
    with np.load(split["path"]) as z:
        tr, ho = z["train_ids"], z["holdout_ids"]
    assert len(tr) == run.data["images"] == 36 and len(ho) == 4 and not np.intersect1d(tr, ho).size
    assert ids_hash(ho) == split["holdout_ids_sha256"] and ids_hash(tr) == split["train_ids_sha256"]
    assert split["ids_hash_version"] == 2 and run.data["ids_sha256"] == ids_hash(tr)
    got_tr, got_ho = read_split(split, "run held")
    assert np.array_equal(got_tr, tr) and np.array_equal(got_ho, ho)
    from curate.data import list_images

    ids = np.array([r.id for r in list_images(index, batch="b1")])
    assert np.array_equal(np.sort(np.r_[tr, ho]), ids)
    assert np.array_equal(ho, ids[holdout_split(len(ids), 0.1, 0)])  # the recorded rule
    run2 = train(index, ws, "simclr", name="held-half", max_steps=1, holdout_fraction=0.5, seed=3,
                 **FAST)
    assert run2.data["holdout_split"]["n_holdout"] == 20 and run2.data["images"] == 20
    run0 = train(index, ws, "simclr", name="held-none", max_steps=1, holdout_fraction=0.0, **FAST)
    assert run0.data["images"] == 40 and run0.data["holdout_split"]["n_holdout"] == 0


def test_cli_has_holdout_fraction(ws_index):
    ws, _ = ws_index
    r = CliRunner().invoke(main, ["-w", str(ws.root), "train", "--help"])
    assert "--holdout-fraction" in r.output and "never trained on" in r.output


def test_dino_defaults_follow_the_thesis():
    m = TRAINERS.get("dino")(image_size=16, channels=1, **SMALL)
    assert m.opts["warmup_teacher_temp"] == 0.04 and m.opts["teacher_temp"] == 0.01
    assert m.opts["student_temp"] == 0.1 and m.opts["warmup_teacher_temp_epochs"] is None
    m5 = TRAINERS.get("dino")(image_size=16, channels=1, warmup_teacher_temp_epochs=5, **SMALL)
    got = [m5.teacher_temperature(e) for e in range(7)]
    assert got == pytest.approx([0.04, 0.0325, 0.025, 0.0175, 0.01, 0.01, 0.01])
    m0 = TRAINERS.get("dino")(image_size=16, channels=1, warmup_teacher_temp_epochs=0, **SMALL)
    assert m0.teacher_temperature(0) == 0.01
    assert m.teacher_temperature(0) == 0.04  # no Trainer: one planned epoch, the start value


class _Temps(Callback):
    def __init__(self):
        self.temps = []

    def on_train_epoch_start(self, trainer, module):
        self.temps.append(module.teacher_temperature())


def test_teacher_temperature_falls_linearly_over_the_run():
    X = np.random.default_rng(0).integers(0, 255, (16, 16, 16), dtype=np.uint8)
    m = TRAINERS.get("dino")(image_size=16, channels=1, batch_size=8, **SMALL)
    dm = ImageDataModule(ArraySource(X), m.train_views(), batch_size=8, num_workers=0)
    cb = _Temps()
    L.Trainer(max_epochs=4, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
              enable_checkpointing=False, enable_model_summary=False, callbacks=[cb]).fit(m, dm)
    assert cb.temps == pytest.approx([0.04, 0.03, 0.02, 0.01])  # 0.04 -> 0.01 over 4 epochs


def test_lambda_scales_the_mean_losses_like_the_thesis_sums():
    neg = TRAINERS.get("dino-neg")
    assert neg(image_size=16, channels=1, out_dim=64, hidden_dim=32, bottleneck_dim=16) \
        .neg_loss_factor() == pytest.approx(7 / 14)  # 1 + 6 negatives, 2 x 7 positive pairs
    m = neg(image_size=16, channels=1, neg_weight=2.0, neg_global_crops=2, neg_local_crops=0,
            **SMALL)
    assert m.neg_loss_factor() == pytest.approx(2 / (2 * 3))
    assert m.record_params()["neg_loss_factor"] == pytest.approx(1 / 3)
    # the trained loss = L_pos + lambda (N / P) L_neg, i.e. (Eq. 3 + lambda Eq. 4) / P
    X = np.random.default_rng(1).integers(0, 255, (8, 16, 16), dtype=np.uint8)
    dm = ImageDataModule(ArraySource(X), m.train_views(), batch_size=8, num_workers=0)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", devices=1, logger=False,
                        enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False)
    trainer.fit(m, dm)
    got = trainer.callback_metrics
    assert float(got["loss_step"]) == pytest.approx(
        float(got["loss_pos_step"]) + 2.0 * (1 / 3) * float(got["loss_neg_step"]), rel=1e-5)
    assert torch.isfinite(got["loss_step"])
