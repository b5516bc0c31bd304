"""Bulk SQL for the store's writers: ``IN`` over one JSON array, a multi-row INSERT from
one JSON document, and write transactions retried after a lost race.

Helpers of the store modules (:mod:`.images`, :mod:`.labels`), not a mixin: they take
a session (or the index, for :func:`retrying`) and never commit themselves.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from typing import Callable, Sequence

from sqlalchemy import any_, bindparam, cast, column, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY, JSON
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from curate.errors import CurateError

#: ids per ``IN (...)`` clause (under SQLite's default host-parameter limit)
CHUNK = 900
RETRIES = 10
_TRANSIENT = ("deadlock detected", "database is locked", "database table is locked",
              "could not serialize")


def rows_in(s, q, col, ids: Sequence[int] | None = None) -> list:
    """Rows of the select ``q`` in session ``s``; with ``ids``, only those where ``col``
    is one of them (one query per :data:`CHUNK` ids), else every row."""
    if ids is None:
        return s.execute(q).all()
    ids = [int(i) for i in ids]
    return [r for k in range(0, len(ids), CHUNK) for r in s.execute(q.where(col.in_(ids[k:k + CHUNK])))]


def write_error(index, e: Exception) -> CurateError:
    """A failed write (disk full, value too long, ...) as one line naming the database."""
    first = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
    return CurateError(f"cannot write to the index database {index.url}: {first}; "
                       "free disk space (or fix the cause) and rerun: what was committed is kept")


def retrying(index, work: Callable):
    """Run ``work(session)`` in a transaction of ``index``; a transaction that lost a race
    with a concurrent writer (unique violation, deadlock, lock timeout) is rolled back and
    run again on what the other process committed. Other database failures (disk full,
    ...) become one-line errors."""
    for attempt in range(RETRIES):
        try:
            with index.session() as s:
                return work(s)
        except IntegrityError:
            pass
        except OperationalError as e:
            if not any(t in str(e.orig or e).lower() for t in _TRANSIENT):
                raise write_error(index, e) from None
        except DataError as e:
            raise write_error(index, e) from None
        time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
    raise CurateError(f"lost {RETRIES} races in a row with other writers to {index.url}; "
                      "rerun to finish (what was committed is kept)")


def one_of(col, values, dialect: str):
    """``col IN values`` with the values bound as one JSON array, unpacked by the database
    (``json_each`` on SQLite, where JSON1 is built in from 3.38; ``json_array_elements_text``
    on PostgreSQL). A chunk's thousands of values then cost one C-level ``json.dumps``:
    no per-value SQL rendering (SQLAlchemy's expanding IN) or array dumping (psycopg's is
    Python). Both keep using the column's index; an expanding IN is the fallback."""
    values = list(values)
    if dialect == "postgresql":   # = ANY(array): an index scan even before ANALYZE has run
        rows = func.json_array_elements_text(bindparam(None, values, type_=JSON)
                                             ).table_valued("value")
        wanted = select(func.array_agg(cast(rows.c.value, col.type))).scalar_subquery()
        return col == any_(cast(wanted, ARRAY(col.type)))
    if dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 38):
        return col.in_(select(func.json_each(json.dumps(values, ensure_ascii=False))
                              .table_valued("value").c.value))
    return col.in_(values)


def insert_rows(s, table, keys: tuple[str, ...], rows: list[tuple], dialect: str) -> None:
    """INSERT ``rows`` (tuples of the columns ``keys``) into ``table`` in their order, as one
    statement without ORM objects: the rows go as one JSON document that the database
    unpacks (SQLite ``json_each``, PostgreSQL ``json_to_recordset``). An executemany
    instead runs a statement (PostgreSQL) or a step (SQLite, each releasing the GIL to
    decoding threads) per row; it stays the fallback. Python-side column defaults
    (timestamps, label status) are evaluated once per statement by SQLAlchemy."""
    keys = list(keys)
    if dialect == "postgresql":
        doc = bindparam(None, [dict(zip(keys, r)) for r in rows], type_=JSON)
        src = func.json_to_recordset(doc).table_valued(
            *[column(k, table.c[k].type) for k in keys]).render_derived(with_types=True)
        cols = [src.c[k] for k in keys]
    elif dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 38):
        src = func.json_each(json.dumps(rows, ensure_ascii=False)).table_valued("value")
        cols = [func.json_extract(src.c.value, f"$[{i}]") for i in range(len(keys))]
    else:
        s.execute(insert(table), [dict(zip(keys, r)) for r in rows])
        return
    s.execute(insert(table).from_select(keys, select(*cols)))   # + the columns' defaults
