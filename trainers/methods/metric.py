"""Metric-learning trainers (labels from the index): ``contrastive``, ``triplet``; the
shared :class:`MetricModule` also serves ``ncl`` (:mod:`curate.trainers.methods.ncl`).

All three embed with ``backbone -> EmbeddingHead`` (MLP to ``--embedding-dim``; 2-D
works) and train on the labelled images only (``needs_labels``); labels are checked
before the run is recorded (``bind_data``): at least 2 classes, at least 2 images per
class (6 for ``--pairs knn``). Papers: 004 (siamese contrastive, kNN pairs), 001 (NCL,
vMF confidence); triplet mining from pytorch-metric-learning (Hermans et al. 2017
batch-hard, Schroff et al. 2015 semi-hard).

- ``contrastive``: siamese pairs from :mod:`curate.trainers.pairs` (``--pairs
  class|knn``, ``--knn-negatives other-class|same-class``), loss
  :func:`~curate.trainers.metric_losses.contrastive_loss` (``--margin``, default 1.0) on
  raw (not normalised) embeddings. An epoch = one positive + one negative pair per
  image. ``knn``: the 5 nearest same-class neighbours in the current embedding are
  recomputed at fit start and after every epoch (one extra forward pass over the
  training images, eval transform); the pair table lives in shared memory so
  DataLoader workers see each refresh.
- ``triplet``: pml ``TripletMarginLoss`` (``--margin`` default 0.2) on L2-normalised
  embeddings, ``--distance euclidean|cosine``; ``--mining all`` (every valid triplet of
  the batch, mean over the non-zero ones), ``hard`` (pml ``BatchHardMiner``),
  ``semihard`` (pml ``TripletMarginMiner(type_of_triplets="semihard")``). Batches hold
  ``--samples-per-class`` images per class (pml ``MPerClassSampler``).
- ``ncl``: N-centroids loss on the unit sphere (:func:`~curate.trainers.metric_losses.ncl_loss`)
  with EMA centroids (buffers; ``alpha = alpha0 * decay^(step/period)``),
  ``--distance great-circle|euclidean|cosine``; ``--vmf`` adds a per-class log
  concentration fitted by vMF negative log-likelihood around the centroids (on
  detached embeddings: the head estimates confidence, NCL shapes the space; own param
  group, ``--kappa-lr``, gradient rescaled to (-1, 1)); ``--with-ce`` adds cross-entropy of a linear layer on the
  embedding ("vMF + NCL + CE"). Centroids and kappas are kept in every checkpoint
  (``checkpoint["ncl"]``, the arguments of ``curate.novelty`` ``VMFScorer.from_params``).

Cost per step: one backbone forward/backward of the batch (two for the pairs);
triplet mining O(B^2) (``all``: O(B^3) triplets), NCL O(B K D).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from curate.data import ImageDataset, collate_skip_missing
from curate.errors import CurateError
from curate.trainers.augment import Views, ViewSpec, single_mild_view
from curate.trainers.base import Option, TrainModule, forward_views, make_optimizers, register
from curate.trainers.heads import EmbeddingHead, pack
from curate.trainers.metric_losses import contrastive_loss
from curate.trainers.pairs import KNN_K, check_labels, class_pairs, knn_pairs, knn_table


def head_options(dim: int) -> tuple[Option, ...]:
    return (Option("embedding_dim", int, dim, "embedding size (2 gives a map to plot as is)"),
            Option("head_hidden", int, 256, "hidden width of the embedding MLP head"),
            Option("augment", str, "none", "training augmentation: none or mild (crop, flip)",
                   ("none", "mild")))


def plain_views(image_size: int, channels: int) -> Views:
    """One un-augmented view: the eval transform (resize, centre crop, normalise)."""
    return Views(image_size, [ViewSpec(image_size, channels, crop=False).compose()])


class PairDataset(torch.utils.data.Dataset):
    """Item t: ``([view(image_i), view(image_j)], y)`` for row ``(i, j, y)`` of ``table``.

    ``table`` (int64 (2N, 3)) is a shared-memory tensor that the trainer refreshes in
    place every epoch. Unreadable files give None (dropped by ``collate_views``).
    """

    def __init__(self, source, view_fn, table: torch.Tensor):
        self.source, self.view_fn, self.table = source, view_fn, table

    def __len__(self):
        return len(self.table)

    def __getitem__(self, t):
        i, j, y = self.table[t].tolist()
        a, b = self.source.load(i), self.source.load(j)
        if a is None or b is None:
            return None
        return [self.view_fn(a)[0], self.view_fn(b)[0]], y


class MetricModule(TrainModule):
    """Shared part: embedding head, label binding, class-sized state, export of heads."""

    needs_labels = True
    sphere = True  # embeddings L2-normalised (triplet, ncl); contrastive: raw
    default_lr = 1e-3

    def __init__(self, **kw):
        super().__init__(**kw)
        o = self.opts
        self.head = EmbeddingHead(self.feature_dim, o["embedding_dim"], o["head_hidden"])
        self.classes: list[str] = []
        self._bound = False

    # ------------------------------------------------------------ data
    def min_per_class(self) -> int:
        return 2

    def train_views(self):
        h = self.hparams
        if self.opts["augment"] == "mild":
            return single_mild_view(h.image_size, h.channels)
        return plain_views(h.image_size, h.channels)

    def bind_data(self, dm) -> None:
        """Check ``dm.labels`` (CurateError), remember the classes, size class state."""
        labels = np.asarray(dm.labels if dm.labels is not None else [], dtype=np.int64)
        if (labels < 0).any():
            raise CurateError(f"{int((labels < 0).sum())} training images have no label; "
                              f"method {self.method} trains on labelled images only")
        names = list(dm.classes) or [str(c) for c in range(int(labels.max(initial=-1)) + 1)]
        need = self.min_per_class()
        check_labels(labels, names, need, why=f" (method {self.method} needs {need})" if need > 2 else "")
        if self._bound and names != self.classes:
            raise CurateError(f"the labels changed since this run started ({len(self.classes)} -> "
                              f"{len(names)} classes); start a new run")
        self.classes = names
        self._labels = labels
        self._init_classes(len(names))
        self._bound = True

    def _init_classes(self, n_classes: int) -> None:
        """Create class-sized buffers/layers (before optimizers and checkpoint restore)."""

    def setup(self, stage: str) -> None:
        if not self._bound and self.trainer is not None and self.trainer.datamodule is not None:
            self.bind_data(self.trainer.datamodule)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["classes"] = list(self.classes)

    def on_load_checkpoint(self, checkpoint):
        saved = checkpoint.get("classes")
        if saved is None:
            return
        if self._bound and list(saved) != self.classes:
            raise CurateError(f"the labels changed since this run started ({len(saved)} -> "
                              f"{len(self.classes)} classes); start a new run")
        if not self._bound:
            self.classes = list(saved)
            self._init_classes(len(saved))

    # ------------------------------------------------------------ model
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(self.backbone(x).flatten(1))
        return F.normalize(z, dim=1) if self.sphere else z

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The trained embedding (B, embedding_dim) in eval mode (normalised for sphere methods)."""
        was = self.training
        self.eval()
        try:
            return self(x)
        finally:
            self.train(was)

    @torch.no_grad()
    def embed_source(self, source, eval_fn, batch_size: int = 256, num_workers: int = 0) -> np.ndarray:
        """Embeddings float32 (N, dim) of every image of ``source`` (zeros for unreadable files)."""
        out = np.zeros((len(source), self.opts["embedding_dim"]), np.float32)
        dl = torch.utils.data.DataLoader(ImageDataset(source, eval_fn), batch_size=batch_size,
                                         num_workers=num_workers, collate_fn=collate_skip_missing)
        for idx, x, _missing in dl:
            if x is not None:
                out[idx.numpy()] = self.embed(x.to(self.device)).float().cpu().numpy()
        return out

    def configure_optimizers(self):
        return make_optimizers(self, self.param_groups())

    def param_groups(self) -> list[dict]:
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    # ------------------------------------------------------------ export
    def export_extra(self) -> dict[str, Any]:
        """Heads for ``encoder.pt`` and JSON params for the Model row (see trainers.encoder)."""
        return {"file": {"heads": {"embedding": pack(self.head, self.head.spec), "classifier": None,
                                   "classes": list(self.classes)}},
                "params": {"normalize": bool(self.sphere), "dim": int(self.opts["embedding_dim"]),
                           "backbone_dim": int(self.feature_dim), "classes": list(self.classes)}}


