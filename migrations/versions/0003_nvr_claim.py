"""nvr claim: the order in which agents' connections claimed each NVR

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


def upgrade():
    with op.batch_alter_table('nvrs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claim', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('nvrs', schema=None) as batch_op:
        batch_op.drop_column('claim')
