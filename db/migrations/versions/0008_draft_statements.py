"""drafts keep what they say of each finding and how they were made

The draft's stance on each finding (present, possible, absent, not assessed), with the cut of the
statement policy behind it, and the drafter's notes: the finding panel shows them when a study is opened
again, instead of re-deriving them from the text. Drafts stored before this revision have neither.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('drafts') as batch:
        batch.add_column(sa.Column('statements', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('notes', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('drafts') as batch:
        batch.drop_column('notes')
        batch.drop_column('statements')
