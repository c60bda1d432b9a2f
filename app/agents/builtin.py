"""The built-in agent types: `echo` (say) and `generator` (generate a job)."""

from __future__ import annotations

from app import generators
from app.agents.types import AgentContext, Capability, JobRequest, register
from app.errors import ValidationFailed


class Echo:
    """Says back what it is told. Its config can make it unhealthy or refuse to start,
    which is how demos and tests see `inactive` and `error`."""

    name = "echo"
    description = "Answers `say` with the same text."
    config_schema = {
        "type": "object",
        "properties": {
            "healthy": {"type": "boolean", "description": "what the health hook reports"},
            "fail_start": {"type": "boolean", "description": "make the start hook fail"},
        },
        "additionalProperties": False,
    }

    def __init__(self) -> None:
        self.capabilities = {
            "say": Capability(
                "say",
                {
                    "type": "object",
                    "properties": {"text": {"type": "string", "maxLength": 100_000}},
                    "required": ["text"],
                    "additionalProperties": False,
                },
                self.say,
                "completes with {text}",
            )
        }

    def start(self, ctx: AgentContext) -> None:
        if ctx.config.get("fail_start"):
            raise RuntimeError("refusing to start: config.fail_start is set")
        ctx.log(f"echo agent {ctx.name} started")

    def stop(self, ctx: AgentContext) -> None:
        ctx.log(f"echo agent {ctx.name} stopped")

    def health(self, ctx: AgentContext) -> dict:
        return {"healthy": ctx.config.get("healthy", True)}

    def say(self, ctx: AgentContext, data: dict) -> dict:
        ctx.log(f"say: {data['text'][:200]}")
        return {"text": data["text"]}


class Generator:
    """Submits a generation job for its tenant; the execution ends when the job does."""

    name = "generator"
    description = "Runs `generate` as a generation job of the agent's tenant."
    config_schema = {
        "type": "object",
        "properties": {
            "allowed_kinds": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "description": "job kinds this agent may submit (default: any)",
            }
        },
        "additionalProperties": False,
    }

    def __init__(self) -> None:
        self.capabilities = {
            "generate": Capability(
                "generate",
                {
                    "type": "object",
                    "properties": {
                        "kind": {"type": "string", "minLength": 1, "maxLength": 64},
                        "params": {"type": "object"},
                        "card_id": {"type": "string", "minLength": 1, "maxLength": 255},
                    },
                    "required": ["kind"],
                    "additionalProperties": False,
                },
                self.generate,
                "submits a job {kind, params}; completes with {job_id, result}",
                check=self.check,
                submits_job=True,
                scopes=("jobs:write",),  # it submits a job of the tenant
            )
        }

    def start(self, ctx: AgentContext) -> None:
        ctx.log(f"generator agent {ctx.name} started")

    def stop(self, ctx: AgentContext) -> None:
        ctx.log(f"generator agent {ctx.name} stopped")

    def health(self, ctx: AgentContext) -> dict:
        return {"healthy": True}

    @staticmethod
    def check(config: dict, data: dict) -> None:
        """The job's kind must be allowed and its params valid, before anything is queued."""
        allowed = config.get("allowed_kinds")
        if allowed is not None and data["kind"] not in allowed:
            raise ValidationFailed(
                "kind not allowed for this agent",
                {"params.input.kind": [f"not one of this agent's kinds: {', '.join(allowed)}"]},
            )
        try:
            generators.validate_params(data["kind"], data.get("params", {}))
        except ValidationFailed as exc:
            raise ValidationFailed(
                exc.message, {f"params.input.{k}": v for k, v in exc.details.items()}
            ) from None

    def generate(self, ctx: AgentContext, data: dict) -> JobRequest:
        ctx.log(f"generate: submitting a {data['kind']} job")
        return JobRequest(data["kind"], data.get("params", {}), data.get("card_id"))


register(Echo())
register(Generator())
