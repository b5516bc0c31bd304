"""``ncl``: N-centroids loss with EMA centroids and optional vMF confidence (paper 001).

See :mod:`curate.trainers.methods.metric` for the shared metric-learning module and
:mod:`curate.trainers.metric_losses` for the loss, centroid update and vMF terms. The
learned centroids and concentrations are in each checkpoint (``checkpoint["ncl"]``,
:meth:`NCL.vmf_params`).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from curate.errors import CurateError
from curate.trainers.base import Option, register
from curate.trainers.heads import linear_spec, pack
from curate.trainers.methods.metric import MetricModule, head_options
from curate.trainers.metric_losses import DISTANCES, ncl_alpha, ncl_loss, update_centroids, vmf_nll


@register
class NCL(MetricModule):
    method = "ncl"
    OPTIONS = (Option("distance", str, "great-circle", "distance on the sphere", DISTANCES),
               Option("alpha0", float, 0.25, "centroid EMA weight at step 0"),
               Option("alpha_decay", float, 0.65, "alpha = alpha0 * decay^(step / period)"),
               Option("alpha_period", float, 1000.0, "steps per decay factor"),
               Option("vmf", bool, False, "learn a vMF concentration per class (confidence)"),
               Option("with_ce", bool, False, "add cross-entropy of a linear layer on the embedding"),
               Option("vmf_weight", float, 1.0, "weight of the vMF negative log-likelihood"),
               Option("ce_weight", float, 1.0, "weight of the cross-entropy term"),
               Option("kappa_lr", float, 0.1, "learning rate of the log concentrations"),
               *head_options(128))

    def __init__(self, **kw):
        super().__init__(**kw)
        self.register_buffer("centroids", None)  # (K, D), sized by bind_data
        self.log_kappa: nn.Parameter | None = None
        self.ce_head: nn.Linear | None = None

    def _init_classes(self, n_classes: int) -> None:
        d = self.opts["embedding_dim"]
        g = torch.Generator().manual_seed(int(os.environ.get("PL_GLOBAL_SEED", 0)))
        self.register_buffer("centroids", F.normalize(torch.randn(n_classes, d, generator=g), dim=1))
        if self.opts["vmf"]:
            self.log_kappa = nn.Parameter(torch.full((n_classes,), math.log(max(2.0, d))))
        if self.opts["with_ce"]:
            self.ce_head = nn.Linear(d, n_classes)

    def param_groups(self):
        kappa = [self.log_kappa] if self.log_kappa is not None else []
        rest = [p for p in self.parameters() if p.requires_grad and all(p is not k for k in kappa)]
        return [{"params": rest},
                {"params": kappa, "lr": self.opts["kappa_lr"], "weight_decay": 0.0}]

    def kappas(self) -> np.ndarray | None:
        return None if self.log_kappa is None else self.log_kappa.detach().exp().cpu().numpy()

    def _gather(self, z, y):
        if self._trainer is None or self.trainer.world_size <= 1:
            return z, y
        return self.all_gather(z.detach()).flatten(0, 1), self.all_gather(y).flatten(0, 1)

    def training_step(self, batch, batch_idx):
        if batch is None:
            return None
        (x,), y = batch[0][:1], batch[1]
        o = self.opts
        z = self(x)
        alpha = ncl_alpha(self.global_step, o["alpha0"], o["alpha_decay"], o["alpha_period"])
        zg, yg = self._gather(z, y)
        self.centroids.copy_(update_centroids(self.centroids, zg, yg, alpha))
        loss = ncl = ncl_loss(z, y, self.centroids, o["distance"], alpha)
        logs = {"loss_ncl": ncl, "alpha": alpha}
        if self.log_kappa is not None:
            kappa = self.log_kappa.exp()
            per = vmf_nll(z.detach(), y, self.centroids, kappa, reduction="none")
            # d NLL / d log kappa = kappa (A_d(kappa) - cos): back-propagating NLL / kappa
            # (detached) keeps the optimum and gives a gradient in (-1, 1), safe for SGD too
            loss = loss + o["vmf_weight"] * (per / kappa[y].detach()).mean()
            logs.update(loss_vmf=per.mean(), kappa_mean=kappa.detach().mean())
        if self.ce_head is not None:
            logits = self.ce_head(z)
            ce = F.cross_entropy(logits, y)
            loss = loss + o["ce_weight"] * ce
            logs.update(loss_ce=ce, train_acc=(logits.argmax(1) == y).float().mean())
        self.log_loss("loss", loss, len(y))
        self.log_dict(logs, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax (B, K) of the CE head (``--with-ce`` only)."""
        if self.ce_head is None:
            raise CurateError("this NCL model has no cross-entropy head (train with --with-ce)")
        return torch.softmax(self.ce_head(self.embed(x)), dim=1)

    def vmf_params(self) -> dict[str, np.ndarray]:
        """``means`` (K, D) unit centroids, ``kappas`` (K,) (NaN without --vmf), ``labels`` (K,),
        ``distance``: the arguments of ``curate.novelty.vmf.VMFScorer.from_params``. Kept in
        every checkpoint (``checkpoint["ncl"]``); no separate file is written: nothing read
        it, and on the model's embeddings ``curate fit-scorer vmf`` fits the same
        per-class vMFs with a calibrated threshold (FMNIST OOD AUROC 0.696 trained vs
        0.694 fitted, ``benchmarks/results/metric_quality.json``)."""
        k = self.kappas()
        return {"means": self.centroids.detach().cpu().numpy().astype(np.float32),
                "kappas": (k if k is not None else np.full(len(self.classes), np.nan)).astype(np.float64),
                "labels": np.array(self.classes, dtype=str),
                "distance": np.array(self.opts["distance"])}

    def on_save_checkpoint(self, checkpoint):
        super().on_save_checkpoint(checkpoint)
        checkpoint["ncl"] = {k: v.tolist() for k, v in self.vmf_params().items()}

    def export_extra(self):
        out = super().export_extra()
        if self.ce_head is not None:
            out["file"]["heads"]["classifier"] = pack(self.ce_head, linear_spec(self.ce_head),
                                                      input="embedding")
        out["params"].update(distance=self.opts["distance"], vmf=bool(self.opts["vmf"]))
        return out
