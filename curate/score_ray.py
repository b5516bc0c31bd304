"""``curate score --ray ADDRESS``: the novelty scores of a large pool on a Ray cluster.

Scoring is row-wise: every image is scored against the scorer's whole reference (its
own row left out when it is a reference image), so the pool is split into row blocks,
each scored by a Ray task holding the fitted scorer (sent once through the object store),
and the blocks are concatenated: the result equals the local one. What it speeds up is
the search of the neighbour scorers (``knn``, ``max-cosine``, ``cosine-weighted``): a
flat kNN costs ``N x M x d`` for N pool and M reference rows (measured on this 2-core
machine: 1,600 rows/s against a 50k x 64 reference), which spreads over the cluster's
CPU slots. The moment-based scorers (Mahalanobis, centroid, vMF: ``N x d^2``, about
300,000 rows/s) gain nothing. The driver still loads the pool's embeddings and writes one
``scores`` row per image into the index, in one transaction (a killed run stores
nothing; rerun it).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from curate.embed_ray import _cause, ray_session

MIN_BLOCK = 2048  # rows: smaller blocks cost more in task overhead than they save


def _decide(st, ids, X):
    return st.decide(ids, X)


def decide_on_ray(st, ids: np.ndarray, X: np.ndarray, address: str,
                  blocks: int | None = None) -> pd.DataFrame:
    """``st.decide(ids, X)`` (a :class:`curate.novelty.stored.StoredScorer`) computed in row
    blocks on the Ray cluster at ``address``; the same frame as the local call.

    ``blocks``: number of row blocks (default: 2 per CPU slot, at least MIN_BLOCK rows each).
    """
    with ray_session(address) as ray:
        slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        n = len(ids)
        k = blocks or max(1, min(2 * slots, math.ceil(n / MIN_BLOCK)))
        remote = ray.remote(num_cpus=1)(_decide)
        ref = ray.put(st)
        parts = np.array_split(np.arange(n), k)
        try:
            dfs = ray.get([remote.remote(ref, ids[p], X[p]) for p in parts if len(p)])
        except Exception as e:  # noqa: BLE001 - Ray wraps what the tasks raised
            err = _cause(e)
            if err is None:
                raise
            raise err from None
    return pd.concat(dfs, ignore_index=True)
