"""SQLAlchemy 2 ORM models of the index database.

Works identically on SQLite and PostgreSQL. Free-form provenance (parameters,
package versions, metrics) lives in JSON columns. The schema is created and
upgraded by the Alembic migrations in ``migrations/``; change both together.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index,
                        Integer, String, Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from curate.provenance import utcnow


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Batch(Base):
    """A named ingest batch (e.g. one incoming delivery of images)."""

    __tablename__ = "batches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Image(Base):
    """One file seen by ingest. ``status`` is ``ok`` or ``rejected`` (with ``reason``).

    Ok images are unique by ``sha256`` (index ``uq_images_ok_sha256``); a second path with
    the same bytes goes to :class:`DuplicatePath` (status ``duplicate``: a row kept that
    turned out to repeat another ok image's bytes).
    """

    __tablename__ = "images"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    sha256: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    bytes: Mapped[Optional[int]] = mapped_column(BigInteger)
    width: Mapped[Optional[int]] = mapped_column(Integer)
    height: Mapped[Optional[int]] = mapped_column(Integer)
    mode: Mapped[Optional[str]] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[Optional[str]] = mapped_column(Text)
    batch_id: Mapped[Optional[int]] = mapped_column(ForeignKey("batches.id"), index=True)
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    batch: Mapped[Optional[Batch]] = relationship()


class DuplicatePath(Base):
    """An extra path whose bytes equal an already indexed image."""

    __tablename__ = "duplicate_paths"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    batch_id: Mapped[Optional[int]] = mapped_column(ForeignKey("batches.id"))
    seen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Label(Base):
    """A label of an image from one source (folder, manifest, label-studio, ...).

    One row per (image, source): a newer label from the same source replaces the older.
    """

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("image_id", "source", name="uq_label_image_source"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    label: Mapped[Optional[str]] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(64))
    annotator: Mapped[Optional[str]] = mapped_column(String(255))
    # labeled | skipped | cancelled | conflict (LS label contradicting a folder/manifest one)
    # | overridden (a folder/manifest label superseded by `pull --prefer label-studio`)
    status: Mapped[str] = mapped_column(String(16), default="labeled")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    meta: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)


class TrainingRun(Base):
    """A training run (SSL or metric learning). ``status``: running|finished|failed."""

    __tablename__ = "training_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    method: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[list[Any]] = mapped_column(JSON, default=list)
    checkpoint_path: Mapped[Optional[str]] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="running")
    versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    wall_seconds: Mapped[Optional[float]] = mapped_column(Float)


class Model(Base):
    """An encoder instance usable by ``curate embed``: registry name + weights."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    encoder: Mapped[str] = mapped_column(String(64))
    weights_path: Mapped[Optional[str]] = mapped_column(Text)
    weights_sha256: Mapped[Optional[str]] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("training_runs.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class EmbeddingSet(Base):
    """Embeddings of images by one model, stored as ``.npy`` shards under ``path``."""

    __tablename__ = "embedding_sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    dim: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(16))
    count: Mapped[int] = mapped_column(Integer, default=0)
    path: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    model: Mapped[Model] = relationship()


class EmbeddingRow(Base):
    """Maps an image to its row in a shard of an embedding set."""

    __tablename__ = "embedding_rows"
    __table_args__ = (UniqueConstraint("set_id", "image_id", name="uq_embrow_set_image"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("embedding_sets.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    shard: Mapped[int] = mapped_column(Integer)
    row: Mapped[int] = mapped_column(Integer)


class Selection(Base):
    """One selection run: strategy, parameters, embedding set, budget, versions."""

    __tablename__ = "selections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    strategy: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    embedding_set_id: Mapped[Optional[int]] = mapped_column(ForeignKey("embedding_sets.id"))
    budget: Mapped[int] = mapped_column(Integer)
    versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    items: Mapped[list["SelectionItem"]] = relationship(order_by="SelectionItem.rank")


class SelectionItem(Base):
    """A picked image: its rank and the strategy's score when picked (meaning per strategy,
    stored in ``Selection.params['score']``; k-center: distance to the nearest centre)."""

    __tablename__ = "selection_items"
    __table_args__ = (UniqueConstraint("selection_id", "image_id", name="uq_selitem"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    selection_id: Mapped[int] = mapped_column(ForeignKey("selections.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[Optional[float]] = mapped_column(Float)


class Simulation(Base):
    """One ``curate simulate`` run: the active-learning loop replayed on labelled images.

    ``params``: strategies, budgets, seeds, probe, rounds, pool/test split (sizes and id
    hashes); ``results``: one record per (strategy, budget, seed) with accuracy,
    macro-F1 and seconds; ``summary``: paired differences to random with intervals.
    """

    __tablename__ = "simulations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    embedding_set_id: Mapped[Optional[int]] = mapped_column(ForeignKey("embedding_sets.id"))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    results: Mapped[list[Any]] = mapped_column(JSON, default=list)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    wall_seconds: Mapped[Optional[float]] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Scorer(Base):
    """A fitted novelty scorer: reference set, parameters, calibrated threshold."""

    __tablename__ = "scorers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    embedding_set_id: Mapped[int] = mapped_column(ForeignKey("embedding_sets.id"))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state_path: Mapped[Optional[str]] = mapped_column(Text)
    threshold: Mapped[Optional[float]] = mapped_column(Float)
    alpha: Mapped[Optional[float]] = mapped_column(Float)
    calibration: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Score(Base):
    """A novelty score of one image by one scorer (higher = more novel)."""

    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("scorer_id", "image_id", name="uq_score"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scorer_id: Mapped[int] = mapped_column(ForeignKey("scorers.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    score: Mapped[float] = mapped_column(Float)
    p_value: Mapped[Optional[float]] = mapped_column(Float)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    scored_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class BatchCheck(Base):
    """A batch-shift check: verdict plus every statistic and what produced it."""

    __tablename__ = "batch_checks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    scorer_id: Mapped[Optional[int]] = mapped_column(ForeignKey("scorers.id"))
    verdict: Mapped[str] = mapped_column(String(32))
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class LabelStudioTask(Base):
    """The Label Studio task created for an image in a project."""

    __tablename__ = "labelstudio_tasks"
    __table_args__ = (UniqueConstraint("project_id", "image_id", name="uq_ls_project_image"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(Integer, index=True)
    task_id: Mapped[int] = mapped_column(BigInteger)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    selection_id: Mapped[Optional[int]] = mapped_column(ForeignKey("selections.id"))
    pushed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


Index("ix_images_status_batch", Image.status, Image.batch_id)
# one ok image per content hash, held by the database (concurrent ingests included)
Index("uq_images_ok_sha256", Image.sha256, unique=True,
      sqlite_where=Image.status == "ok", postgresql_where=Image.status == "ok")
