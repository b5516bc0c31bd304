"""Everything ``curate report`` shows, read from the index in a few set-based queries.

Each ``gather_*`` function returns plain data (DataFrames, dicts, numpy arrays) for
:mod:`curate.report.html`; none runs a query per image. Every read goes through the
store (``index.method(...)``: the report's bulk reads are in
:mod:`curate.db.store.overview`; ``index.labels`` gives labels per class,
``index.batch_ids`` checks batch names). Existing readers are reused:
:func:`curate.export.selection_frame` (picks and their current labels),
:func:`curate.novelty.stored.load_scorer` (calibration scores, ``explain``).
Cost at N images: O(N) rows read for the batch counts, labels and scores; the
thumbnails are read elsewhere, only for the images shown.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

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
    rows = index.batch_counts()
    reasons = _frame(index.rejected_reasons(), columns=["reason", "files"])
    examples = _frame(index.rejected_examples(MAX_REJECTED_ROWS), columns=["path", "reason", "batch"])
    labels = index.labels()
    n_ok = sum(r["ok"] for r in rows)
    by_class = Counter(labels.values())
    sets = _frame(index.embedding_set_table(),
                  columns=["id", "set", "model", "encoder", "dim", "dtype", "images", "created"])
    models = _frame(index.model_table(), columns=["id", "model", "encoder", "run", "weights", "created"])
    runs = []
    for r in index.training_runs():
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
            "labels": classes, "n_ok": n_ok, "n_labelled": index.labelled_ok_count(),
            "label_status": index.label_status_counts(), "embedding_sets": sets, "models": models,
            "runs": runs, "_labels": labels}


# -------------------------------------------------------------------------- selection
def gather_selection(index, selection: int | str = "latest") -> dict[str, Any] | None:
    """The chosen selection (``"latest"`` or an id) with its picks in rank order, plus a list
    of all selections. None when the index holds no selection and ``"latest"`` was asked;
    an unknown id is a :class:`CurateError`."""
    from curate.export import selection_frame

    listed = _frame(index.selection_table(MAX_SELECTIONS_LISTED),
                    columns=["id", "strategy", "budget", "embedding set", "picks", "created"])
    if listed.empty and str(selection) == "latest":
        return None
    sel = index.selection(selection)
    es = index.embedding_set_by_id(sel.embedding_set_id)
    info = {"id": sel.id, "strategy": sel.strategy, "budget": sel.budget,
            "created": sel.created_at, "params": dict(sel.params or {}),
            "versions": dict(sel.versions or {}), "embedding_set": es.name if es else None,
            "embedding_set_id": es.id if es else None}
    _, picks = selection_frame(index, sel.id)
    if "batch" not in picks.columns:  # selection frames without a batch column
        names = index.image_batches(picks["image_id"])
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
    from curate.embeddings import open_shard, set_folder

    es = index.embedding_set(set_name)
    rows = index.embedding_rows_of(es.id, image_ids)
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
    if scorer is None and not index.has_scorer():
        return None
    from curate.novelty.stored import load_scorer  # scipy: only when needed

    row, es = index.scorer_with_set(scorer)
    info = {"id": row.id, "name": row.name, "kind": row.kind, "embedding_set": es.name,
            "params": dict(row.params or {}), "alpha": row.alpha, "threshold": row.threshold,
            "calibration": dict(row.calibration or {}), "versions": dict(row.versions or {}),
            "created": row.created_at, "batch": batch}
    scores = _frame(index.stored_scores(row.id, index.batch_ids(batch)),
                    columns=["image_id", "score", "p_value", "flagged"])
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
    shown = list(top["image_id"]) + list(typical["image_id"])
    paths, names = index.image_path_map(shown), index.image_batches(shown)
    if labels is None and shown:
        labels = index.labels()
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
    bids = index.batch_ids(batch)
    out = []
    for c in index.batch_check_rows(bids[0] if bids else None, MAX_CHECK_ROWS):
        res, params = c["result"] or {}, c["params"] or {}
        mmd, bh = res.get("mmd") or {}, res.get("bh") or {}
        out.append({"check": c["check"], "batch_id": c["batch_id"], "batch": c["batch"],
                    "batch_created": c["batch_created"], "scorer": c["scorer"] or params.get("scorer"),
                    "verdict": c["verdict"], "flagged": res.get("flagged_fraction"),
                    "expected": res.get("expected"), "n_flagged": res.get("n_flagged"),
                    "n_batch": res.get("n_batch"), "flag_p": res.get("flag_p"),
                    "mmd_p": mmd.get("p_value"), "mmd_effect": mmd.get("effect_size"),
                    "combined_p": res.get("combined_p"), "bh_p": bh.get("adjusted_p"),
                    "bh_family": bh.get("n_batches"), "evidence": res.get("evidence", ""),
                    "checked": c["checked"]})
    return pd.DataFrame(out, columns=["check", "batch_id", "batch", "batch_created", "scorer",
                                      "verdict", "flagged", "expected", "n_flagged", "n_batch",
                                      "flag_p", "mmd_p", "mmd_effect", "combined_p", "bh_p",
                                      "bh_family", "evidence", "checked"])


def flag_rate_series(index) -> pd.DataFrame:
    """Latest check of each (scorer, batch): scorer, batch, flagged, expected, verdict, in
    batch order (creation, then id) -- the data of the flag-rate time series."""
    latest: dict[tuple, dict] = {}
    for c in reversed(index.batch_check_rows()):  # oldest first: the latest check wins
        res = c["result"] or {}
        if res.get("flagged_fraction") is None:
            continue
        latest[(c["scorer"], c["batch_id"])] = {
            "scorer": c["scorer"], "batch_id": c["batch_id"], "batch": c["batch"],
            "flagged": float(res["flagged_fraction"]), "expected": res.get("expected"),
            "verdict": c["verdict"]}
    df = pd.DataFrame(list(latest.values()),
                      columns=["scorer", "batch_id", "batch", "flagged", "expected", "verdict"])
    return df.sort_values(["scorer", "batch_id"]).reset_index(drop=True)


# --------------------------------------------------------------- simulations and runs
def gather_simulations(index) -> list[dict[str, Any]]:
    """The latest ``MAX_SIMULATIONS`` simulations with their paired summary as a DataFrame."""
    return [{"id": r.id, "name": r.name, "params": dict(r.params or {}),
             "summary": pd.DataFrame((r.summary or {}).get("paired") or []),
             "wall_seconds": r.wall_seconds, "created": r.created_at,
             "versions": dict(r.versions or {})} for r in index.latest_simulations(MAX_SIMULATIONS)]


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
    index.batch_ids(batch)  # an unknown batch name: a one-line error before any work
    overview = gather_overview(index)
    labels = overview.pop("_labels")
    return ReportData(overview=overview, selection=gather_selection(index, selection),
                      novelty=gather_novelty(index, scorer, batch, n_novel, n_typical, labels=labels),
                      checks=gather_checks(index, batch),
                      flag_series=flag_rate_series(index), simulations=gather_simulations(index),
                      options={"selection": str(selection), "scorer": scorer, "batch": batch})
