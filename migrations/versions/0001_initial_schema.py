"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-26

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('nvrs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('hostname', sa.String(length=253), nullable=False),
    sa.Column('ip_address', sa.String(length=45), nullable=True),
    sa.Column('location', sa.String(length=200), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='offline', nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('connection_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('online', 'offline')", name=op.f('ck_nvrs_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_nvrs')),
    sqlite_autoincrement=True
    )
    # Hostnames are unique whatever their case (autogenerate cannot see this index).
    op.create_index('uq_nvrs_hostname_lower', 'nvrs', [sa.text('lower(hostname)')], unique=True)
    op.create_table('status_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('nvr_id', sa.Integer(), nullable=False),
    sa.Column('camera_id', sa.Integer(), nullable=True),
    sa.Column('from_status', sa.String(length=16), nullable=False),
    sa.Column('to_status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_status_events')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('status_events', schema=None) as batch_op:
        batch_op.create_index('ix_status_events_nvr_id_at', ['nvr_id', 'at'], unique=False)

    op.create_table('cameras',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('nvr_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('channel', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='offline', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('online', 'offline')", name=op.f('ck_cameras_status')),
    sa.ForeignKeyConstraint(['nvr_id'], ['nvrs.id'], name=op.f('fk_cameras_nvr_id_nvrs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cameras')),
    sa.UniqueConstraint('nvr_id', 'channel', name=op.f('uq_cameras_nvr_id_channel')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cameras_nvr_id'), ['nvr_id'], unique=False)



def downgrade():
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cameras_nvr_id'))

    op.drop_table('cameras')
    with op.batch_alter_table('status_events', schema=None) as batch_op:
        batch_op.drop_index('ix_status_events_nvr_id_at')

    op.drop_table('status_events')
    op.drop_index('uq_nvrs_hostname_lower', table_name='nvrs')
    op.drop_table('nvrs')
