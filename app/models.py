"""SQLAlchemy 2 entities. Hot paths use Core statements on these tables (the ORM costs ~5x)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Sequence,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def _now(nullable: bool = False) -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=nullable)


def one_of(column: str, values: type[enum.StrEnum]) -> str:
    """The SQL of a check that `column` holds one of an enum's values."""
    return f"{column} IN ({','.join(repr(v.value) for v in values)})"


class JobStatus(enum.StrEnum):
    """A job's states; `TERMINAL` ones never change again except by an explicit retry."""

    QUEUED = "queued"
    PROCESSING = "processing"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # The scheduler's per-tenant overrides (null: the deployment's default setting): its
    # share of the workers against other tenants, how many of its jobs may hold a slot at
    # once, the highest priority it may ask for, and the default limit of a concurrency key.
    weight: Mapped[float | None] = mapped_column(Float)
    max_running: Mapped[int | None] = mapped_column(Integer)
    max_priority: Mapped[int | None] = mapped_column(SmallInteger)
    key_limit: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        CheckConstraint("weight > 0", name="ck_tenants_weight"),
        CheckConstraint("max_running >= 0", name="ck_tenants_max_running"),
        CheckConstraint("max_priority BETWEEN 0 AND 9", name="ck_tenants_max_priority"),
        CheckConstraint("key_limit >= 0", name="ck_tenants_key_limit"),
    )


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[uuid.UUID] = _uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # What the key may do (see app.tenants.SCOPES).
    scopes: Mapped[list[str]] = mapped_column(
        ARRAY(String(32)),
        server_default=text("'{jobs:read,jobs:write,agents:read,agents:write}'"),
    )
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[uuid.UUID] = _uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[float] = mapped_column(Float, server_default=text("0"))
    result: Mapped[dict | None] = mapped_column(JSONB)
    result_url: Mapped[str | None] = mapped_column(Text)
    error: Mapped[dict | None] = mapped_column(JSONB)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # `attempts` when the job was last explicitly retried: automatic retries count from here.
    retry_base: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_retries: Mapped[int] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(SmallInteger)
    card_id: Mapped[str | None] = mapped_column(String(255))
    correlation_id: Mapped[str] = mapped_column(String(255))
    timeout_s: Mapped[float] = mapped_column(Float)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # At most N jobs of a tenant with the same key hold a slot at once (`app/scheduling`).
    concurrency_key: Mapped[str | None] = mapped_column(String(255))
    # When the scheduler gave the job a slot: it holds it until it ends, waits again for a
    # retry or a hold, or is cancelled. Null while it waits for one.
    admitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Dispatch outbox: a job is due when `dispatched_at` is null and `run_after` has passed.
    # A message carries `dispatch_token`; only the current token may claim the job.
    dispatch_token: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    # The agent `execute` command that submitted this job: called back when the job ends.
    agent_command_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    run_after: Mapped[datetime] = _now()
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The current run: its id, its worker and its lease (refreshed while it runs).
    run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    worker: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempt_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        CheckConstraint(
            one_of("status", JobStatus), name="ck_jobs_status",
        ),
        CheckConstraint("priority BETWEEN 0 AND 9", name="ck_jobs_priority"),
        Index("ix_jobs_tenant_created", "tenant_id", text("created_at DESC"), text("id DESC")),
        # One index per list filter, in keyset order (migration 0005): a page of a rare
        # status or kind reads `limit + 1` entries, not the tenant's whole history.
        Index(
            "ix_jobs_tenant_status_created",
            "tenant_id",
            "status",
            text("created_at DESC"),
            text("id DESC"),
        ),
        Index(
            "ix_jobs_tenant_kind_created",
            "tenant_id",
            "kind",
            text("created_at DESC"),
            text("id DESC"),
        ),
        Index(
            "ix_jobs_tenant_card_created",
            "tenant_id",
            "card_id",
            text("created_at DESC"),
            text("id DESC"),
        ),
        Index(
            "uq_jobs_tenant_idempotency",
            "tenant_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        # Admitted and not on the broker: what the dispatch sweep sends (migration 0009).
        Index(
            "ix_jobs_due",
            "admitted_at",
            postgresql_where=text(
                "dispatched_at IS NULL AND admitted_at IS NOT NULL"
                " AND status IN ('queued','retrying')"
            ),
        ),
        Index("ix_jobs_running", "heartbeat_at", postgresql_where=text("status = 'processing'")),
        # The scheduler's candidates, per tenant in its order, and the slots held.
        Index(
            "ix_jobs_unadmitted",
            "tenant_id",
            text("priority DESC"),
            "run_after",
            "id",
            postgresql_where=text("admitted_at IS NULL AND status IN ('queued','retrying')"),
        ),
        Index(
            "ix_jobs_holding",
            "tenant_id",
            "concurrency_key",
            postgresql_where=text(
                "admitted_at IS NOT NULL AND status IN ('queued','retrying','processing')"
            ),
        ),
        # The retention sweep's oldest finished jobs first, without scanning the table.
        Index(
            "ix_jobs_finished",
            "finished_at",
            postgresql_where=text("status IN ('completed','failed','cancelled')"),
        ),
    )


class ConcurrencyLimit(Base):
    """A tenant's limit for one concurrency key, over its default (`tenants.key_limit`)."""

    __tablename__ = "concurrency_limits"
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    concurrency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    max_running: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (CheckConstraint("max_running >= 0", name="ck_concurrency_limits_max"),)


class ChatProvider(Base):
    """A chat server a tenant's admin named for its `chat` jobs (`provider`): its base URL and
    its API key, encrypted with PROVIDER_KEY_SECRETS (a Fernet token; null: no key)."""

    __tablename__ = "chat_providers"
    id: Mapped[uuid.UUID] = _uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    base_url: Mapped[str] = mapped_column(String(2000))
    api_key_sealed: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_chat_providers_name"),)


