"""Runs of the beat (maintenance) jobs, so operators can see each job's last outcome."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, Timestamp, utcnow


class BeatJobRun(Base):
    __tablename__ = "beat_job_runs"
    __table_args__ = (Index("ix_beat_job_runs_job_started_at", "job", "started_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp())
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
