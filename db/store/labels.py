"""Labels and their precedence (label-studio, then manifest, then folder).

Reads: :meth:`LabelQueries.labels` (one label per image, by :data:`PRECEDENCE`),
:meth:`~LabelQueries.label_classes`, :meth:`~LabelQueries.label_rows` (every row, as
:class:`LabelRow`). Writes: :meth:`~LabelQueries.write_labels` (Label Studio pull, one
transaction) and :func:`store_labels` (ingest's manifest/folder labels, inside the
transaction of a chunk).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Sequence

from sqlalchemy import bindparam, select, update

from curate.db.models import Image, Label, SelectionItem
from curate.db.store.bulk import insert_rows, one_of, rows_in

#: a source's trust: the highest ranked label of an image wins
PRECEDENCE = {"label-studio": 3, "manifest": 2, "folder": 1}
#: the longest label the index stores (255 on SQLite and PostgreSQL alike)
LABEL_LIMIT = Label.__table__.c.label.type.length


@dataclasses.dataclass
class LabelRow:
    """One row of the ``labels`` table as plain data (``id`` None: not stored yet)."""

    id: int | None
    image_id: int
    source: str
    label: str | None
    status: str = "labeled"
    annotator: str | None = None
    created_at: dt.datetime | None = None
    meta: dict[str, Any] | None = None


_FIELDS = [f.name for f in dataclasses.fields(LabelRow)]


def select_labels(s, ids: Sequence[int] | None = None, among=None,
                  except_source: str | None = None) -> dict[int, str]:
    """:meth:`LabelQueries.labels` inside session ``s`` (for store methods that need it in
    their transaction); ``among``: a ``select`` of image ids."""
    q = select(Label.image_id, Label.label, Label.source).where(
        Label.status == "labeled", Label.label.is_not(None))
    if among is not None:
        q = q.where(Label.image_id.in_(among))
    if except_source is not None:
        q = q.where(Label.source != except_source)
    best: dict[int, tuple[int, str]] = {}
    for iid, lab, src in rows_in(s, q, Label.image_id, ids):
        rank = PRECEDENCE.get(src, 0)
        if iid not in best or rank > best[iid][0]:
            best[iid] = (rank, lab)
    return {k: v[1] for k, v in best.items()}


def store_labels(s, labels: list[tuple[str, int | None, str, str]], dialect: str) -> int:
    """Insert or change one label per (image, source) in session ``s``; ``labels`` are
    ``(path, image id or None = look it up by path, label, source)``. Cost: 2 indexed
    queries, one multi-row INSERT and one executemany UPDATE. Returns how many were written."""
    need = [p for p, i, _, _ in labels if i is None]
    ids = dict(s.execute(select(Image.path, Image.id).where(
        one_of(Image.path, need, dialect))).all()) if need else {}
    wanted = {(i if i is not None else ids[p], src): lab for p, i, lab, src in labels}
    have = {(i, src): (lid, lab) for lid, i, src, lab in s.execute(
        select(Label.id, Label.image_id, Label.source, Label.label).where(
            one_of(Label.image_id, {i for i, _ in wanted}, dialect)))}
    add = [(i, lab, src) for (i, src), lab in wanted.items() if (i, src) not in have]
    change = [{"lid": have[k][0], "new": lab} for k, lab in wanted.items()
              if k in have and have[k][1] != lab]
    if add:
        insert_rows(s, Label.__table__, ("image_id", "label", "source"), add, dialect)
    if change:
        s.execute(update(Label.__table__).where(Label.__table__.c.id == bindparam("lid"))
                  .values(label=bindparam("new")), change)
    return len(add) + len(change)


class LabelQueries:
    """Mixin of :class:`curate.db.index.Index`: labels."""

    def labels(self, ids: Sequence[int] | None = None, selection_id: int | None = None,
               except_source: str | None = None) -> dict[int, str]:
        """image id -> label (status ``labeled`` only), the most trusted source winning
        (:data:`PRECEDENCE`). ``ids`` or ``selection_id`` (that selection's images)
        restrict the images; neither = every image. ``except_source`` leaves out the
        labels of one source (e.g. ``label-studio``). Cost: one query (per 900 ``ids``)."""
        among = None
        if selection_id is not None:
            among = select(SelectionItem.image_id).where(SelectionItem.selection_id == selection_id)
        with self.session() as s:
            return select_labels(s, ids, among, except_source)

    def label_classes(self) -> list[str]:
        """The distinct labels of ``labeled`` rows (any source), sorted."""
        q = (select(Label.label).where(Label.status == "labeled", Label.label.is_not(None))
             .distinct().order_by(Label.label))
        with self.session() as s:
            return list(s.scalars(q))

    def label_rows(self, ids: Sequence[int] | None = None, *, source: str | None = None,
                   not_status: str | None = None) -> list[LabelRow]:
        """Every label row (optionally of images ``ids``, of one ``source``, without
        status ``not_status``) as :class:`LabelRow`, by id. One query per 900 ids."""
        q = select(*[getattr(Label, f) for f in _FIELDS]).order_by(Label.id)
        if source is not None:
            q = q.where(Label.source == source)
        if not_status is not None:
            q = q.where(Label.status != not_status)
        with self.session() as s:
            return [LabelRow(*r) for r in rows_in(s, q, Label.image_id, ids)]

    def write_labels(self, new: Sequence[LabelRow] = (), changed: Sequence[LabelRow] = ()) -> None:
        """Insert ``new`` rows and rewrite ``changed`` ones (by id), in one transaction.
        Cost: one executemany INSERT and one executemany UPDATE."""
        with self.session() as s:
            if new:
                s.add_all(Label(**{f: getattr(r, f) for f in _FIELDS[1:]
                                   if getattr(r, f) is not None or f != "created_at"})
                          for r in new)   # created_at None: now
            if changed:
                t = Label.__table__
                s.execute(update(t).where(t.c.id == bindparam("row_id"))
                          .values({f: bindparam(f"v_{f}") for f in _FIELDS[1:]}),
                          [{"row_id": r.id, **{f"v_{f}": getattr(r, f) for f in _FIELDS[1:]}}
                           for r in changed])
