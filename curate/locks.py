"""Cross-process locks held by a database transaction (released by commit or rollback).

``db_lock(session, key)`` must be the first statement of the session's transaction:

* PostgreSQL: ``pg_advisory_xact_lock`` on a hash of the current schema and ``key``, so
  only writers of the same workspace (schema) and the same ``key`` wait for each other;
* SQLite: ``BEGIN IMMEDIATE`` (the database's write lock; SQLite has one writer anyway),
  waiting up to the connection's busy timeout.

Used to serialise check-then-write sequences that must not interleave between
processes: appending embedding shards, storing a selection, creating named rows.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from sqlalchemy import text


def db_lock(session, key: str) -> None:
    """Block until this transaction holds the lock ``key`` (see the module docstring)."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || :k, 0))"),
                     {"k": key})
    elif conn.dialect.name == "sqlite":
        raw = conn.connection.driver_connection
        if not raw.in_transaction:
            raw.execute("BEGIN IMMEDIATE")
    # other dialects: rely on the unique constraints and the caller's retry


@contextlib.contextmanager
def file_lock(path: Path | str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the ``with`` block:
    for work outside the database that two processes must not do at once (e.g. fitting
    an encoder whose state every later embed reuses)."""
    import fcntl

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
