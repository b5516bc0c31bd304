"""Stored novelty scorers, their scores and batch checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from curate.db.models import Batch, BatchCheck, EmbeddingSet, Image, Score, Scorer
from curate.db.store.bulk import rows_in
from curate.db.store.lookup import named_or_latest, unique_name
from curate.errors import CurateError

#: rows per bulk upsert statement
UPSERT_ROWS = 5000


def _copy_upsert(s, scorer_id, image_ids, scores, p_values, flagged, scored_at) -> None:
    """PostgreSQL through psycopg 3: ``COPY`` the rows into a temporary table, then one
    ``INSERT ... SELECT ... ON CONFLICT``, inside the session's transaction. 200k rows:
    4.3 s against 7.9 s for the executemany upsert (``benchmarks/score_upsert.py``); of
    the 4.3 s the COPY is 0.3 s, the rest the server's index and foreign-key upkeep."""
    cur = s.connection().connection.driver_connection.cursor()
    cur.execute("CREATE TEMP TABLE score_in (image_id integer, score double precision, "
                "p_value double precision, flagged boolean) ON COMMIT DROP")
    with cur.copy("COPY score_in FROM STDIN") as copy:
        for i in range(0, len(image_ids), UPSERT_ROWS):
            part = slice(i, i + UPSERT_ROWS)
            for row in zip(np.asarray(image_ids[part]).tolist(), np.asarray(scores[part]).tolist(),
                           np.asarray(p_values[part]).tolist(),
                           np.asarray(flagged[part]).tolist()):
                copy.write_row(row)
    cur.execute("INSERT INTO scores (scorer_id, image_id, score, p_value, flagged, scored_at) "
                "SELECT %s, image_id, score, p_value, flagged, %s FROM score_in "
                "ON CONFLICT (scorer_id, image_id) DO UPDATE SET score = EXCLUDED.score, "
                "p_value = EXCLUDED.p_value, flagged = EXCLUDED.flagged, "
                "scored_at = EXCLUDED.scored_at", (scorer_id, scored_at))


