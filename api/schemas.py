"""marshmallow schemas of the HTTP API, declared once; instances at module top."""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app.models import AgentStatus, JobStatus

_STATUSES = [s.value for s in JobStatus]
_AGENT_STATUSES = [s.value for s in AgentStatus]
_COMMANDS = ["start", "stop", "restart", "status", "execute"]


class JobSubmitSchema(Schema):
    class Meta:
        unknown = RAISE

    kind = fields.String(required=True, validate=validate.Length(1, 64))
    params = fields.Dict(keys=fields.String(), load_default=dict)
    card_id = fields.String(allow_none=True, validate=validate.Length(1, 255))
    priority = fields.Integer(strict=True, validate=validate.Range(0, 9))
    max_retries = fields.Integer(strict=True, validate=validate.Range(0, 100))
    timeout_s = fields.Float(
        allow_nan=False, validate=validate.Range(0, 7 * 86400, min_inclusive=False)
    )
    countdown_s = fields.Float(allow_nan=False, validate=validate.Range(0, 30 * 86400))


class ErrorBodySchema(Schema):
    code = fields.String()
    message = fields.String()


class JobSchema(Schema):
    id = fields.UUID()
    kind = fields.String()
    params = fields.Dict()
    status = fields.String(validate=validate.OneOf(_STATUSES))
    progress = fields.Float()
    result = fields.Raw(allow_none=True)
    result_url = fields.String(allow_none=True)
    error = fields.Nested(ErrorBodySchema, allow_none=True)
    attempts = fields.Integer()
    max_retries = fields.Integer()
    priority = fields.Integer()
    card_id = fields.String(allow_none=True)
    correlation_id = fields.String()
    timeout_s = fields.Float()
    cancel_requested = fields.Boolean()
    created_at = fields.String()
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    updated_at = fields.String()


class JobPageSchema(Schema):
    items = fields.List(fields.Nested(JobSchema))
    next_cursor = fields.String(allow_none=True)


class JobListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    status = fields.String(validate=validate.OneOf(_STATUSES))
    kind = fields.String(validate=validate.Length(1, 64))
    card_id = fields.String(validate=validate.Length(1, 255))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    cursor = fields.String(validate=validate.Length(1, 512))


class SinceQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    since = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1))


class EventSchema(Schema):
    event_id = fields.UUID()
    event_type = fields.String()
    seq = fields.Integer()
    timestamp = fields.String()
    source_service = fields.String()
    subject = fields.Dict()
    payload = fields.Dict()
    metadata = fields.Dict()


class EventListSchema(Schema):
    items = fields.List(fields.Nested(EventSchema))


class ErrorEnvelopeSchema(Schema):
    error = fields.Dict()


class AgentCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(1, 100))
    type = fields.String(required=True, validate=validate.Length(1, 64))
    description = fields.String(validate=validate.Length(0, 2000), load_default="")
    config = fields.Dict(keys=fields.String(), load_default=dict)


class AgentPatchSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(validate=validate.Length(1, 100))
    description = fields.String(validate=validate.Length(0, 2000))
    config = fields.Dict(keys=fields.String())

    @validates_schema
    def _something(self, data, **_):
        if not data:
            raise ValidationError("give at least one of name, description, config", "_schema")


class AgentRevertSchema(Schema):
    class Meta:
        unknown = RAISE

    version = fields.Integer(required=True, strict=True, validate=validate.Range(1, 2**31 - 1))


class CommandSchema(Schema):
    class Meta:
        unknown = RAISE

    command = fields.String(required=True, validate=validate.OneOf(_COMMANDS))
    params = fields.Dict(keys=fields.String(), load_default=dict)


class ShortcutSchema(Schema):
    """The body of /start, /stop and /restart: optional params only."""

    class Meta:
        unknown = RAISE

    params = fields.Dict(keys=fields.String(), load_default=dict)


class AgentListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    status = fields.String(validate=validate.OneOf(_AGENT_STATUSES))
    type = fields.String(validate=validate.Length(1, 64))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    cursor = fields.String(validate=validate.Length(1, 512))


class LimitQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))


class AuditQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    agent_id = fields.UUID()
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    before = fields.Integer(validate=validate.Range(1, 2**63 - 1))


class CapabilitySchema(Schema):
    name = fields.String()
    description = fields.String()
    input_schema = fields.Dict()


class AgentSchema(Schema):
    id = fields.UUID()
    name = fields.String()
    type = fields.String()
    description = fields.String()
    config = fields.Dict()
    capabilities = fields.List(fields.Nested(CapabilitySchema))
    version = fields.Integer()
    status = fields.String(validate=validate.OneOf(_AGENT_STATUSES))
    error = fields.Nested(ErrorBodySchema, allow_none=True)
    last_heartbeat = fields.String(allow_none=True)
    created_at = fields.String()
    updated_at = fields.String()


class AgentCommandSchema(Schema):
    id = fields.UUID()
    agent_id = fields.UUID()
    command = fields.String(validate=validate.OneOf(_COMMANDS))
    params = fields.Dict()
    status = fields.String(validate=validate.OneOf(["queued", "processing", "completed", "failed"]))
    result = fields.Raw(allow_none=True)
    error = fields.Nested(ErrorBodySchema, allow_none=True)
    job_id = fields.UUID(allow_none=True)
    created_at = fields.String()
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    updated_at = fields.String()


job_submit = JobSubmitSchema()
job_list_query = JobListQuerySchema()
since_query = SinceQuerySchema()
agent_create = AgentCreateSchema()
agent_patch = AgentPatchSchema()
agent_revert = AgentRevertSchema()
command = CommandSchema()
shortcut = ShortcutSchema()
agent_list_query = AgentListQuerySchema()
limit_query = LimitQuerySchema()
audit_query = AuditQuerySchema()
