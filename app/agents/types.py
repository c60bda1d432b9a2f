"""Agent types are plugins: lifecycle hooks (start, stop, health) and capabilities.

A type has a `name`, a JSON Schema for its `config`, hooks `start(ctx)`, `stop(ctx)` and
`health(ctx) -> dict` (with `healthy: bool`), and `capabilities`, each with a JSON Schema
for its input. A capability returns its result, or a `JobRequest` when the work is a
generation job: the execution then completes when the job does (a callback, no polling).
Third-party types register through the `orchestra.agent_types` entry point group.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from jsonschema import Draft202012Validator

from app import plugins
from app.errors import ValidationFailed

ENTRY_POINT_GROUP = "orchestra.agent_types"


@dataclass(frozen=True)
class JobRequest:
    """What a capability returns to have a generation job run for it."""

    kind: str
    params: dict
    card_id: str | None = None


@dataclass
class AgentContext:
    """What a hook or capability sees of its agent; `log()` lines are kept in Postgres."""

    agent_id: uuid.UUID
    name: str
    type: str
    config: dict
    tenant: str
    command_id: uuid.UUID | None = None
    lines: list[tuple[str, str]] = field(default_factory=list)

    def log(self, message: str, level: str = "info") -> None:
        """Write a line to the agent's log (stored with the outcome of the hook)."""
        self.lines.append((level, str(message)[:4000]))


@dataclass(frozen=True)
class Capability:
    """Something an agent can be asked to `execute`, with the JSON Schema of its input."""

    name: str
    input_schema: dict
    run: Callable[[AgentContext, dict], Any]
    description: str = ""
    # A further check at accept time, beyond the schema: `check(config, input)`.
    check: Callable[[dict, dict], None] | None = None
    # True when `run` returns a `JobRequest`: the execution starts when the job is submitted.
    # Such a capability needs `jobs:write` too (`app/agents/scopes.py`).
    submits_job: bool = False
    # Scopes a key needs, beyond `agents:write`, to execute it.
    scopes: tuple[str, ...] = ()


class AgentType(Protocol):
    name: str
    description: str
    config_schema: dict
    capabilities: dict[str, Capability]

    def start(self, ctx: AgentContext) -> None: ...

    def stop(self, ctx: AgentContext) -> None: ...

    def health(self, ctx: AgentContext) -> dict: ...


_registry: dict[str, AgentType] = {}
_validators: dict[tuple[str, str], Draft202012Validator] = {}
_loaded_entry_points = False


def register(agent_type: AgentType) -> AgentType:
    """Add a type to the registry (its schemas are checked once, here)."""
    Draft202012Validator.check_schema(agent_type.config_schema)
    _validators[(agent_type.name, "")] = Draft202012Validator(agent_type.config_schema)
    for cap in agent_type.capabilities.values():
        Draft202012Validator.check_schema(cap.input_schema)
        _validators[(agent_type.name, cap.name)] = Draft202012Validator(cap.input_schema)
    _registry[agent_type.name] = agent_type
    return agent_type


def _load_entry_points() -> None:
    global _loaded_entry_points
    if not _loaded_entry_points:
        _loaded_entry_points = True
        plugins.load_entry_points(ENTRY_POINT_GROUP, register)


def all_types() -> dict[str, AgentType]:
    """Every registered agent type by name (built-ins and entry points)."""
    _load_entry_points()  # the built-ins registered themselves as `app.agents` loaded
    return dict(_registry)


def get(name: str) -> AgentType:
    """The type called `name`, or `ValidationFailed` naming the known ones."""
    types = all_types()
    if name not in types:
        known = ", ".join(sorted(types))
        raise ValidationFailed("unknown agent type", {"type": [f"unknown type; known: {known}"]})
    return types[name]


def _check(validator: Draft202012Validator, value: Any, prefix: str, message: str) -> None:
    details = plugins.schema_errors(validator, value, prefix)
    if details:
        raise ValidationFailed(message, details)


def validate_config(type_name: str, config: Any) -> None:
    """Check an agent's `config` against its type's JSON Schema, field by field."""
    get(type_name)
    _check(_validators[(type_name, "")], config, "config", "config rejected by the agent type")


def capability(type_name: str, name: Any) -> Capability:
    """The capability `name` of a type, or `ValidationFailed` naming the known ones."""
    caps = get(type_name).capabilities
    if not isinstance(name, str) or name not in caps:
        known = ", ".join(sorted(caps)) or "none"
        raise ValidationFailed(
            "unknown capability", {"params.capability": [f"unknown capability; known: {known}"]}
        )
    return caps[name]


def validate_input(type_name: str, cap: Capability, value: Any, config: dict) -> None:
    """Check an `execute` input against the capability's JSON Schema (and its own check)."""
    _check(
        _validators[(type_name, cap.name)],
        value,
        "params.input",
        f"input rejected by capability {cap.name}",
    )
    if cap.check is not None:
        cap.check(config, value)
