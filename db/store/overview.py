"""The report's bulk reads: counts and summaries over the whole index.

Each method is one set-based query (or one per 900 ids) in its own transaction and
returns plain rows (tuples, dicts) or detached ORM objects; none reads per image.
Cost at N images: O(N) rows scanned by the grouped counts, O(rows returned) otherwise.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, select

from curate.db.models import (Batch, BatchCheck, DuplicatePath, EmbeddingSet, Image, Label, Model,
                              Scorer, Selection, SelectionItem, Simulation, TrainingRun)


class OverviewQueries:
    """Mixin of :class:`curate.db.index.Index`: the report's reads."""

    # ------------------------------------------------------------------ images and labels
    def batch_counts(self) -> list[dict[str, Any]]:
        """One dict per batch (by id): ``batch``, ``created``, ``ok``, ``rejected``,
        ``duplicates`` (duplicate paths seen); plus a ``"(no batch)"`` row when images or
        duplicates without a batch exist. Two grouped counts over images and duplicates."""
        with self.session() as s:
            counts = s.execute(select(Image.batch_id, Image.status, func.count())
                               .group_by(Image.batch_id, Image.status)).all()
            dups = dict(s.execute(select(DuplicatePath.batch_id, func.count())
                                  .group_by(DuplicatePath.batch_id)).all())
            batches = s.execute(select(Batch.id, Batch.name, Batch.created_at).order_by(Batch.id)).all()
        per: dict[Any, Counter] = {}
        for bid, status, n in counts:
            per.setdefault(bid, Counter())[status] += n

        def row(name, created, bid):
            c = per.get(bid, {})
            return {"batch": name, "created": created, "ok": c.get("ok", 0),
                    "rejected": c.get("rejected", 0), "duplicates": dups.get(bid, 0)}

        rows = [row(name, created, bid) for bid, name, created in batches]
        if None in per or None in dups:
            rows.append(row("(no batch)", None, None))
        return rows

    def rejected_reasons(self) -> list[tuple[str | None, int]]:
        """``(reason, files)`` of rejected images, most frequent reason first."""
        with self.session() as s:
            return [tuple(r) for r in s.execute(
                select(Image.reason, func.count()).where(Image.status == "rejected")
                .group_by(Image.reason).order_by(func.count().desc()))]

    def rejected_examples(self, limit: int) -> list[tuple[str, str | None, str | None]]:
        """``(path, reason, batch name)`` of the ``limit`` newest rejected images."""
        with self.session() as s:
            return [tuple(r) for r in s.execute(
                select(Image.path, Image.reason, Batch.name)
                .outerjoin(Batch, Image.batch_id == Batch.id)
                .where(Image.status == "rejected").order_by(Image.id.desc()).limit(limit))]

    def labelled_ok_count(self) -> int:
        """How many ``ok`` images have at least one label with status ``labeled``."""
        with self.session() as s:
            return int(s.scalar(select(func.count(func.distinct(Label.image_id)))
                                .join(Image, Image.id == Label.image_id)
                                .where(Image.status == "ok", Label.status == "labeled",
                                       Label.label.is_not(None))) or 0)

    def label_status_counts(self) -> dict[str, int]:
        """label status (``labeled``, ``skipped``, ...) -> label rows."""
        with self.session() as s:
            return dict(s.execute(select(Label.status, func.count()).group_by(Label.status)).all())

    # ------------------------------------------------------ embeddings, models, runs
    def embedding_set_table(self) -> list[tuple]:
        """``(id, set, model, encoder, dim, dtype, images, created)`` per embedding set, by id."""
        with self.session() as s:
            return [tuple(r) for r in s.execute(
                select(EmbeddingSet.id, EmbeddingSet.name, Model.name, Model.encoder,
                       EmbeddingSet.dim, EmbeddingSet.dtype, EmbeddingSet.count,
                       EmbeddingSet.created_at)
                .join(Model, Model.id == EmbeddingSet.model_id).order_by(EmbeddingSet.id))]

    def model_table(self) -> list[tuple]:
        """``(id, model, encoder, run name, weights path, created)`` per model, by id."""
        with self.session() as s:
            return [tuple(r) for r in s.execute(
                select(Model.id, Model.name, Model.encoder, TrainingRun.name, Model.weights_path,
                       Model.created_at).outerjoin(TrainingRun, TrainingRun.id == Model.run_id)
                .order_by(Model.id))]

    def training_runs(self) -> list[TrainingRun]:
        """Every training run (detached rows), oldest first."""
        with self.session() as s:
            return list(s.scalars(select(TrainingRun).order_by(TrainingRun.id)))

    # ------------------------------------------------------------------- selections
    def selection_table(self, limit: int) -> list[tuple]:
        """``(id, strategy, budget, embedding set name, picks, created)`` of the ``limit``
        newest selections, newest first."""
        with self.session() as s:
            return [tuple(r) for r in s.execute(
                select(Selection.id, Selection.strategy, Selection.budget, EmbeddingSet.name,
                       func.count(SelectionItem.id), Selection.created_at)
                .outerjoin(EmbeddingSet, EmbeddingSet.id == Selection.embedding_set_id)
                .outerjoin(SelectionItem, SelectionItem.selection_id == Selection.id)
                .group_by(Selection.id, Selection.strategy, Selection.budget, EmbeddingSet.name,
                          Selection.created_at)
                .order_by(Selection.id.desc()).limit(limit))]

    # ------------------------------------------------------- scores and batch checks
    def has_scorer(self) -> bool:
        """Whether the index holds any stored scorer."""
        with self.session() as s:
            return s.scalar(select(Scorer.id).limit(1)) is not None

    def batch_check_rows(self, batch_id: int | None = None, limit: int | None = None
                         ) -> list[dict[str, Any]]:
        """Stored batch checks, newest first (at most ``limit``; of batch ``batch_id`` only
        if given): dicts of ``check``, ``batch_id``, ``batch``, ``batch_created``,
        ``scorer`` (name, None if the scorer is gone), ``verdict``, ``result``, ``params``,
        ``checked``."""
        q = (select(BatchCheck.id, Batch.id, Batch.name, Batch.created_at, Scorer.name,
                    BatchCheck.verdict, BatchCheck.result, BatchCheck.params, BatchCheck.created_at)
             .join(Batch, Batch.id == BatchCheck.batch_id)
             .outerjoin(Scorer, Scorer.id == BatchCheck.scorer_id)
             .order_by(BatchCheck.id.desc()))
        if batch_id is not None:
            q = q.where(BatchCheck.batch_id == batch_id)
        if limit is not None:
            q = q.limit(limit)
        keys = ("check", "batch_id", "batch", "batch_created", "scorer", "verdict", "result",
                "params", "checked")
        with self.session() as s:
            return [dict(zip(keys, r)) for r in s.execute(q)]

    # ------------------------------------------------------------------- simulations
    def latest_simulations(self, limit: int) -> list[Simulation]:
        """The ``limit`` newest simulations (detached rows), newest first."""
        with self.session() as s:
            return list(s.scalars(select(Simulation).order_by(Simulation.id.desc()).limit(limit)))
