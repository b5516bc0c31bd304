"""``pixels-pca``: flattened resized pixels -> PCA. A baseline usable before any training.

Images are resized to ``image_size`` (default 32) RGB, scaled to [0, 1], flattened
(3 * s^2 features) and projected on the top ``n_components`` principal axes
(sklearn PCA, randomized SVD) fitted on up to ``max_fit`` images.
Cost: fit O(n * f * k); encode one (B, f) x (f, k) product.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from torchvision.transforms import v2

from curate.encoders.base import ENCODERS, Encoder
from curate.errors import CurateError


class PixelsPCA(Encoder):
    name = "pixels-pca"
    needs_fit = True

    def __init__(self, image_size: int | None = None, n_components: int = 64,
                 max_fit: int = 20000, random_state: int = 0):
        self.image_size = image_size or 32
        self.n_components, self.max_fit, self.random_state = n_components, max_fit, random_state
        self.dim = n_components
        self.mean_: np.ndarray | None = None
        self.components_: np.ndarray | None = None
        self._tf = v2.Compose([v2.PILToTensor(), v2.Resize((self.image_size, self.image_size),
                                                            antialias=True),
                               v2.ToDtype(torch.float32, scale=True)])

    def transform(self, img):
        return self._tf(img)

    def fit(self, batches):
        rows, n = [], 0
        for b in batches:
            rows.append(b.flatten(1).numpy())
            n += len(b)
            if n >= self.max_fit:
                break
        if not rows:
            raise CurateError("pixels-pca has no images to fit on")
        X = np.concatenate(rows)[: self.max_fit]
        k = min(self.n_components, X.shape[0], X.shape[1])
        pca = PCA(n_components=k, svd_solver="randomized" if k < min(X.shape) // 2 else "full",
                  random_state=self.random_state).fit(X)
        self.set_state({"mean": pca.mean_, "components": pca.components_})
        return self

    def params(self):
        return {**super().params(), "n_components": self.n_components, "max_fit": self.max_fit,
                "random_state": self.random_state}

    def get_state(self):
        return {"mean": self.mean_, "components": self.components_}

    def set_state(self, state):
        self.mean_ = np.asarray(state["mean"], dtype=np.float32)
        self.components_ = np.asarray(state["components"], dtype=np.float32)
        self.dim = self.components_.shape[0]
        self._mean_t = torch.from_numpy(self.mean_)
        self._comp_t = torch.from_numpy(self.components_).T.contiguous()

    def to(self, device):
        if self.components_ is not None:
            self._mean_t, self._comp_t = self._mean_t.to(device), self._comp_t.to(device)
        return self

    @torch.inference_mode()
    def encode(self, x):
        return (x.flatten(1).float() - self._mean_t) @ self._comp_t


@ENCODERS.register("pixels-pca")
def _pixels_pca(weights=None, image_size=None, **params):
    return PixelsPCA(image_size=image_size, **params)
