"""drafts.views and a worklist index

Each view's orientation, measurements and lung mask, so a study reopened from the worklist shows the
same overlays as when it was drafted; an index for the worklist's newest-first order.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('drafts') as batch:
        batch.add_column(sa.Column('views', sa.JSON(), nullable=True))
    op.create_index('ix_studies_updated_at', 'studies', ['updated_at'])


def downgrade() -> None:
    op.drop_index('ix_studies_updated_at', 'studies')
    with op.batch_alter_table('drafts') as batch:
        batch.drop_column('views')
