"""Run a selection strategy over the index and store what it picked.

Seeds ("the datapool") are every labelled image and every image picked by an earlier
selection; they are never picked again, and the labels of the labelled ones are passed
to the strategy (uncertainty strategies train their probe on them). The pool is the
other embedded ok images (of ``batch`` when given), minus ``exclude_ids`` (e.g. flagged
novel items).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from curate.embeddings import load_embeddings
from curate.errors import CurateError
from curate.export import drop_missing
from curate.provenance import versions
from curate.select.strategies import DEFAULT_STRATEGY, SCORES, SELECTORS
from curate.validation import check_budget


_MISSING_RETRIES = 3


@dataclass
class SelectionResult:
    selection_id: int | None
    embedding_set: str
    strategy: str
    params: dict
    picks: pd.DataFrame  # rank, image_id, path, score, label, batch
    missing: list[str] = field(default_factory=list)  # picked files gone since embed, skipped

    def as_dict(self) -> dict:
        return {"selection_id": self.selection_id, "embedding_set": self.embedding_set,
                "strategy": self.strategy, "params": self.params,
                "picks": self.picks.replace({np.nan: None}).to_dict(orient="records"),
                "missing": self.missing}


def select_images(index, budget: int, strategy: str = DEFAULT_STRATEGY, metric: str = "cosine",
                  embeddings: str | None = None, batch: str | None = None,
                  seed: int | None = 0, dry_run: bool = False, device: str = "auto",
                  fp16: bool = False, exclude_ids: Collection[int] | None = None,
                  extra_params: dict | None = None) -> SelectionResult:
    """Pick ``budget`` images to label and (unless ``dry_run``) store the selection.

    The stored parameters record the strategy's score meaning, what it decided
    (``info``: e.g. the probe and how many labelled images of which classes it was
    trained on, a fallback, ProbCover's delta) and the label classes seen.
    """
    fn = SELECTORS.get(strategy)
    budget = check_budget(budget)
    es = index.embedding_set(embeddings)
    set_name, set_id = es.name, es.id
    centres = index.datapool_ids()
    ids, X = load_embeddings(index, set_name)
    if len(ids) == 0:
        raise CurateError(f"embedding set {set_name} holds no images; run `curate embed`")
    in_pool = ~np.isin(ids, np.fromiter(centres, np.int64, len(centres)))
    if batch is not None:   # the batch's ids only (its vectors are already in X)
        in_pool &= np.isin(ids, index.embedding_rows(set_id, batch)[:, 0])
    if exclude_ids:
        in_pool &= ~np.isin(ids, np.fromiter(exclude_ids, np.int64, len(exclude_ids)))
    is_seed = np.isin(ids, np.fromiter(centres, np.int64, len(centres)))
    keep = in_pool | is_seed
    if not keep.all():   # (a copy of X otherwise: 512 MB at 1M x 128)
        ids, X = ids[keep], X[keep]
    seeds = np.flatnonzero(is_seed[keep])
    check_budget(budget, int(in_pool.sum()), "unlabelled, unselected images")
    labels = index.labels()
    classes = sorted({labels[int(i)] for i in ids[seeds] if int(i) in labels})
    code = {c: k for k, c in enumerate(classes)}
    missing: list[str] = []
    for _ in range(_MISSING_RETRIES):
        seed_labels = np.array([code.get(labels.get(int(i)), -1) for i in ids[seeds]], np.int64)
        res = fn(X, budget, seeds, seed_labels, metric=metric, random_state=seed, device=device,
                 fp16=fp16)
        picked_ids = ids[res.indices]
        paths = index.image_path_map(picked_ids)
        _, gone = drop_missing(index, [(int(i), paths[i]) for i in picked_ids], when="select")
        if not gone:
            break
        # files deleted since embed: marked rejected, left out, and the strategy reruns
        missing += gone
        gone_ids = {i for i in picked_ids.tolist() if paths[i] in set(gone)}
        keep = ~np.isin(ids, np.fromiter(gone_ids, np.int64, len(gone_ids)))
        is_seed = np.zeros(len(ids), bool)
        is_seed[seeds] = True
        ids, X, is_seed = ids[keep], X[keep], is_seed[keep]
        seeds = np.flatnonzero(is_seed)
        if budget > len(ids) - len(seeds):
            raise CurateError(f"budget {budget} is larger than the pool of {len(ids) - len(seeds)} "
                              f"images whose files still exist ({len(missing)} missing)")
    else:
        raise CurateError(f"{len(missing)} picked files are missing on disk; check the image "
                          "folders, then rerun `curate select`")
    df = pd.DataFrame({"rank": np.arange(1, budget + 1), "image_id": picked_ids,
                       "path": [paths[i] for i in picked_ids],
                       "score": np.where(np.isfinite(res.scores), res.scores, np.nan),
                       "label": [labels.get(int(i)) for i in picked_ids]})
    batches = index.image_batches(picked_ids.tolist())
    df["batch"] = pd.Series([batches.get(int(i)) for i in picked_ids], dtype=object)
    info = dict(res.info)
    if "probe_classes" in info:
        info["probe_classes"] = [classes[c] for c in info["probe_classes"]]
    params = {"metric": metric, "seed": seed, "batch": batch, "n_centres": int(len(seeds)),
              "n_labelled": int((seed_labels >= 0).sum()), "classes": classes,
              "pool_size": int(in_pool.sum()), "device": device, "fp16": fp16,
              "score": SCORES[strategy], "info": info,
              "excluded": len(exclude_ids or ()), "missing_skipped": len(missing),
              **(extra_params or {})}
    sel_id = None
    if not dry_run:
        # one selection stored at a time per workspace (issue 11), refused if raced
        sel_id = index.add_selection(
            strategy=strategy, params=params, embedding_set_id=set_id, budget=budget,
            versions=versions(),
            items=[(int(r.image_id), int(r.rank), None if pd.isna(r.score) else float(r.score))
                   for r in df.itertuples()])
    return SelectionResult(sel_id, set_name, strategy, params, df, missing)


__all__ = ["select_images", "SelectionResult"]