class ScorerQueries:
    """Mixin of :class:`curate.db.index.Index`: scorers, scores and batch checks."""

    # ------------------------------------------------------------------ scorers
    def scorer(self, name: str | None = None) -> Scorer:
        """The scorer named ``name``, or the newest for None; unknown: ``no scorer named 'x'``."""
        with self.session() as s:
            return named_or_latest(s, Scorer, name, "scorer", "run `curate fit-scorer` first")

    def scorer_with_set(self, name: str | None = None) -> tuple[Scorer, EmbeddingSet]:
        """(scorer row, its embedding set row) of :meth:`scorer`, read in one transaction."""
        with self.session() as s:
            row = named_or_latest(s, Scorer, name, "scorer", "run `curate fit-scorer` first")
            return row, s.get(EmbeddingSet, row.embedding_set_id)

    def new_scorer_name(self, wanted: str | None, default: str) -> str:
        """``wanted`` if free (else ``a scorer named 'x' exists``), or the first free
        ``default``, ``default-2``, ..."""
        with self.session() as s:
            return unique_name(s, Scorer, wanted, default, "scorer")

    def add_scorer(self, *, tmp_state: Path, state_path: Callable[[int], Path],
                   **fields: Any) -> tuple[int, str]:
        """Insert a Scorer row (``fields``: name, kind, embedding_set_id, params, threshold,
        alpha, calibration, versions) and move its state file ``tmp_state`` to
        ``state_path(id)`` in the same transaction: the row and the file appear together.
        Returns (scorer id, final state path). A taken name: a one-line CurateError."""
        final = None
        try:
            with self.session() as s:
                row = Scorer(**fields)
                s.add(row)
                s.flush()  # the id makes the file name unique
                row.state_path = str(state_path(row.id))
                os.replace(tmp_state, row.state_path)
                final = row.state_path
                scorer_id = row.id
        except BaseException as exc:
            if final is not None:
                Path(final).unlink(missing_ok=True)
            if isinstance(exc, IntegrityError):
                raise CurateError(f"a scorer named {fields.get('name')!r} exists; "
                                  "pick another --name") from None
            raise
        return scorer_id, final

    # ------------------------------------------------------------------- scores
    def upsert_scores(self, scorer_id: int, image_ids, scores, p_values, flagged,
                      scored_at, copy: bool = True) -> None:
        """Insert or replace the ``(scorer, image)`` rows of ``image_ids`` (n,) with
        ``scores``, ``p_values``, ``flagged`` (arrays of n) and one ``scored_at``, in one
        transaction; a rerun replaces, never duplicates. Rows are sent :data:`UPSERT_ROWS`
        at a time (memory bounded by that, not by n): on PostgreSQL through psycopg by
        ``COPY`` (``copy=False``: executemany upserts, the path of every other database;
        ``benchmarks/score_upsert.py`` times both)."""
        n = len(image_ids)

        def chunk(i: int) -> list[dict[str, Any]]:
            return [{"scorer_id": scorer_id, "image_id": int(a), "score": float(b),
                     "p_value": float(c), "flagged": bool(d), "scored_at": scored_at}
                    for a, b, c, d in zip(image_ids[i:i + UPSERT_ROWS], scores[i:i + UPSERT_ROWS],
                                          p_values[i:i + UPSERT_ROWS], flagged[i:i + UPSERT_ROWS])]
        with self.session() as s:
            dialect = s.get_bind().dialect
            if copy and (dialect.name, dialect.driver) == ("postgresql", "psycopg"):
                _copy_upsert(s, scorer_id, image_ids, scores, p_values, flagged, scored_at)
                return
            if dialect.name in ("sqlite", "postgresql"):
                if dialect.name == "sqlite":
                    from sqlalchemy.dialects.sqlite import insert
                else:
                    from sqlalchemy.dialects.postgresql import insert
                stmt = insert(Score)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[Score.scorer_id, Score.image_id],
                    set_={c: stmt.excluded[c] for c in ("score", "p_value", "flagged", "scored_at")})
                for i in range(0, n, UPSERT_ROWS):
                    s.execute(stmt, chunk(i))
                return
            for i in range(0, n, UPSERT_ROWS):
                s.execute(delete(Score).where(Score.scorer_id == scorer_id, Score.image_id.in_(
                    [int(a) for a in image_ids[i:i + UPSERT_ROWS]])))
                s.add_all(Score(**r) for r in chunk(i))

    # ------------------------------------------------------------- batch checks
    def batch_check_family(self, scorer_id: int, batch_id: int) -> list[tuple[str, float]]:
        """(batch name, combined p) of the latest check of every *other* batch by this
        scorer: the Benjamini-Hochberg family of a new check of ``batch_id``."""
        with self.session() as s:
            rows = s.execute(
                select(Batch.name, BatchCheck.batch_id, BatchCheck.result)
                .join(Batch, Batch.id == BatchCheck.batch_id)
                .where(BatchCheck.scorer_id == scorer_id, BatchCheck.batch_id != batch_id)
                .order_by(BatchCheck.id)).all()
        latest: dict[int, tuple[str, float]] = {}
        for name, bid, result in rows:
            p = (result or {}).get("combined_p")
            if p is not None:
                latest[bid] = (name, float(p))
        return list(latest.values())

    def add_batch_check(self, *, batch_id: int, scorer_id: int, verdict: str, result: dict,
                        params: dict, versions: dict) -> int:
        """Store a batch check; returns its id."""
        with self.session() as s:
            row = BatchCheck(batch_id=batch_id, scorer_id=scorer_id, verdict=verdict,
                             result=result, params=params, versions=versions)
            s.add(row)
            s.flush()
            return row.id

    def scores_of(self, scorer_id: int, ids: Sequence[int]) -> dict[int, float]:
        """image id -> novelty score stored by scorer ``scorer_id``, for images ``ids``
        (those scored); one query per 900 ids."""
        q = select(Score.image_id, Score.score).where(Score.scorer_id == scorer_id)
        with self.session() as s:
            return dict(rows_in(s, q, Score.image_id, ids))

    def image_scores(self, scorer_id: int | None = None) -> list[tuple[int, float, bool]]:
        """``(image_id, score, flagged)`` of every stored score (of scorer ``scorer_id``;
        None: of every scorer, in id order so the newest scorer's score wins a dict)."""
        q = select(Score.image_id, Score.score, Score.flagged).order_by(Score.id)
        if scorer_id is not None:
            q = q.where(Score.scorer_id == scorer_id)
        with self.session() as s:
            return [tuple(r) for r in s.execute(q)]

    def stored_scores(self, scorer_id: int, batch_ids: Sequence[int] | None = None
                      ) -> list[tuple[int, float, float | None, bool]]:
        """``(image_id, score, p_value, flagged)`` stored by scorer ``scorer_id`` for the
        images now ``ok`` (of batches ``batch_ids`` if given); O(scored images)."""
        q = (select(Score.image_id, Score.score, Score.p_value, Score.flagged)
             .join(Image, Image.id == Score.image_id)
             .where(Score.scorer_id == scorer_id, Image.status == "ok"))
        if batch_ids is not None:
            q = q.where(Image.batch_id.in_(list(batch_ids)))
        with self.session() as s:
            return [tuple(r) for r in s.execute(q)]
