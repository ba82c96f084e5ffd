"""The database tables (SQLAlchemy 2.0 typed models)."""

from __future__ import annotations

{% if cookiecutter.include_sample -%}
from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..biz.report_rules import (
    EVENT_ID_MAX_CHARS,
    EVENT_NAME_MAX_CHARS,
    STATUS_MAX_CHARS,
    USER_ID_MAX_CHARS,
)
{%- else -%}
from sqlalchemy.orm import DeclarativeBase
{%- endif %}


class Base(DeclarativeBase):
    pass
{%- if cookiecutter.include_sample %}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RealtimeWarehousing(Base):
    """One row per report event; `event_id` is unique, so a redelivery never adds a row."""

    __tablename__ = "realtime_warehousing"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(String(EVENT_ID_MAX_CHARS), unique=True)
    user_id: Mapped[str] = mapped_column(String(USER_ID_MAX_CHARS), index=True)
    event_name: Mapped[str] = mapped_column(String(EVENT_NAME_MAX_CHARS))
    report_data: Mapped[str] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    saved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)


class AcceptStatus(Base):
    """The accept status of each user report (one row per event id)."""

    __tablename__ = "accept_status"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(String(EVENT_ID_MAX_CHARS), unique=True)
    user_id: Mapped[str] = mapped_column(String(USER_ID_MAX_CHARS), index=True)
    status: Mapped[str] = mapped_column(String(STATUS_MAX_CHARS))
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
{%- endif %}
