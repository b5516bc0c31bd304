"""Training runs (and the models they export): create, record epochs, finish or fail, look up.

Every method opens its own transaction; finishing a run and inserting its ``Model`` row
is one method (:meth:`RunQueries.finish_training_run`), so a finished run always has its
model. Rows come back detached (read their attributes only).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from curate.db.models import EmbeddingSet, Model, TrainingRun
from curate.db.store.lookup import named_or_latest
from curate.errors import CurateError
from curate.provenance import utcnow


class RunQueries:
    """Mixin of :class:`curate.db.index.Index`: training runs."""

    def training_run(self, name: str | None = None) -> TrainingRun:
        """The training run named ``name``, or the newest for None."""
        with self.session() as s:
            return named_or_latest(s, TrainingRun, name, "training run", "run `curate train` first")

    def run_name_taken(self, name: str) -> bool:
        """Whether a training run or a model is named ``name`` (they share the namespace)."""
        with self.session() as s:
            return (s.scalar(select(TrainingRun.id).where(TrainingRun.name == name)) is not None
                    or s.scalar(select(Model.id).where(Model.name == name)) is not None)

    def unique_run_name(self, base: str) -> str:
        """The first of ``base``, ``base-2``, ``base-3``, ... that no run or model uses."""
        with self.session() as s:
            taken = set(s.scalars(select(TrainingRun.name).where(TrainingRun.name.like(f"{base}%"))))
            taken |= set(s.scalars(select(Model.name).where(Model.name.like(f"{base}%"))))
        name, i = base, 2
        while name in taken:
            name, i = f"{base}-{i}", i + 1
        return name

    def start_training_run(self, name: str, method: str, params: dict, data: dict,
                           versions: dict, checkpoint_path: str) -> tuple[int, float]:
        """Create the run ``name`` (or take up the existing one, on resume) with status
        ``running``; returns ``(run id, wall seconds of its earlier segments)``."""
        with self.session() as s:
            run = s.scalar(select(TrainingRun).where(TrainingRun.name == name))
            if run is None:
                run = TrainingRun(name=name, method=method, metrics=[])
                s.add(run)
            run.params, run.data = params, data
            run.status, run.versions, run.checkpoint_path = "running", versions, checkpoint_path
            s.flush()
            return run.id, run.wall_seconds or 0.0

    def record_run_epoch(self, run_id: int, entry: dict[str, Any]) -> None:
        """Append one epoch's metrics (replacing an earlier entry of the same epoch)."""
        with self.session() as s:
            run = s.get(TrainingRun, run_id)
            run.metrics = [e for e in (run.metrics or []) if e.get("epoch") != entry["epoch"]] + [entry]

    def record_run_wall(self, run_id: int, seconds: float) -> None:
        """Set the run's total wall time so far."""
        with self.session() as s:
            s.get(TrainingRun, run_id).wall_seconds = round(seconds, 3)

    def finish_training_run(self, run_id: int, status: str, wall: float,
                            model: dict[str, Any] | None = None,
                            extra: dict[str, Any] | None = None) -> TrainingRun:
        """Mark the run ``status`` (finished|failed) with its wall time, merge ``extra`` into
        its data and, given ``model`` (``weights_path``, ``weights_sha256``, ``params``),
        insert its ``trained`` Model row, in one transaction. Returns the run."""
        with self.session() as s:
            run = s.get(TrainingRun, run_id)
            run.status, run.finished_at, run.wall_seconds = status, utcnow(), round(wall, 3)
            if extra:
                run.data = {**(run.data or {}), **extra}
            if model is not None:
                s.add(Model(name=run.name, encoder="trained", run_id=run.id, **model))
            s.flush()
            s.refresh(run)
            return run

    def update_run_data(self, run_id: int, extra: dict[str, Any]) -> TrainingRun:
        """Merge ``extra`` into the run's ``data``; returns the run."""
        with self.session() as s:
            run = s.get(TrainingRun, run_id)
            run.data = {**(run.data or {}), **extra}
            s.flush()
            s.refresh(run)
            return run

    def run_model(self, name: str) -> tuple[TrainingRun, Model]:
        """The finished run ``name`` and the Model row it exported (CurateError if none)."""
        with self.session() as s:
            run = s.scalar(select(TrainingRun).where(TrainingRun.name == name))
            model = s.scalar(select(Model).where(Model.run_id == run.id)) if run else None
        if run is None or model is None:
            raise CurateError("no finished run with a model to compare")
        return run, model

    def embedding_set_origin(self, name: str | None = None
                             ) -> tuple[EmbeddingSet, Model, TrainingRun | None]:
        """(embedding set, the model that made it, the training run that trained that
        model or None for an untrained encoder), read in one transaction."""
        with self.session() as s:
            es = named_or_latest(s, EmbeddingSet, name, "embedding set", "run `curate embed` first")
            model = s.get(Model, es.model_id)
            run = s.get(TrainingRun, model.run_id) if model.run_id is not None else None
            return es, model, run
