"""images remember whether their DICOM header says text is burned into the pixels

BurnedInAnnotation YES means the pixels may carry the patient's name, number or date: such an image is
kept out of the teaching view and of the fine-tuning export unless someone asks for it. Images stored
before this revision were never checked: they count as not burned in.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('images') as batch:
        batch.add_column(sa.Column('burned_in', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('images') as batch:
        batch.drop_column('burned_in')