# Admission passes' tickets (`app/scheduling/admission.py`).
ADMISSION_TICKETS = Sequence("admission_tickets", metadata=Base.metadata)


class Pause(Base):
    """Work the scheduler holds back: a tenant's (`kind` null), a kind's for every tenant
    (`tenant_id` null), or one kind of one tenant. Paused jobs stay `queued`."""

    __tablename__ = "pauses"
    id: Mapped[uuid.UUID] = _uuid_pk()
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE")
    )
    kind: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        CheckConstraint("tenant_id IS NOT NULL OR kind IS NOT NULL", name="ck_pauses_scope"),
        UniqueConstraint("tenant_id", "kind", name="uq_pauses_scope",
                         postgresql_nulls_not_distinct=True),
    )


class JobArtifact(Base):
    """What a generator wrote, served by `GET /jobs/{id}/result` (see `app/artifacts.py`).

    The Postgres store keeps the bytes in `body`; the filesystem store names its file in
    `path` (relative to `ARTIFACT_DIR`) instead.
    """

    __tablename__ = "job_artifacts"
    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    content_type: Mapped[str] = mapped_column(String(255))
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    path: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = _now()


class Event(Base):
    """Every change, recorded with it; `published_at` null means still in the outbox."""

    __tablename__ = "events"
    id: Mapped[uuid.UUID] = _uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    seq: Mapped[int] = mapped_column(Integer)
    event_type: Mapped[str] = mapped_column(String(100))
    source_service: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict] = mapped_column(JSONB)
    meta: Mapped[dict] = mapped_column("metadata", JSONB)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("subject_type", "subject_id", "seq", name="uq_events_subject_seq"),
        Index("ix_events_tenant_created", "tenant_id", "created_at"),
        Index("ix_events_unpublished", "created_at", postgresql_where=text("published_at IS NULL")),
        # Retention finds agents' oldest events by it (jobs' events go with their job).
        Index(
            "ix_events_agent_created",
            "created_at",
            postgresql_where=text("subject_type = 'agent'"),
        ),
    )


class EventCounter(Base):
    """The last `seq` of each subject; its row lock makes `seq` gapless under concurrency."""

    __tablename__ = "event_counters"
    subject_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer)


class AgentStatus(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    ERROR = "error"
    INACTIVE = "inactive"


class CommandName(enum.StrEnum):
    """What an agent's mailbox takes: lifecycle commands, a status check, a capability run."""

    START = "start"
    STOP = "stop"
    RESTART = "restart"
    STATUS = "status"
    EXECUTE = "execute"


class CommandStatus(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class Agent(Base):
    """A registered agent: its current version's fields and its lifecycle state."""

    __tablename__ = "agents"
    id: Mapped[uuid.UUID] = _uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, server_default=text("''"))
    config: Mapped[dict] = mapped_column(JSONB)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[dict | None] = mapped_column(JSONB)
    last_heartbeat: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(
            one_of("status", AgentStatus),
            name="ck_agents_status",
        ),
        Index(
            "uq_agents_tenant_name",
            "tenant_id",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index("ix_agents_tenant_created", "tenant_id", text("created_at DESC"), text("id DESC")),
        Index(
            "ix_agents_live",
            "last_heartbeat",
            postgresql_where=text("deleted_at IS NULL AND status IN ('running','inactive')"),
        ),
    )


class AgentVersion(Base):
    """Every version an agent has had; a patch or revert adds one, none is rewritten."""

    __tablename__ = "agent_versions"
    agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    config: Mapped[dict] = mapped_column(JSONB)
    reason: Mapped[str] = mapped_column(String(32))  # create, patch, revert
    created_by: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = _now()


class AgentCommand(Base):
    """One command to an agent. An agent's commands run one at a time, in `seq` order.

    An `execute` whose capability submitted a job stays `processing` with `job_id` set
    until the job ends, but no longer holds up the agent's later commands.
    """

    __tablename__ = "agent_commands"
    id: Mapped[uuid.UUID] = _uuid_pk()
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    command: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16))
    result: Mapped[dict | None] = mapped_column(JSONB)
    error: Mapped[dict | None] = mapped_column(JSONB)
    job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    correlation_id: Mapped[str] = mapped_column(String(255))
    created_by: Mapped[str | None] = mapped_column(String(16))
    dispatch_token: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        CheckConstraint(
            one_of("status", CommandStatus), name="ck_commands_status"
        ),
        CheckConstraint(
            one_of("command", CommandName), name="ck_commands_command"
        ),
        # The agent's mailbox: its commands not yet done with their turn.
        Index(
            "ix_commands_mailbox",
            "agent_id",
            "seq",
            postgresql_where=text(
                "status = 'queued' OR (status = 'processing' AND job_id IS NULL)"
            ),
        ),
        Index("ix_commands_agent_seq", "agent_id", text("seq DESC")),
        Index(
            "ix_commands_finished",
            "finished_at",
            postgresql_where=text("status IN ('completed','failed')"),
        ),
    )


class AgentLog(Base):
    """Lines written by an agent's hooks and capabilities, bounded per agent."""

    __tablename__ = "agent_logs"
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    command_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    level: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )

    __table_args__ = (Index("ix_agent_logs_agent_id", "agent_id", text("id DESC")),)


class AuditEntry(Base):
    """Who (which key) did what to which agent or chat provider, and when; kept after it is
    deleted."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    key_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    key_prefix: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    details: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )

    __table_args__ = (
        Index("ix_audit_tenant_id", "tenant_id", text("id DESC")),
        Index("ix_audit_subject", "subject_type", "subject_id", text("id DESC")),
        Index("ix_audit_created", "created_at"),
    )
