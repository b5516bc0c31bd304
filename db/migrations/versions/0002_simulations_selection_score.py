"""simulations table; selection_items.distance -> score

A selection item's number is the strategy's per-pick score (k-center: distance to the
nearest centre; typiclust: typicality; margin: probe margin; ...), so the column is
renamed to what it holds. Stored values are kept.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('selection_items', schema=None) as batch_op:
        batch_op.alter_column('distance', new_column_name='score', existing_type=sa.Float(),
                              existing_nullable=True)
    op.create_table('simulations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('embedding_set_id', sa.Integer(), nullable=True),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('results', sa.JSON(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('versions', sa.JSON(), nullable=False),
    sa.Column('wall_seconds', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['embedding_set_id'], ['embedding_sets.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('simulations')
    with op.batch_alter_table('selection_items', schema=None) as batch_op:
        batch_op.alter_column('score', new_column_name='distance', existing_type=sa.Float(),
                              existing_nullable=True)
