"""Registered agents: the worker identities that tasks are routed to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, StrEnum, Timestamp, new_id, utcnow
from .enums import AgentDriver, AgentStatus, AgentType


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    type: Mapped[AgentType] = mapped_column(StrEnum(AgentType, "agent_type"))
    capabilities: Mapped[list[str]] = mapped_column(JSONB, default=list)
    driver: Mapped[AgentDriver] = mapped_column(StrEnum(AgentDriver, "agent_driver"))
    endpoint: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    capacity: Mapped[int] = mapped_column(Integer, default=1)
    preferred_technologies: Mapped[list[str]] = mapped_column(JSONB, default=list)
    avoided_technologies: Mapped[list[str]] = mapped_column(JSONB, default=list)
    maintenance: Mapped[bool] = mapped_column(Boolean, default=False)
    maintenance_reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[AgentStatus] = mapped_column(
        StrEnum(AgentStatus, "agent_status"), default=AgentStatus.ACTIVE
    )
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp())
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    health_reason: Mapped[str | None] = mapped_column(Text)
    tasks_completed: Mapped[int] = mapped_column(Integer, default=0)
    tasks_failed: Mapped[int] = mapped_column(Integer, default=0)
    total_duration_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    total_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    total_cost: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow, onupdate=utcnow)
