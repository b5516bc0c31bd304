"""Run a selection strategy over the index and store what it picked.

Centres ("the datapool") are every labelled image and every image picked by an
earlier selection; they are never picked again. The pool is the other embedded ok
images (of ``batch`` when given), minus ``exclude_ids`` (e.g. flagged novel items).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import select

from curate.data import image_labels
from curate.db.models import Image, Label, Selection, SelectionItem
from curate.embeddings import get_set, load_embeddings
from curate.errors import CurateError
from curate.provenance import versions
from curate.select import SELECTORS


@dataclass
class SelectionResult:
    selection_id: int | None
    embedding_set: str
    strategy: str
    params: dict
    picks: pd.DataFrame  # rank, image_id, path, distance, label

    def as_dict(self) -> dict:
        return {"selection_id": self.selection_id, "embedding_set": self.embedding_set,
                "strategy": self.strategy, "params": self.params,
                "picks": self.picks.replace({np.nan: None}).to_dict(orient="records")}


def datapool_ids(session) -> set[int]:
    """Images that are already centres: labelled ones and earlier picks."""
    labelled = session.scalars(select(Label.image_id).where(Label.status == "labeled"))
    picked = session.scalars(select(SelectionItem.image_id))
    return set(labelled) | set(picked)


def select_images(index, budget: int, strategy: str = "kcenter", metric: str = "cosine",
                  embeddings: str | None = None, batch: str | None = None,
                  seed: int | None = 0, dry_run: bool = False, device: str = "auto",
                  fp16: bool = False, exclude_ids: set[int] | None = None,
                  extra_params: dict | None = None) -> SelectionResult:
    """Pick ``budget`` images to label and (unless ``dry_run``) store the selection."""
    fn = SELECTORS.get(strategy)
    if budget <= 0:
        raise CurateError(f"budget must be positive, got {budget}")
    with index.session() as s:
        es = get_set(s, embeddings)
        set_name, set_id = es.name, es.id
        centres = datapool_ids(s)
    ids, X = load_embeddings(index, set_name)
    if len(ids) == 0:
        raise CurateError(f"embedding set {set_name} holds no images; run `curate embed`")
    in_pool = ~np.isin(ids, np.fromiter(centres, np.int64, len(centres)))
    if batch is not None:
        batch_ids, _ = load_embeddings(index, set_name, batch=batch)
        in_pool &= np.isin(ids, batch_ids)
    if exclude_ids:
        in_pool &= ~np.isin(ids, np.fromiter(exclude_ids, np.int64, len(exclude_ids)))
    is_seed = np.isin(ids, np.fromiter(centres, np.int64, len(centres)))
    keep = in_pool | is_seed
    ids, X = ids[keep], X[keep]
    seeds = np.flatnonzero(is_seed[keep])
    if budget > int(in_pool.sum()):
        raise CurateError(f"budget {budget} is larger than the pool of {int(in_pool.sum())} "
                          "unlabelled, unselected images")
    picks, dists = fn(X, budget, seeds, metric, seed, device, fp16)
    picked_ids = ids[picks]
    with index.session() as s:
        paths = dict(s.execute(select(Image.id, Image.path).where(Image.id.in_(picked_ids.tolist()))).all())
        labels = image_labels(s)
    df = pd.DataFrame({"rank": np.arange(1, budget + 1), "image_id": picked_ids,
                       "path": [paths[i] for i in picked_ids],
                       "distance": np.where(np.isfinite(dists), dists, np.nan),
                       "label": [labels.get(int(i)) for i in picked_ids]})
    params = {"metric": metric, "seed": seed, "batch": batch, "n_centres": int(len(seeds)),
              "pool_size": int(in_pool.sum()), "device": device, "fp16": fp16,
              "excluded": len(exclude_ids or ()), **(extra_params or {})}
    sel_id = None
    if not dry_run:
        with index.session() as s:
            sel = Selection(strategy=strategy, params=params, embedding_set_id=set_id,
                            budget=budget, versions=versions())
            s.add(sel)
            s.flush()
            s.add_all(SelectionItem(selection_id=sel.id, image_id=int(r.image_id), rank=int(r.rank),
                                    distance=None if pd.isna(r.distance) else float(r.distance))
                      for r in df.itertuples())
            sel_id = sel.id
    return SelectionResult(sel_id, set_name, strategy, params, df)


__all__ = ["select_images", "SelectionResult", "datapool_ids"]
