"""images: one ok image per sha256, held by a partial unique index

Before this revision only the ingesting process de-duplicated, so two concurrent
ingests could store the same bytes twice as ok images. Such extra rows (all but the
oldest per sha256) are kept with everything that points at them (labels, embeddings,
selections) but leave the ok set: status ``duplicate`` with the id of the kept image
in ``reason``. Then the index is created.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

OK = sa.text("status = 'ok'")


def upgrade() -> None:
    conn = op.get_bind()
    extra = conn.execute(sa.text(
        "SELECT i.id, k.keep FROM images i JOIN "
        "(SELECT sha256, MIN(id) AS keep FROM images WHERE status = 'ok' AND sha256 IS NOT NULL "
        " GROUP BY sha256 HAVING COUNT(*) > 1) k ON i.sha256 = k.sha256 "
        "WHERE i.status = 'ok' AND i.id <> k.keep")).all()
    for image_id, keep in extra:
        conn.execute(sa.text("UPDATE images SET status = 'duplicate', reason = :r WHERE id = :i"),
                     {"r": f"same bytes as image {keep} (found by migration 0003)", "i": image_id})
    op.create_index('uq_images_ok_sha256', 'images', ['sha256'], unique=True,
                    sqlite_where=OK, postgresql_where=OK)


def downgrade() -> None:
    op.drop_index('uq_images_ok_sha256', table_name='images')
