import pytest
from helpers import bare_scorer
from sqlalchemy import inspect, select, text

from curate.db.index import open_index
from curate.db.models import Base, Batch, Image
from curate.errors import CurateError, ServiceError


def test_migrations_create_every_table(index):
    tables = set(inspect(index.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_sqlite_uses_wal(sqlite_ws):
    idx = sqlite_ws.open_index()
    with idx.engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    idx.close()


def test_reopen_keeps_rows_and_schema(ws):
    idx = ws.open_index()
    with idx.session() as s:
        s.add(Batch(name="b1"))
    idx.close()
    idx = ws.open_index()  # migrations already applied: nothing destructive happens
    with idx.session() as s:
        assert s.scalar(select(Batch.name)) == "b1"
    idx.close()


def test_session_rolls_back_on_error(index):
    with pytest.raises(RuntimeError):
        with index.session() as s:
            s.add(Image(path="/x.png", status="ok"))
            s.flush()
            raise RuntimeError("boom")
    with index.session() as s:
        assert s.scalar(select(Image)) is None


def test_newer_schema_is_refused(sqlite_ws):
    idx = sqlite_ws.open_index()
    with idx.engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    idx.close()
    with pytest.raises(CurateError, match="9999"):
        sqlite_ws.open_index()


def test_unreachable_postgres_is_one_line_service_error():
    with pytest.raises(ServiceError) as e:
        open_index("postgresql+psycopg://nobody@127.0.0.1:1/none")
    msg = str(e.value)
    assert "\n" not in msg and "127.0.0.1" in msg and e.value.exit_code == 4


def test_bad_url_is_user_error():
    with pytest.raises(CurateError, match="bad database URL"):
        open_index("nosuchdialect://x")


@pytest.mark.parametrize("copy", [True, False], ids=["copy", "executemany"])
def test_upsert_scores_inserts_then_replaces(index, copy):
    """The bulk score upsert (COPY + INSERT ... ON CONFLICT on PostgreSQL, executemany
    upserts on SQLite): a second call replaces the rows it names and adds new ones."""
    import datetime as dt

    import numpy as np

    from curate.db.models import Score

    with index.session() as s:
        scorer_id = bare_scorer(s)
        s.add_all(Image(path=f"/{i}.png", status="ok") for i in range(7))
        s.flush()
        ids = sorted(s.scalars(select(Image.id)))
    t1, t2 = dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2)
    ids = np.asarray(ids)
    index.upsert_scores(scorer_id, ids[:5], np.arange(5.0), np.full(5, 0.5),
                        np.array([True, False, True, False, True]), t1, copy=copy)
    index.upsert_scores(scorer_id, ids[3:], np.array([-1.5, 1e300, 7.0, 8.0]),
                        np.array([0.01, 0.25, 1.0, 0.0]), np.array([False, True, True, False]), t2,
                        copy=copy)
    with index.session() as s:
        rows = {r.image_id: (r.score, r.p_value, r.flagged, r.scored_at)
                for r in s.scalars(select(Score))}
    assert len(rows) == 7
    assert rows[int(ids[0])] == (0.0, 0.5, True, t1) and rows[int(ids[2])] == (2.0, 0.5, True, t1)
    assert rows[int(ids[3])] == (-1.5, 0.01, False, t2)
    assert rows[int(ids[4])] == (1e300, 0.25, True, t2)
    assert rows[int(ids[6])] == (8.0, 0.0, False, t2)
