"""Selections (what to label) and their ranked items.

Reads: :meth:`~SelectionQueries.selection`, :meth:`~SelectionQueries.selection_image_ids`,
:meth:`~SelectionQueries.datapool_ids` (labelled images and earlier picks). Write:
:meth:`~SelectionQueries.add_selection` (a selection and its items, one transaction under
the workspace's ``select`` lock).
"""

from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import select

from curate.db.models import Image, Label, Selection, SelectionItem
from curate.db.store.bulk import insert_rows
from curate.errors import CurateError
from curate.locks import db_lock

_ITEM_KEYS = ("selection_id", "image_id", "rank", "score")


def _datapool_ids(s) -> set[int]:
    labelled = s.scalars(select(Label.image_id).where(Label.status == "labeled"))
    picked = s.scalars(select(SelectionItem.image_id))
    return set(labelled) | set(picked)


class SelectionQueries:
    """Mixin of :class:`curate.db.index.Index`: selections."""

    def selection(self, ref: int | str = "latest") -> Selection:
        """The selection with id ``ref``, or the newest for ``"latest"``."""
        with self.session() as s:
            if str(ref) == "latest":
                sel = s.scalars(select(Selection).order_by(Selection.id.desc()).limit(1)).first()
                if sel is None:
                    raise CurateError("no selection in the index yet; run `curate select` first")
                return sel
            try:
                sid = int(ref)
            except ValueError:
                raise CurateError(f"selection must be an id or 'latest', got {ref!r}") from None
            sel = s.get(Selection, sid)
        if sel is None:
            raise CurateError(f"no selection with id {sid}")
        return sel

    def selection_image_ids(self, selection_id: int) -> list[int]:
        """Image ids of a selection's items, in rank order."""
        with self.session() as s:
            return list(s.scalars(select(SelectionItem.image_id)
                                  .where(SelectionItem.selection_id == selection_id)
                                  .order_by(SelectionItem.rank)))

    def datapool_ids(self) -> set[int]:
        """Images that are already centres ("the datapool"): every image with a
        ``labeled`` label row and every image of an earlier selection. O(rows)."""
        with self.session() as s:
            return _datapool_ids(s)

    def add_selection(self, *, strategy: str, params: dict[str, Any], embedding_set_id: int,
                      budget: int, versions: dict[str, Any],
                      items: Sequence[tuple[int, int, float | None]]) -> int:
        """Store a selection and its ``items`` (``(image_id, rank, score or None)``) in one
        transaction, one selection at a time per workspace (the ``select`` lock). Refused
        in one line, storing nothing, when another command selected or labelled one of
        the items since the picks were computed. Returns the selection id."""
        with self.session() as s:
            db_lock(s, "select")
            raced = _datapool_ids(s).intersection(int(i) for i, _, _ in items)
            if raced:
                raise CurateError(f"{len(raced)} of these picks were selected or labelled by "
                                  "another command while this one ran; nothing stored, rerun "
                                  "`curate select`")
            sel = Selection(strategy=strategy, params=params, embedding_set_id=embedding_set_id,
                            budget=budget, versions=versions)
            s.add(sel)
            s.flush()
            insert_rows(s, SelectionItem.__table__, _ITEM_KEYS,
                        [(sel.id, int(i), int(r), None if sc is None else float(sc))
                         for i, r, sc in items], s.get_bind().dialect.name)
            return sel.id

    def selection_rows(self, selection_id: int) -> list[tuple[int, int, str, float | None]]:
        """``(rank, image_id, path, score)`` of a selection's items, in rank order."""
        q = (select(SelectionItem.rank, SelectionItem.image_id, Image.path, SelectionItem.score)
             .join(Image, Image.id == SelectionItem.image_id)
             .where(SelectionItem.selection_id == selection_id).order_by(SelectionItem.rank))
        with self.session() as s:
            return [tuple(r) for r in s.execute(q)]
