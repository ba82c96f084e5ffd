"""The initial tables.
{%- if not cookiecutter.include_sample %}

None yet: add models to data/models.py, then `alembic revision --autogenerate -m "..."`.
{%- endif %}

Revision ID: 0001
Revises: None
"""

from __future__ import annotations

from collections.abc import Sequence
{%- if cookiecutter.include_sample %}

import sqlalchemy as sa
from alembic import op
{%- endif %}

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
{%- if cookiecutter.include_sample %}


def _id_column() -> sa.Column[int]:
    # BIGINT on PostgreSQL; SQLite autoincrements only an INTEGER primary key
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        autoincrement=True,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "accept_status",
        _id_column(),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_accept_status_user_id", "accept_status", ["user_id"], unique=False)
    op.create_table(
        "realtime_warehousing",
        _id_column(),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("event_name", sa.String(length=128), nullable=False),
        sa.Column("report_data", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index(
        "ix_realtime_warehousing_user_id", "realtime_warehousing", ["user_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_realtime_warehousing_user_id", table_name="realtime_warehousing")
    op.drop_table("realtime_warehousing")
    op.drop_index("ix_accept_status_user_id", table_name="accept_status")
    op.drop_table("accept_status")
{%- else %}


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
{%- endif %}
