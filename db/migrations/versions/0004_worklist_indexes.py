"""indexes for a worklist of 100,000 studies and for log-ins

The worklist by status read every study of that status and sorted them (ix_studies_status held only
the status): (status, updated_at, id) hands them over newest first, so a page reads 200 rows. The
unfiltered worklist sorts by (updated_at, id): PostgreSQL sorted each page within equal times, SQLite
already has the id in its index. A log-in counts recent failures of its user: the audit log was read
whole. `python -m xr bench-worklist` shows the times.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_studies_status_updated', 'studies', ['status', 'updated_at', 'id'])
    op.drop_index('ix_studies_status', 'studies')  # a prefix of the new index
    op.create_index('ix_studies_updated', 'studies', ['updated_at', 'id'])
    op.drop_index('ix_studies_updated_at', 'studies')
    op.create_index('ix_audit_user_action_at', 'audit_events', ['user_id', 'action', 'at'])


def downgrade() -> None:
    op.drop_index('ix_audit_user_action_at', 'audit_events')
    op.create_index('ix_studies_updated_at', 'studies', ['updated_at'])
    op.drop_index('ix_studies_updated', 'studies')
    op.create_index('ix_studies_status', 'studies', ['status'])
    op.drop_index('ix_studies_status_updated', 'studies')
