"""Score images with a stored novelty scorer; exclude flagged images from a selection.

``score_images`` scores images with a stored scorer (higher = more novel) and upserts
``(scorer, image)`` rows in ``scores`` (score, conformal p-value, flag), so a rerun
replaces rather than duplicates. Reference images are scored leave-one-out by the
neighbour scorers (their own match skipped); the other scorers score them in-sample
(slightly less novel than fresh items). Calibration images are scored as fresh items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import select

from curate.data import image_batches, image_labels
from curate.db.models import Image, Score
from curate.provenance import utcnow
from curate.scorer_store import load_for_scorer, load_scorer


# ------------------------------------------------------------------------ scoring
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


def _upsert_scores(session, scorer_id: int, df: pd.DataFrame) -> None:
    now = utcnow()
    rows = [{"scorer_id": scorer_id, "image_id": int(r.image_id), "score": float(r.score),
             "p_value": float(r.p_value), "flagged": bool(r.flagged), "scored_at": now}
            for r in df.itertuples()]
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(Score)
        stmt = stmt.on_conflict_do_update(
            index_elements=[Score.scorer_id, Score.image_id],
            set_={c: stmt.excluded[c] for c in ("score", "p_value", "flagged", "scored_at")})
        for i in range(0, len(rows), 5000):
            session.execute(stmt, rows[i : i + 5000])
        return
    from sqlalchemy import delete

    ids = [r["image_id"] for r in rows]
    for i in range(0, len(ids), 5000):
        session.execute(delete(Score).where(Score.scorer_id == scorer_id,
                                            Score.image_id.in_(ids[i : i + 5000])))
    session.add_all(Score(**r) for r in rows)


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
    with index.session() as s:
        paths = dict(s.execute(select(Image.id, Image.path).where(Image.status == "ok")).all())
        batches = image_batches(s, df["image_id"].tolist())
        labels = image_labels(s)
        if store:
            _upsert_scores(s, st.id, df)
    df.insert(1, "path", [paths.get(int(i)) for i in df["image_id"]])
    df.insert(2, "batch", pd.Series([batches.get(int(i)) for i in df["image_id"]], dtype=object,
                                    index=df.index))
    df.insert(3, "label", pd.Series([labels.get(int(i)) for i in df["image_id"]], dtype=object,
                                    index=df.index))
    df = df.sort_values(["score", "image_id"], ascending=[False, True], kind="stable")
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return ScoreReport(st.name, st.id, st.embedding_set, batch, st.alpha, st.threshold,
                       df.reset_index(drop=True))


def select_excluding_novel(index, budget: int, scorer: str | None = None, **select_kw):
    """k-center selection over the pool minus the images the stored scorer flags.

    The pool (all images, or ``batch``'s) is scored, not stored, with ``scorer`` (default
    the latest; on its own embedding set); the scorer name, threshold and number
    excluded are recorded in the selection's parameters under ``exclude_novel``.
    """
    from curate.select.selection import select_images

    rep = score_images(index, scorer, batch=select_kw.get("batch"), store=False)
    flagged = set(int(i) for i in rep.scores.loc[rep.scores["flagged"], "image_id"])
    extra = {"exclude_novel": {"scorer": rep.scorer, "scorer_id": rep.scorer_id,
                               "alpha": rep.alpha, "threshold": rep.threshold,
                               "n_scored": len(rep.scores), "excluded": len(flagged)}}
    return select_images(index, budget, exclude_ids=flagged,
                         extra_params={**extra, **select_kw.pop("extra_params", {})}, **select_kw)


__all__ = ["score_images", "select_excluding_novel", "ScoreReport"]
