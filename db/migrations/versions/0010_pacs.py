"""the PACS and priors: where a study lives there (sealed), the outbox of signed reports, age and sex,
the patient link and the study date

A study drafted from the PACS keeps its Study Instance UID encrypted under the site secret (pacs_links),
so that its signed report can go back into it; every sign-off of such a study puts a row in deliveries in
the same transaction, sent until the PACS holds it. Studies keep the patient's age (90 and over as 90)
and sex, as DICOM's "retain patient characteristics" option allows, the study date, and a keyed hash of
the patient ID that links a study to the same patient's priors; studies stored before have none of these.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('studies') as batch:
        batch.add_column(sa.Column('age_years', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('sex', sa.String(length=1), nullable=True))
        batch.add_column(sa.Column('patient_link', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('study_date', sa.Date(), nullable=True))
        batch.create_index('ix_studies_patient_link', ['patient_link'])
    op.create_table(
        'pacs_links',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('study_id', sa.Integer(), sa.ForeignKey('studies.id'), nullable=False, unique=True),
        sa.Column('address', sa.Text(), nullable=False))
    op.create_table(
        'deliveries',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('approval_id', sa.Integer(), sa.ForeignKey('approvals.id'), nullable=False, unique=True),
        sa.Column('study_id', sa.Integer(), sa.ForeignKey('studies.id'), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=False))
    op.create_index('ix_deliveries_study_id', 'deliveries', ['study_id'])
    op.create_index('ix_deliveries_next_attempt_at', 'deliveries', ['next_attempt_at'])


def downgrade() -> None:
    op.drop_table('deliveries')
    op.drop_table('pacs_links')
    with op.batch_alter_table('studies') as batch:
        batch.drop_index('ix_studies_patient_link')
        batch.drop_column('study_date')
        batch.drop_column('patient_link')
        batch.drop_column('sex')
        batch.drop_column('age_years')
