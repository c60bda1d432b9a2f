"""Scopes hold through agents: what a key needs to execute a capability, and what it may
read of the job behind an execution.

The rule: a route's scope (`agents:write` to command an agent, `agents:read` to read one)
is the floor, never a way around another area's scope. A capability that makes a job
(`submits_job`, like `generator`'s `generate`) needs `jobs:write` too, besides any scope
it declares, checked when the command is accepted, before anything is written. A job's
result and error are job data: what an execution or a command carries of them (its
`result` `{job_id, result}`, its `JOB_*` error's message) is shown only to a key with
`jobs:read`; any other key sees the job's id and that something was withheld.
"""

from __future__ import annotations

import dataclasses

from app.agents.types import Capability
from app.errors import Forbidden
from app.rows import CommandRow
from app.tenants import TenantRef

JOB_READ, JOB_WRITE = "jobs:read", "jobs:write"
# What a redacted value says in place of the job's data.
WITHHELD = f"withheld: requires {JOB_READ}"


def needed(cap: Capability) -> tuple[str, ...]:
    """The scopes a key needs, beyond `agents:write`, to execute `cap`: its own, and
    `jobs:write` for one that submits a job (even if its plugin forgot to say so)."""
    scopes = set(cap.scopes) | ({JOB_WRITE} if cap.submits_job else set())
    return tuple(sorted(scopes))


def check_execute(who: TenantRef, cap: Capability) -> None:
    """Refuse (403, as a route refuses a missing scope) a key that lacks what `cap` needs."""
    for scope in needed(cap):
        if not who.allows(scope):
            raise Forbidden(f"this key lacks the {scope} scope", {"scope": [f"requires {scope}"]})


def _withhold(job_id, result, error) -> tuple:
    """`result` and `error` as a key without `jobs:read` may see them: the job's id and
    the error's code stay, the job's data does not."""
    if result is not None:
        result = {"job_id": job_id, "withheld": WITHHELD}
    if error is not None:
        error = {**error, "message": WITHHELD}
    return result, error


def command_view(who: TenantRef, command: CommandRow) -> CommandRow:
    """A command as the API answers it to `who` (a copy without the job's data, if need be)."""
    if command.job_id is None or who.allows(JOB_READ):
        return command
    result, error = _withhold(str(command.job_id), command.result, command.error)
    return dataclasses.replace(command, result=result, error=error)


def can_read_jobs(who: TenantRef | None) -> bool:
    return who is not None and who.allows(JOB_READ)


def envelope_for(who: TenantRef | None, envelope: dict) -> dict:
    """An event as `who` may see it: an agent's command or execution event that carries a
    job's result or error loses the job's data unless `who` holds `jobs:read` (the API's
    replay and the relay both send through here). Other events are returned as they are."""
    payload = envelope.get("payload") or {}
    if (
        envelope.get("subject", {}).get("type") != "agent"
        or payload.get("job_id") is None
        or ("result" not in payload and "error" not in payload)
        or can_read_jobs(who)
    ):
        return envelope
    result, error = _withhold(payload["job_id"], payload.get("result"), payload.get("error"))
    redacted = dict(payload)
    if result is not None:
        redacted["result"] = result
    if error is not None:
        redacted["error"] = error
    return {**envelope, "payload": redacted}
