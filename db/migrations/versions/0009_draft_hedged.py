"""drafts keep the sentences that hedge a finding

With the stances and notes of 0008, a stored draft is the drafter's whole result, returned as it was
drafted (the editor still reads hedges off the text on screen, which the radiologist may have changed).
Drafts stored before this revision have none.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('drafts') as batch:
        batch.add_column(sa.Column('hedged', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('drafts') as batch:
        batch.drop_column('hedged')
