"""Open an index database (SQLite or PostgreSQL) and bring its schema up to date.

``open_index(url)`` applies pending Alembic migrations on open. Migrations only add;
a database newer than this code is refused rather than touched.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from curate.db.store.embeddings import EmbeddingQueries
from curate.db.store.images import ImageQueries
from curate.db.store.labels import LabelQueries
from curate.db.store.labelstudio import LabelStudioQueries
from curate.db.store.overview import OverviewQueries
from curate.db.store.runs import RunQueries
from curate.db.store.scorers import ScorerQueries
from curate.db.store.selections import SelectionQueries
from curate.db.store.simulations import SimulationQueries
from curate.errors import CurateError, ServiceError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def sqlite_url(path: Path | str) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def _redact(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is reported as is
        return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Index(ImageQueries, LabelQueries, EmbeddingQueries, SelectionQueries, ScorerQueries,
            RunQueries, SimulationQueries, LabelStudioQueries, OverviewQueries):
    """A handle on an index database: an engine plus a session factory, and the store's
    queries (:mod:`curate.db.store`) as methods."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def url(self) -> str:
        return _redact(str(self.engine.url))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def close(self) -> None:
        self.engine.dispose()


def _alembic_config(connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine) -> None:
    """Apply pending migrations; refuse a database from a newer curate."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.begin() as conn:
        cfg = _alembic_config(conn)
        script = ScriptDirectory.from_config(cfg)
        current = MigrationContext.configure(conn).get_current_revision()
        if current is not None and current not in {r.revision for r in script.walk_revisions()}:
            raise CurateError(
                f"index database is at schema revision {current}, unknown to this curate; "
                "upgrade curate instead of touching the database")
        if current != script.get_current_head():
            command.upgrade(cfg, "head")


SQLITE_HEADER = b"SQLite format 3\x00"


def _check_sqlite_file(url: str) -> None:
    """Refuse an existing SQLite index that is empty or not SQLite at all, untouched.

    curate's index is never 0 bytes once created (switching to WAL writes page 1), so an
    empty file is a damaged or truncated index, not a new one; a new workspace has no file.
    """
    from sqlalchemy.engine import make_url

    db = make_url(url).database
    if not db or db == ":memory:" or db.startswith("file:") or not os.path.isfile(db):
        return
    try:
        with open(db, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError:
        return  # unreadable: SQLite says why
    restore = ("curate left it untouched: restore it from a backup (`curate backup FILE` makes one) "
               "by copying the backup over it, or move it away to start a new, empty index")
    if not head:
        if os.path.exists(db + "-wal") and os.path.getsize(db + "-wal") > 0:
            return  # everything may still be in the write-ahead log: SQLite recovers it
        raise CurateError(f"index database {db} is damaged (empty, 0 bytes); {restore}")
    if head != SQLITE_HEADER:
        raise CurateError(f"index database {db} is damaged (not a SQLite database); {restore}")


def open_index(url: str, *, migrate: bool = True) -> Index:
    """Open the index at a SQLAlchemy ``url`` and apply pending migrations.

    Raises :class:`ServiceError` (one line, exit 4) when the server is unreachable and
    :class:`CurateError` for an existing SQLite file that is empty or not SQLite.
    """
    try:
        if url.startswith("sqlite"):
            _check_sqlite_file(url)
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True,
                                   connect_args={"connect_timeout": 10}
                                   if url.startswith("postgresql") else {})
    except (ArgumentError, ImportError, ValueError) as e:
        raise CurateError(f"bad database URL {_redact(url)}: {e}") from None
    try:
        if migrate:
            upgrade(engine)
        else:
            inspect(engine).get_table_names()
    except OperationalError as e:
        engine.dispose()
        first = str(e.orig).strip().splitlines()[0] if e.orig else str(e).splitlines()[0]
        raise ServiceError(f"cannot open index database {_redact(url)}: {first}") from None
    return Index(engine)
