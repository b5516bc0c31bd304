"""Alembic environment: runs on the connection handed over by ``curate.db.index``."""

from alembic import context

from curate.db.models import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only via curate.db.index.upgrade
    raise RuntimeError("run migrations through curate.db.index.open_index")
context.configure(connection=connection, target_metadata=target_metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
