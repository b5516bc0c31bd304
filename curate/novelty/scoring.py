"""Score images with a stored novelty scorer (``curate score``); the ids it flags.

``score_images`` scores images with a stored scorer (higher = more novel) and upserts
``(scorer, image)`` rows in ``scores`` (score, conformal p-value, flag), so a rerun
replaces rather than duplicates. Reference images are scored leave-one-out by the
neighbour scorers (their own match skipped); the other scorers score them in-sample
(slightly less novel than fresh items). Calibration images are scored as fresh items.

``flagged_ids`` scores (without storing) and returns the ids a scorer flags, e.g. to
leave them out of a selection: ``select_images(..., exclude_ids=flagged_ids(index))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from curate.novelty.stored import load_for_scorer, load_scorer
from curate.provenance import utcnow


@dataclass
class ScoreReport:
    scorer: str
    scorer_id: int
    embedding_set: str
    batch: str | None
    alpha: float
    threshold: float
    scores: pd.DataFrame  # rank, image_id, path, batch, label, score, p_value, flagged, in_reference

    @property
    def n_flagged(self) -> int:
        return int(self.scores["flagged"].sum())

    def as_dict(self, top: int | None = 20) -> dict:
        df = self.scores if top is None else self.scores.head(top)
        return {"scorer": self.scorer, "scorer_id": self.scorer_id,
                "embedding_set": self.embedding_set, "batch": self.batch, "alpha": self.alpha,
                "threshold": self.threshold, "n_scored": len(self.scores),
                "n_flagged": self.n_flagged, "top": df.to_dict(orient="records")}


def score_images(index, scorer: str | None = None, batch: str | None = None,
                 embeddings: str | None = None, store: bool = True,
                 ray: str | None = None) -> ScoreReport:
    """Score ok images (of ``batch``) with a stored scorer; upsert them into ``scores``.

    Returns a ScoreReport whose frame is sorted most novel first; ``batch`` is the image's
    ingest batch and ``label`` its current label (None when unlabelled). ``ray``: a Ray
    cluster address or ``local`` to score row blocks on Ray (:mod:`curate.score_ray`).
    """
    if ray is not None:
        from curate.embed_ray import require_ray
        require_ray()
    st = load_scorer(index, scorer)
    ids, X = load_for_scorer(index, st, embeddings, batch)
    if ray is not None:
        from curate.score_ray import decide_on_ray
        df = decide_on_ray(st, ids, X, ray)
    else:
        df = st.decide(ids, X)
    scored = df["image_id"].tolist()
    paths = dict(index.image_paths(batch))
    batches = index.image_batches(scored)
    labels = index.labels(scored if batch is not None else None)  # all: one query
    if store:
        index.upsert_scores(st.id, df["image_id"].to_numpy(), df["score"].to_numpy(),
                            df["p_value"].to_numpy(), df["flagged"].to_numpy(), utcnow())
    df.insert(1, "path", [paths.get(int(i)) for i in df["image_id"]])
    df.insert(2, "batch", pd.Series([batches.get(int(i)) for i in df["image_id"]], dtype=object,
                                    index=df.index))
    df.insert(3, "label", pd.Series([labels.get(int(i)) for i in df["image_id"]], dtype=object,
                                    index=df.index))
    df = df.sort_values(["score", "image_id"], ascending=[False, True], kind="stable")
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return ScoreReport(st.name, st.id, st.embedding_set, batch, st.alpha, st.threshold,
                       df.reset_index(drop=True))


class FlaggedIds(frozenset):
    """The image ids a stored scorer flags (a frozenset of int), with ``params``: the
    scorer's name, id, alpha, threshold, how many images were scored and flagged."""

    params: dict

    def __new__(cls, ids, params: dict):
        obj = super().__new__(cls, ids)
        obj.params = params
        return obj


def flagged_ids(index, scorer: str | None = None, batch: str | None = None) -> FlaggedIds:
    """Ids of the ok images (of ``batch``) that stored ``scorer`` (default: the latest)
    flags at its alpha, scored on its own embedding set and not stored."""
    st = load_scorer(index, scorer)
    ids, X = load_for_scorer(index, st, batch=batch)
    flags = st.calibrator.predict(st.scores(ids, X))
    out = ids[flags].tolist()
    return FlaggedIds(out, {"scorer": st.name, "scorer_id": st.id, "alpha": st.alpha,
                            "threshold": st.threshold, "n_scored": len(ids), "excluded": len(out)})


__all__ = ["score_images", "flagged_ids", "FlaggedIds", "ScoreReport"]
