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
from pathlib import Path
from typing import Callable

import pandas as pd

from curate.errors import CurateError

COLUMNS = ["rank", "image_id", "path", "score", "label", "batch"]
FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json"}
EXPORT_FORMATS = ("csv", "parquet", "json", "labelstudio-json")
_PRECEDENCE = {"label-studio": 3, "manifest": 2, "folder": 1}  # as curate.data.image_labels


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


def labelstudio_tasks(rows: pd.DataFrame, image_url: Callable[[str], str]) -> list[dict]:
    """Label Studio import JSON: ``[{"data": {"image": url, "curate_id": id, ...}}]``.

    ``curate_id`` is our image id, carried so annotations map back without relying on order.
    """
    df = _normalise(rows)
    return [{"data": {"image": image_url(r["path"]), "curate_id": int(r["image_id"]),
                      "curate_rank": int(r["rank"])}} for r in _records(df)]


def write_labelstudio_json(rows: pd.DataFrame, path: Path | str,
                           image_url: Callable[[str], str]) -> Path:
    """Write :func:`labelstudio_tasks` to ``path`` (a JSON list, importable in Label Studio)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(labelstudio_tasks(rows, image_url), indent=1) + "\n")
    return path


def selection_frame(index, selection_id: int | str = "latest") -> tuple[int, pd.DataFrame]:
    """Rows of a stored selection (``id`` or ``"latest"``) as a selection frame.

    ``label`` is the image's label with status ``labeled``, the most trusted source
    winning (label-studio, then manifest, then folder). Returns ``(selection_id, frame)``.
    """
    from sqlalchemy import select

    from curate.db.models import Image, Label, SelectionItem

    with index.session() as s:
        sel = resolve_selection(s, selection_id)
        q = (select(SelectionItem.rank, SelectionItem.image_id, Image.path, SelectionItem.score)
             .join(Image, Image.id == SelectionItem.image_id)
             .where(SelectionItem.selection_id == sel.id).order_by(SelectionItem.rank))
        df = pd.DataFrame(s.execute(q).all(), columns=COLUMNS[:4])
        best: dict[int, tuple[int, str]] = {}
        lq = (select(Label.image_id, Label.label, Label.source)
              .join(SelectionItem, SelectionItem.image_id == Label.image_id)
              .where(SelectionItem.selection_id == sel.id, Label.status == "labeled",
                     Label.label.is_not(None)))
        for image_id, label, source in s.execute(lq):
            rank = _PRECEDENCE.get(source, 0)
            if image_id not in best or rank > best[image_id][0]:
                best[image_id] = (rank, label)
        df["label"] = pd.Series([best[int(i)][1] if int(i) in best else None for i in df["image_id"]],
                                dtype=object, index=df.index)
        from curate.data import image_batches

        batches = image_batches(s, df["image_id"].tolist())
        df["batch"] = pd.Series([batches.get(int(i)) for i in df["image_id"]], dtype=object,
                                index=df.index)
    kept, gone = drop_missing(index, list(df.itertuples(index=False)), lambda r: r.path,
                              lambda r: r.image_id)
    df = df[df["image_id"].isin([r.image_id for r in kept])].reset_index(drop=True)
    df.attrs["missing"] = gone  # files gone since ingest: left out, now marked rejected
    return sel.id, df


def drop_missing(index, items: Sequence, path_of: Callable = lambda it: it[-1],
                 id_of: Callable = lambda it: it[0], when: str = "export") -> tuple[list, list[str]]:
    """Split ``items`` into those whose local file still exists and the paths of those whose
    file is gone; the gone images are marked ``rejected`` ("file missing at <when> time"),
    as ``embed`` does. URIs (``s3://...``) are not checked. Returns ``(kept, missing_paths)``."""
    import os
    import re

    uri = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
    gone = [it for it in items if not uri.match(str(path_of(it))) and not os.path.isfile(path_of(it))]
    if not gone:
        return list(items), []
    from sqlalchemy import update

    from curate.db.models import Image

    with index.session() as s:
        s.execute(update(Image).where(Image.id.in_([int(id_of(it)) for it in gone]))
                  .values(status="rejected", reason=f"file missing at {when} time"))
    gone_ids = {int(id_of(it)) for it in gone}
    return [it for it in items if int(id_of(it)) not in gone_ids], [str(path_of(it)) for it in gone]


def resolve_selection(session, selection_id: int | str):
    """The :class:`Selection` with this id, or the newest for ``"latest"``."""
    from sqlalchemy import select

    from curate.db.models import Selection

    if str(selection_id) == "latest":
        sel = session.scalars(select(Selection).order_by(Selection.id.desc()).limit(1)).first()
        if sel is None:
            raise CurateError("no selection in the index yet; run `curate select` first")
        return sel
    try:
        sid = int(selection_id)
    except ValueError:
        raise CurateError(f"selection must be an id or 'latest', got {selection_id!r}") from None
    sel = session.get(Selection, sid)
    if sel is None:
        raise CurateError(f"no selection with id {sid}")
    return sel
