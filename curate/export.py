"""Write a selection to a file: CSV, Parquet, JSON or Label Studio import JSON.

Pure writers (a DataFrame in, a file out) shared by ``curate select --out`` and
``curate export``; :func:`selection_frame` reads a stored selection from the index.

Columns of a selection frame: ``rank`` (int, order of picking; 1 = first), ``image_id`` (int, our
stable id), ``path`` (str), ``score`` (float, the strategy's score of the pick:
distance to the nearest centre for k-center, typicality for typiclust, ...; its meaning is
in the selection's ``params['score']``; NaN if none), ``label`` (str or None, the current label in the index),
``batch`` (str or None, the ingest batch of the image).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from curate.errors import CurateError

COLUMNS = ["rank", "image_id", "path", "score", "label", "batch"]
FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json"}
EXPORT_FORMATS = ("csv", "parquet", "json", "labelstudio-json")
URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")  # s3://, http://, ...: not a local path


def _normalise(rows: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("rank", "image_id", "path") if c not in rows.columns]
    if missing:
        raise CurateError(f"selection rows lack column(s): {', '.join(missing)}")
    df = rows.copy()
    for c in ("score", "label", "batch"):
        if c not in df.columns:
            df[c] = None
    df["rank"] = df["rank"].astype("int64")
    df["image_id"] = df["image_id"].astype("int64")
    df["score"] = pd.to_numeric(df["score"], errors="coerce").astype("float64")
    for c in ("label", "batch"):
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS + extra].sort_values("rank", kind="stable").reset_index(drop=True)


def _records(df: pd.DataFrame) -> list[dict]:
    """Rows as dicts with NaN/NA turned into None (valid JSON)."""
    return df.astype(object).where(df.notna(), None).to_dict(orient="records")


def write_frame(df: pd.DataFrame, path: Path | str, fmt: str | None = None) -> Path:
    """Write ``df`` to ``path`` as csv, parquet or json (a list of records, NaN -> null).

    The format comes from ``fmt`` or the suffix (.csv, .parquet/.pq, .json); anything
    else raises :class:`CurateError`. Cost: O(rows). Returns the path written.
    """
    path = Path(path)
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt not in ("csv", "parquet", "json"):
        raise CurateError(f"cannot tell the export format of {path.name}: use a .csv, "
                          ".parquet or .json file (or --format)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    else:
        path.write_text(json.dumps(_records(df), indent=1, default=str) + "\n")
    return path


def write_selection(rows: pd.DataFrame, path: Path | str, fmt: str | None = None) -> Path:
    """Write selection ``rows`` (columns as in the module docstring) with :func:`write_frame`."""
    return write_frame(_normalise(rows), path, fmt)


def labelstudio_task(url: str, image_id: int, rank: int, selection_id: int | None) -> dict:
    """One Label Studio task: ``{"data": {"image": url, "curate_id", "curate_rank",
    "curate_selection"}}`` -- what ``curate export --format labelstudio-json`` writes and
    ``curate labelstudio push`` sends. ``curate_id`` (our image id) maps annotations back
    without relying on order; ``curate_selection`` is left out only for rows that come
    from no stored selection."""
    data = {"image": url, "curate_id": int(image_id), "curate_rank": int(rank)}
    if selection_id is not None:
        data["curate_selection"] = int(selection_id)
    return {"data": data}


def labelstudio_tasks(rows: pd.DataFrame, image_url: Callable[[str], str],
                      selection_id: int | None = None) -> list[dict]:
    """Label Studio import JSON: one :func:`labelstudio_task` per row, in rank order.

    ``selection_id`` defaults to ``rows.attrs["selection_id"]`` (set by :func:`selection_frame`).
    """
    if selection_id is None:
        selection_id = rows.attrs.get("selection_id")
    return [labelstudio_task(image_url(r["path"]), r["image_id"], r["rank"], selection_id)
            for r in _records(_normalise(rows))]


def write_labelstudio_json(rows: pd.DataFrame, path: Path | str,
                           image_url: Callable[[str], str], selection_id: int | None = None) -> Path:
    """Write :func:`labelstudio_tasks` to ``path`` (a JSON list, importable in Label Studio)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(labelstudio_tasks(rows, image_url, selection_id), indent=1) + "\n")
    return path


def selection_frame(index, selection_id: int | str = "latest") -> tuple[int, pd.DataFrame]:
    """Rows of a stored selection (``id`` or ``"latest"``) as a selection frame.

    ``label`` is the image's label with status ``labeled``, the most trusted source
    winning (``index.labels``: label-studio, then manifest, then folder). Files gone
    since ingest are left out (listed in ``attrs["missing"]``) and marked rejected.
    Returns ``(selection_id, frame)``. Cost: 3 queries plus one stat per row.
    """
    sel = index.selection(selection_id)
    df = pd.DataFrame(index.selection_rows(sel.id), columns=COLUMNS[:4])
    labels = index.labels(selection_id=sel.id)
    df["label"] = pd.Series([labels.get(int(i)) for i in df["image_id"]], dtype=object,
                            index=df.index)
    batches = index.image_batches(df["image_id"].tolist())
    df["batch"] = pd.Series([batches.get(int(i)) for i in df["image_id"]], dtype=object,
                            index=df.index)
    kept, gone = drop_missing(index, list(df.itertuples(index=False)), lambda r: r.path,
                              lambda r: r.image_id)
    df = df[df["image_id"].isin([r.image_id for r in kept])].reset_index(drop=True)
    df.attrs["missing"] = gone  # files gone since ingest: left out, now marked rejected
    df.attrs["selection_id"] = sel.id
    return sel.id, df


def drop_missing(index, items: Sequence, path_of: Callable = lambda it: it[-1],
                 id_of: Callable = lambda it: it[0], when: str = "export") -> tuple[list, list[str]]:
    """Split ``items`` into those whose local file still exists and the paths of those whose
    file is gone; the gone images are marked ``rejected`` ("file missing at <when> time"),
    as ``embed`` does. URIs (``s3://...``) are not checked. Returns ``(kept, missing_paths)``."""
    gone = [it for it in items if not URI.match(str(path_of(it))) and not os.path.isfile(path_of(it))]
    if not gone:
        return list(items), []
    gone_ids = {int(id_of(it)) for it in gone}
    index.mark_rejected(sorted(gone_ids), f"file missing at {when} time")
    return [it for it in items if int(id_of(it)) not in gone_ids], [str(path_of(it)) for it in gone]
