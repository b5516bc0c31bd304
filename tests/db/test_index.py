import pytest
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
