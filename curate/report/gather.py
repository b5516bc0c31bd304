"""Everything ``curate report`` shows, read from the index in a few set-based queries.

Each ``gather_*`` function returns plain data (DataFrames, dicts, numpy arrays) for
:mod:`curate.report.html`; none runs a query per image. Existing readers are reused:
:func:`curate.export.selection_frame` (picks and their current labels),
:func:`curate.data.image_labels` (labels per class), :func:`curate.scorer_store.load_scorer`
(calibration scores, ``explain``), :func:`curate.embeddings.load_embeddings`.
Cost at N images: O(N) rows read for the batch counts, labels and scores; the
thumbnails are read elsewhere, only for the images shown.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from curate.db.models import (Batch, BatchCheck, DuplicatePath, EmbeddingSet, Image, Label, Model,
                              Score, Scorer, Selection, SelectionItem, Simulation, TrainingRun)
from curate.errors import CurateError

#: training-run parameters shown in the overview (those a run has, in this order)
KEY_PARAMS = ("backbone", "epochs", "batch_size", "image_size", "lr", "temperature",
              "embedding_dim", "out_dim", "max_minutes", "mining", "distance", "neg_shift",
              "neg_weight", "mode", "weights")
MAX_REJECTED_ROWS = 30     # example rejected files listed (the reasons are all counted)
MAX_SELECTIONS_LISTED = 20
MAX_CHECK_ROWS = 200
MAX_SIMULATIONS = 5
MAX_RUN_CURVES = 6


def _frame(rows, columns: list[str]) -> pd.DataFrame:
    """Rows of a query as a DataFrame (plain tuples: Row objects with repeated names confuse
    pandas)."""
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def batch_names(session, image_ids) -> dict[int, str]:
    """image id -> batch name for ``image_ids`` (one query per 900 ids: SQLite's variable limit)."""
    ids = [int(i) for i in image_ids]
    out: dict[int, str] = {}
    for s in range(0, len(ids), 900):
        out.update(session.execute(select(Image.id, Batch.name).join(Batch, Image.batch_id == Batch.id)
                                   .where(Image.id.in_(ids[s:s + 900]))).all())
    return out


def image_paths(session, image_ids) -> dict[int, str]:
    """image id -> path for ``image_ids`` (one query per 900 ids)."""
    ids = [int(i) for i in image_ids]
    out: dict[int, str] = {}
    for s in range(0, len(ids), 900):
        out.update(session.execute(select(Image.id, Image.path)
                                   .where(Image.id.in_(ids[s:s + 900]))).all())
    return out


# --------------------------------------------------------------------------- overview
def _natural(s: str):
    """Sort key: numeric labels by value, then the others alphabetically."""
    return (0, int(s), "") if s.lstrip("-").isdigit() else (1, 0, s)


def _key_params(params: dict) -> str:
    """``k=v, ...`` of the KEY_PARAMS a run has; nested ``args``/``module``/``effective``
    dicts (as ``curate train`` stores them) are merged, the effective values winning."""
    params = params or {}
    flat = {k: v for k, v in params.items() if not isinstance(v, dict)}
    for part in ("args", "module", "effective"):
        flat.update({k: v for k, v in (params.get(part) or {}).items()
                     if v is not None and not isinstance(v, dict)})
    keys = [k for k in KEY_PARAMS if flat.get(k) is not None] or list(flat)[:6]
    return ", ".join(f"{k}={flat[k]}" for k in keys)


def gather_overview(index) -> dict[str, Any]:
    """Batches with counts, rejected files, labels per class, embedding sets, models, runs."""
    with index.session() as s:
        counts = s.execute(select(Image.batch_id, Image.status, func.count())
                           .group_by(Image.batch_id, Image.status)).all()
        dups = dict(s.execute(select(DuplicatePath.batch_id, func.count())
                              .group_by(DuplicatePath.batch_id)).all())
        batches = s.execute(select(Batch.id, Batch.name, Batch.created_at).order_by(Batch.id)).all()
        per: dict[Any, Counter] = {}
        for bid, status, n in counts:
            per.setdefault(bid, Counter())[status] += n
        rows = [{"batch": name, "created": created, "ok": per.get(bid, {}).get("ok", 0),
                 "rejected": per.get(bid, {}).get("rejected", 0), "duplicates": dups.get(bid, 0)}
                for bid, name, created in batches]
        if None in per or None in dups:
            rows.append({"batch": "(no batch)", "created": None, "ok": per.get(None, {}).get("ok", 0),
                         "rejected": per.get(None, {}).get("rejected", 0),
                         "duplicates": dups.get(None, 0)})
        reasons = _frame(s.execute(select(Image.reason, func.count())
                                         .where(Image.status == "rejected")
                                         .group_by(Image.reason)
                                         .order_by(func.count().desc())).all(),
                               columns=["reason", "files"])
        examples = _frame(s.execute(
            select(Image.path, Image.reason, Batch.name).outerjoin(Batch, Image.batch_id == Batch.id)
            .where(Image.status == "rejected").order_by(Image.id.desc())
            .limit(MAX_REJECTED_ROWS)).all(), columns=["path", "reason", "batch"])
        from curate.data import image_labels

        labels = image_labels(s)
        n_ok = sum(r["ok"] for r in rows)
        ok_labelled = s.scalar(select(func.count(func.distinct(Label.image_id)))
                               .join(Image, Image.id == Label.image_id)
                               .where(Image.status == "ok", Label.status == "labeled",
                                      Label.label.is_not(None))) or 0
        by_class = Counter(labels.values())
        label_status = dict(s.execute(select(Label.status, func.count()).group_by(Label.status)).all())
        sets = _frame(s.execute(
            select(EmbeddingSet.id, EmbeddingSet.name, Model.name, Model.encoder, EmbeddingSet.dim,
                   EmbeddingSet.dtype, EmbeddingSet.count, EmbeddingSet.created_at)
            .join(Model, Model.id == EmbeddingSet.model_id).order_by(EmbeddingSet.id)).all(),
            columns=["id", "set", "model", "encoder", "dim", "dtype", "images", "created"])
        models = _frame(s.execute(
            select(Model.id, Model.name, Model.encoder, TrainingRun.name, Model.weights_path,
                   Model.created_at).outerjoin(TrainingRun, TrainingRun.id == Model.run_id)
            .order_by(Model.id)).all(),
            columns=["id", "model", "encoder", "run", "weights", "created"])
        runs = []
        for r in s.scalars(select(TrainingRun).order_by(TrainingRun.id)):
            metrics = list(r.metrics or [])
            last = metrics[-1] if metrics else {}
            runs.append({"id": r.id, "run": r.name, "method": r.method, "status": r.status,
                         "key parameters": _key_params(r.params), "epochs done": len(metrics),
                         "wall time": r.wall_seconds,
                         "last loss": next((v for k, v in last.items() if "loss" in k), None),
                         "last kNN acc": last.get("knn_acc"), "started": r.started_at,
                         "metrics": metrics, "params": dict(r.params or {}),
                         "versions": dict(r.versions or {})})
    classes = pd.DataFrame(sorted(by_class.items(), key=lambda kv: _natural(str(kv[0]))),
                           columns=["label", "images"])
    return {"batches": pd.DataFrame(rows, columns=["batch", "created", "ok", "rejected", "duplicates"]),
            "rejected_reasons": reasons, "rejected_examples": examples,
            "labels": classes, "n_ok": n_ok, "n_labelled": int(ok_labelled),
            "label_status": label_status, "embedding_sets": sets, "models": models, "runs": runs,
            "_labels": labels}


# -------------------------------------------------------------------------- selection
def gather_selection(index, selection: int | str = "latest") -> dict[str, Any] | None:
    """The chosen selection (``"latest"`` or an id) with its picks in rank order, plus a list
    of all selections. None when the index holds no selection and ``"latest"`` was asked;
    an unknown id is a :class:`CurateError`."""
    from curate.export import resolve_selection, selection_frame

    with index.session() as s:
        listed = _frame(s.execute(
            select(Selection.id, Selection.strategy, Selection.budget, EmbeddingSet.name,
                   func.count(SelectionItem.id), Selection.created_at)
            .outerjoin(EmbeddingSet, EmbeddingSet.id == Selection.embedding_set_id)
            .outerjoin(SelectionItem, SelectionItem.selection_id == Selection.id)
            .group_by(Selection.id, Selection.strategy, Selection.budget, EmbeddingSet.name,
                      Selection.created_at)
            .order_by(Selection.id.desc()).limit(MAX_SELECTIONS_LISTED)).all(),
            columns=["id", "strategy", "budget", "embedding set", "picks", "created"])
        if listed.empty and str(selection) == "latest":
            return None
        sel = resolve_selection(s, selection)
        es = s.get(EmbeddingSet, sel.embedding_set_id) if sel.embedding_set_id else None
        info = {"id": sel.id, "strategy": sel.strategy, "budget": sel.budget,
                "created": sel.created_at, "params": dict(sel.params or {}),
                "versions": dict(sel.versions or {}), "embedding_set": es.name if es else None,
                "embedding_set_id": es.id if es else None}
    _, picks = selection_frame(index, sel.id)
    if "batch" not in picks.columns:  # selection frames without a batch column
        with index.session() as s:
            names = batch_names(s, picks["image_id"])
        picks["batch"] = pd.Series([names.get(int(i)) for i in picks["image_id"]], dtype=object,
                                   index=picks.index)
    info["picks"] = picks
    info["missing"] = list(picks.attrs.get("missing", []))
    info["listed"] = listed
    return info


# ---------------------------------------------------------------------------- novelty
def _explain_text(res: dict, i: int, reference_ids: np.ndarray) -> str:
    parts = []
    pct = res.get("percentile")
    if pct is not None and np.isfinite(pct[i]):
        parts.append(f"above {pct[i]:.1f}% of reference scores")
    nidx, sims = res.get("neighbor_index"), res.get("neighbor_similarity")
    if nidx is not None and nidx.shape[1] and nidx[i, 0] >= 0:
        pos = int(nidx[i, 0])
        ref = int(reference_ids[pos]) if pos < len(reference_ids) else None
        parts.append(f"nearest reference image {ref if ref is not None else '?'} "
                     f"(cosine {sims[i, 0]:.2f})")
    cls = res.get("nearest_class")
    if cls is not None:
        cs = res.get("class_score")
        parts.append(f"nearest class {cls[i]}" + (f" ({cs[i]:.3g})" if cs is not None else ""))
    return "; ".join(parts)


def _vectors(index, set_name: str, image_ids) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of a few ``image_ids`` (int64[n], float32[n, D]), reading only their rows
    (:func:`curate.embeddings.load_embeddings` reads the whole set's row map first)."""
    from curate.db.models import EmbeddingRow
    from curate.embeddings import get_set, open_shard, set_folder

    ids = [int(i) for i in image_ids]
    with index.session() as s:
        es = get_set(s, set_name)
        rows = np.array([tuple(r) for r in s.execute(
            select(EmbeddingRow.image_id, EmbeddingRow.shard, EmbeddingRow.row)
            .where(EmbeddingRow.set_id == es.id, EmbeddingRow.image_id.in_(ids))
            .order_by(EmbeddingRow.image_id))], dtype=np.int64).reshape(-1, 3)
        folder = set_folder(getattr(index, "data_dir", None), es)
    X = np.empty((len(rows), es.dim), dtype=np.float32)
    for shard in np.unique(rows[:, 1]):
        m = rows[:, 1] == shard
        X[m] = open_shard(folder, int(shard), es, int(rows[m, 2].max()) + 1)[rows[m, 2]]
    return rows[:, 0].copy(), X


def gather_novelty(index, scorer: str | None = None, batch: str | None = None,
                   n_novel: int = 24, n_typical: int = 12, seed: int = 0,
                   labels: dict[int, str] | None = None) -> dict[str, Any] | None:
    """A stored scorer (named, default the latest) with its stored scores (of ``batch``),
    calibration scores, the ``n_novel`` most novel images explained, and ``n_typical``
    unflagged images drawn at random (seeded) for contrast. None when no scorer exists
    and none was named. Explanations cost one ``explain`` call on ``n_novel`` rows.
    ``labels``: image id -> label when the caller has them (else read here)."""
    with index.session() as s:
        if scorer is None and s.scalar(select(func.count()).select_from(Scorer)) == 0:
            return None
        from curate.scorer_store import get_scorer_row, load_scorer  # scipy: only when needed

        row = get_scorer_row(s, scorer)
        es = s.get(EmbeddingSet, row.embedding_set_id)
        info = {"id": row.id, "name": row.name, "kind": row.kind, "embedding_set": es.name,
                "params": dict(row.params or {}), "alpha": row.alpha, "threshold": row.threshold,
                "calibration": dict(row.calibration or {}), "versions": dict(row.versions or {}),
                "created": row.created_at, "batch": batch}
        q = (select(Score.image_id, Score.score, Score.p_value, Score.flagged)
             .join(Image, Image.id == Score.image_id)
             .where(Score.scorer_id == row.id, Image.status == "ok"))
        if batch is not None:
            b = s.scalar(select(Batch).where(Batch.name == batch))
            if b is None:
                raise CurateError(f"no batch named {batch!r}")
            q = q.where(Image.batch_id == b.id)
        scores = _frame(s.execute(q).all(), columns=["image_id", "score", "p_value", "flagged"])
    scores["flagged"] = scores["flagged"].astype(bool)
    info["scores"] = scores
    info["cal_scores"], info["explain_error"], st = None, None, None
    try:
        st = load_scorer(index, row.name)
        info["cal_scores"] = np.asarray(st.calibrator.cal_scores_, dtype=np.float64)
    except CurateError as exc:
        info["explain_error"] = str(exc)
    top = scores.sort_values(["score", "image_id"], ascending=[False, True]).head(n_novel).copy()
    rest = scores[~scores["flagged"]]
    typical = rest.iloc[np.sort(np.random.default_rng(seed).choice(
        len(rest), min(n_typical, len(rest)), replace=False))] if len(rest) else rest
    typical = typical.sort_values("score").copy()
    top["explain"] = ""
    if st is not None and len(top):
        ids, X = _vectors(index, st.embedding_set, top["image_id"].to_numpy())
        if len(ids):
            try:
                res = st.estimator.explain(X, k=1)
                text = {int(i): _explain_text(res, j, st.reference_ids) for j, i in enumerate(ids)}
                top["explain"] = [text.get(int(i), "") for i in top["image_id"]]
            except CurateError as exc:
                info["explain_error"] = str(exc)
    with index.session() as s:
        shown = list(top["image_id"]) + list(typical["image_id"])
        paths, names = image_paths(s, shown), batch_names(s, shown)
        if labels is None and shown:
            from curate.data import image_labels

            labels = image_labels(s)
    for df in (top, typical):
        for col, of in (("path", paths), ("batch", names), ("label", labels)):
            df[col] = pd.Series([of.get(int(i)) for i in df["image_id"]], dtype=object, index=df.index)
    info["top"], info["typical"] = top.reset_index(drop=True), typical.reset_index(drop=True)
    return info


# ------------------------------------------------------------------------ batch checks
def gather_checks(index, batch: str | None = None) -> pd.DataFrame:
    """Stored batch checks (newest first, at most ``MAX_CHECK_ROWS``; of ``batch`` only if
    given) with their evidence flattened into columns. The flag-rate time series uses
    every batch (see :func:`flag_rate_series`)."""
    with index.session() as s:
        q = (select(BatchCheck.id, Batch.id, Batch.name, Batch.created_at, Scorer.name,
                    BatchCheck.verdict, BatchCheck.result, BatchCheck.params, BatchCheck.created_at)
             .join(Batch, Batch.id == BatchCheck.batch_id)
             .outerjoin(Scorer, Scorer.id == BatchCheck.scorer_id)
             .order_by(BatchCheck.id.desc()))
        if batch is not None:
            if s.scalar(select(Batch.id).where(Batch.name == batch)) is None:
                raise CurateError(f"no batch named {batch!r}")
            q = q.where(Batch.name == batch)
        rows = s.execute(q.limit(MAX_CHECK_ROWS)).all()
    out = []
    for cid, bid, bname, bcreated, sname, verdict, res, params, created in rows:
        res, mmd = res or {}, (res or {}).get("mmd") or {}
        out.append({"check": cid, "batch_id": bid, "batch": bname, "batch_created": bcreated,
                    "scorer": sname or (params or {}).get("scorer"), "verdict": verdict,
                    "flagged": res.get("flagged_fraction"), "expected": res.get("expected"),
                    "n_flagged": res.get("n_flagged"), "n_batch": res.get("n_batch"),
                    "flag_p": res.get("flag_p"), "mmd_p": mmd.get("p_value"),
                    "mmd_effect": mmd.get("effect_size"), "combined_p": res.get("combined_p"),
                    "bh_p": (res.get("bh") or {}).get("adjusted_p"),
                    "bh_family": (res.get("bh") or {}).get("n_batches"),
                    "evidence": res.get("evidence", ""), "checked": created})
    return pd.DataFrame(out, columns=["check", "batch_id", "batch", "batch_created", "scorer",
                                      "verdict", "flagged", "expected", "n_flagged", "n_batch",
                                      "flag_p", "mmd_p", "mmd_effect", "combined_p", "bh_p",
                                      "bh_family", "evidence", "checked"])


def flag_rate_series(index) -> pd.DataFrame:
    """Latest check of each (scorer, batch): scorer, batch, flagged, expected, verdict, in
    batch order (creation, then id) -- the data of the flag-rate time series."""
    with index.session() as s:
        rows = s.execute(select(BatchCheck.id, Scorer.name, Batch.id, Batch.name, BatchCheck.verdict,
                                BatchCheck.result)
                         .join(Batch, Batch.id == BatchCheck.batch_id)
                         .outerjoin(Scorer, Scorer.id == BatchCheck.scorer_id)
                         .order_by(BatchCheck.id)).all()
    latest: dict[tuple, dict] = {}
    for cid, sname, bid, bname, verdict, res in rows:
        res = res or {}
        if res.get("flagged_fraction") is None:
            continue
        latest[(sname, bid)] = {"scorer": sname, "batch_id": bid, "batch": bname,
                                "flagged": float(res["flagged_fraction"]),
                                "expected": res.get("expected"), "verdict": verdict}
    df = pd.DataFrame(list(latest.values()),
                      columns=["scorer", "batch_id", "batch", "flagged", "expected", "verdict"])
    return df.sort_values(["scorer", "batch_id"]).reset_index(drop=True)


# --------------------------------------------------------------- simulations and runs
def gather_simulations(index) -> list[dict[str, Any]]:
    """The latest ``MAX_SIMULATIONS`` simulations with their paired summary as a DataFrame."""
    with index.session() as s:
        rows = s.scalars(select(Simulation).order_by(Simulation.id.desc()).limit(MAX_SIMULATIONS)).all()
        out = [{"id": r.id, "name": r.name, "params": dict(r.params or {}),
                "summary": pd.DataFrame((r.summary or {}).get("paired") or []),
                "wall_seconds": r.wall_seconds, "created": r.created_at,
                "versions": dict(r.versions or {})} for r in rows]
    return out


@dataclass
class ReportData:
    """Everything one report shows (see :func:`gather`)."""

    overview: dict
    selection: dict | None
    novelty: dict | None
    checks: pd.DataFrame
    flag_series: pd.DataFrame
    simulations: list
    options: dict = field(default_factory=dict)


def gather(index, selection: int | str = "latest", scorer: str | None = None,
           batch: str | None = None, n_novel: int = 24, n_typical: int = 12) -> ReportData:
    """All sections' data; unknown selection/scorer/batch names raise :class:`CurateError`
    before anything is drawn."""
    if batch is not None:
        with index.session() as s:
            if s.scalar(select(Batch.id).where(Batch.name == batch)) is None:
                raise CurateError(f"no batch named {batch!r}")
    overview = gather_overview(index)
    labels = overview.pop("_labels")
    return ReportData(overview=overview, selection=gather_selection(index, selection),
                      novelty=gather_novelty(index, scorer, batch, n_novel, n_typical, labels=labels),
                      checks=gather_checks(index, batch),
                      flag_series=flag_rate_series(index), simulations=gather_simulations(index),
                      options={"selection": str(selection), "scorer": scorer, "batch": batch})
