"""Label Studio tasks: which image went to which task of which project."""

from __future__ import annotations

from typing import Iterable, Sequence

from sqlalchemy import delete, insert, select, update

from curate.db.models import LabelStudioTask
from curate.db.store.bulk import CHUNK


class LabelStudioQueries:
    """Mixin of :class:`curate.db.index.Index`: Label Studio tasks."""

    def labelstudio_tasks(self, project_id: int) -> dict[int, int]:
        """image id -> task id of the tasks recorded for project ``project_id``. One query."""
        with self.session() as s:
            return dict(s.execute(select(LabelStudioTask.image_id, LabelStudioTask.task_id)
                                  .where(LabelStudioTask.project_id == project_id)).all())

    def record_labelstudio_tasks(self, project_id: int,
                                 add: Iterable[tuple[int, int, int | None]] = (),
                                 retarget: dict[int, int] | None = None,
                                 drop: Sequence[int] = ()) -> None:
        """Change the task records of ``project_id`` in one transaction: ``add`` rows
        ``(image id, task id, selection id or None)``, point the records of images
        ``retarget`` (image id -> task id) at other tasks, delete those of images ``drop``.
        Cost: one executemany INSERT, one UPDATE per retargeted record, one DELETE per 900
        dropped."""
        add = [{"project_id": project_id, "image_id": int(i), "task_id": int(t),
                "selection_id": sel} for i, t, sel in add]
        with self.session() as s:
            for image_id, task_id in (retarget or {}).items():
                s.execute(update(LabelStudioTask).where(
                    LabelStudioTask.project_id == project_id, LabelStudioTask.image_id == image_id)
                    .values(task_id=int(task_id)))
            drop = [int(i) for i in drop]
            for k in range(0, len(drop), CHUNK):
                s.execute(delete(LabelStudioTask).where(
                    LabelStudioTask.project_id == project_id,
                    LabelStudioTask.image_id.in_(drop[k:k + CHUNK])))
            if add:
                s.execute(insert(LabelStudioTask), add)