# ============================================================================ contrastive
@register
class Contrastive(MetricModule):
    method = "contrastive"
    sphere = False
    OPTIONS = (Option("margin", float, 1.0, "contrastive margin m (negatives pushed to >= m)"),
               Option("pairs", str, "class", "pair regime: class, or knn (5 nearest same-class "
                      "neighbours as positives)", ("class", "knn")),
               Option("knn_negatives", str, "other-class", "with --pairs knn: negatives from "
                      "other classes only, or also same-class non-neighbours",
                      ("other-class", "same-class")),
               *head_options(64))

    def min_per_class(self) -> int:
        return KNN_K + 1 if self.opts["pairs"] == "knn" else 2

    def bind_data(self, dm) -> None:
        super().bind_data(dm)
        self._source, self._eval_fn = dm.source, dm.eval_fn
        self._workers = int(getattr(dm, "num_workers", 0))
        self._pairs = torch.zeros(2 * len(self._labels), 3, dtype=torch.long).share_memory_()
        self._pairs.copy_(torch.from_numpy(class_pairs(self._labels, self._rng(0))))
        self._pairs_epoch = 0
        dm.dataset_fn = self.train_dataset

    def train_dataset(self, source, view_fn, labels):
        return PairDataset(source, view_fn, self._pairs)

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([int(os.environ.get("PL_GLOBAL_SEED", 0)), int(epoch)])

    def refresh_pairs(self, epoch: int) -> None:
        """Re-draw the epoch's pairs (knn: from the current embedding's neighbours)."""
        if self.opts["pairs"] == "knn":
            Z = self.embed_source(self._source, self._eval_fn, num_workers=self._workers)
            table = knn_table(Z, self._labels, KNN_K)
            rows = knn_pairs(table, self._labels, self._rng(epoch),
                             same_class_negatives=self.opts["knn_negatives"] == "same-class")
        else:
            rows = class_pairs(self._labels, self._rng(epoch))
        self._pairs.copy_(torch.from_numpy(rows))
        self._pairs_epoch = epoch

    def on_fit_start(self):
        super().on_fit_start()
        if self.opts["pairs"] == "knn" or self.current_epoch != self._pairs_epoch:
            self.refresh_pairs(self.current_epoch)

    def on_train_epoch_end(self):
        self.refresh_pairs(self.current_epoch + 1)

    def training_step(self, batch, batch_idx):
        if batch is None:
            return None
        (x0, x1), y = batch[0][:2], batch[1]
        z0, z1 = forward_views(self, [x0, x1])
        loss = contrastive_loss(z0, z1, y, self.opts["margin"])
        with torch.no_grad():
            d = torch.linalg.vector_norm(z0 - z1, dim=1)
            pos = y == 1
        self.log_loss("loss", loss, len(y))
        if pos.any():
            self.log("d_pos", d[pos].mean(), on_step=False, on_epoch=True, batch_size=int(pos.sum()))
        if (~pos).any():
            self.log("d_neg", d[~pos].mean(), on_step=False, on_epoch=True, batch_size=int((~pos).sum()))
        return loss


