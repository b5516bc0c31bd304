"""k-NN accuracy monitor: labels used for monitoring only, never for training.

At the end of every ``every_n_epochs``-th epoch (global rank 0 only) the module's
scoring-backbone features (``module.embed``) of a labelled reference set and of a
held-out set are L2-normalised and the held-out images are classified by a
similarity-weighted vote of their ``k`` nearest references (lightly ``knn_predict``,
temperature 0.1; Wu et al. 2018). Logged as ``knn_acc``. Cost per check: one forward
pass over reference + held-out images and an (H x R) similarity matrix.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from lightly.utils.benchmarking.knn import knn_predict
from lightning.pytorch.callbacks import Callback

from curate.trainers.datamodule import ViewDataset, collate_views


def _features(module, source, labels, eval_fn, batch_size: int) -> tuple[torch.Tensor, np.ndarray]:
    """L2-normalised features (N', D) and labels (N',) of the readable images of ``source``."""
    ds = ViewDataset(source, lambda im: [eval_fn(im)], labels)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=0,
                                     collate_fn=collate_views)
    feats, ys = [], []
    for batch in dl:
        if batch is None:
            continue
        feats.append(F.normalize(module.embed(batch[0][0].to(module.device)).float(), dim=1).cpu())
        ys.append(batch[1].numpy())
    if not feats:
        return torch.empty(0, 1), np.empty(0, np.int64)
    return torch.cat(feats), np.concatenate(ys)


def knn_accuracy(train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor,
                 test_y: np.ndarray, k: int = 10, t: float = 0.1) -> float:
    """Top-1 accuracy of weighted k-NN on L2-normalised features (N, D) / (M, D)."""
    ncls = int(max(train_y.max(), test_y.max())) + 1
    pred = knn_predict(test_x, train_x.T.contiguous(), torch.as_tensor(train_y), ncls,
                       knn_k=min(k, len(train_x)), knn_t=t)[:, 0]
    return float((pred.numpy() == test_y).mean())


class KNNMonitor(Callback):
    def __init__(self, reference, holdout, eval_fn, k: int = 10, every_n_epochs: int = 1,
                 batch_size: int = 256):
        self.reference, self.holdout, self.eval_fn = reference, holdout, eval_fn
        self.k, self.every, self.batch_size = k, max(1, every_n_epochs), batch_size
        self.last: float | None = None

    def on_train_epoch_end(self, trainer, pl_module):
        if (trainer.current_epoch + 1) % self.every:
            return
        if trainer.is_global_zero:
            ref, ref_y = _features(pl_module, *self.reference, self.eval_fn, self.batch_size)
            hold, hold_y = _features(pl_module, *self.holdout, self.eval_fn, self.batch_size)
            if len(ref) and len(hold):
                self.last = knn_accuracy(ref, ref_y, hold, hold_y, self.k)
                pl_module.log("knn_acc", self.last, prog_bar=True, rank_zero_only=True)