# ============================================================================ triplet
@register
class Triplet(MetricModule):
    method = "triplet"
    OPTIONS = (Option("margin", float, 0.2, "triplet margin (on L2-normalised embeddings)"),
               Option("mining", str, "semihard", "triplets per batch: all, hard (batch-hard) or "
                      "semihard", ("all", "hard", "semihard")),
               Option("distance", str, "euclidean", "euclidean or cosine", ("euclidean", "cosine")),
               Option("samples_per_class", int, 4, "images per class in each batch"),
               *head_options(128))

    def __init__(self, **kw):
        super().__init__(**kw)
        from pytorch_metric_learning import distances, losses, miners

        o = self.opts
        if o["samples_per_class"] < 2:
            raise CurateError("--samples-per-class must be at least 2 (a triplet needs a positive)")
        dist = distances.CosineSimilarity() if o["distance"] == "cosine" else distances.LpDistance()
        self.criterion = losses.TripletMarginLoss(margin=o["margin"], distance=dist)
        self.miner = None
        if o["mining"] == "hard":
            self.miner = miners.BatchHardMiner(distance=dist)
        elif o["mining"] == "semihard":
            self.miner = miners.TripletMarginMiner(margin=o["margin"], type_of_triplets="semihard",
                                                   distance=dist)

    def train_sampler(self, labels):
        from pytorch_metric_learning.samplers import MPerClassSampler

        labels = np.asarray(labels)
        return MPerClassSampler(labels, self.opts["samples_per_class"], batch_size=None,
                                length_before_new_iter=len(labels))

    def training_step(self, batch, batch_idx):
        if batch is None:
            return None
        (x,), y = batch[0][:1], batch[1]
        z = self(x)
        tuples = self.miner(z, y) if self.miner is not None else None
        loss = self.criterion(z, y, tuples)
        self.log_loss("loss", loss, len(y))
        if tuples is not None:
            self.log("mined_triplets", float(len(tuples[0])), on_step=False, on_epoch=True,
                     batch_size=len(y))
        return loss
