"""marshmallow schemas of the HTTP API, declared once; instances at module top."""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app import providers
from app.batches import MAX_ITEMS
from app.generators.http import URL_PATTERN
from app.models import AgentStatus, CommandName, JobStatus
from app.scheduling import limits

_STATUSES = [s.value for s in JobStatus]
_AGENT_STATUSES = [s.value for s in AgentStatus]
_COMMANDS = [c.value for c in CommandName]


class JobSubmitSchema(Schema):
    class Meta:
        unknown = RAISE

    kind = fields.String(required=True, validate=validate.Length(1, 64))
    params = fields.Dict(keys=fields.String(), load_default=dict)
    card_id = fields.String(allow_none=True, validate=validate.Length(1, 255))
    priority = fields.Integer(strict=True, validate=validate.Range(0, 9))
    max_retries = fields.Integer(strict=True, validate=validate.Range(0, 100))
    # Its maximum is MAX_TIMEOUT_S, a setting: app.jobs checks it, the document shows it.
    timeout_s = fields.Float(allow_nan=False, validate=validate.Range(0, min_inclusive=False))
    countdown_s = fields.Float(allow_nan=False, validate=validate.Range(0, 30 * 86400))
    concurrency_key = fields.String(
        allow_none=True,
        validate=validate.Regexp(
            "^(?!" + limits.AGENT_KEY_PREFIX + ")" + limits.KEY.pattern[1:],
            error=limits.KEY_RULE + "; agent: keys are the agents' own",
        ),
        metadata={"description": "at most the key's limit of the tenant's jobs with this key "
                  "hold a slot at once (`PUT /concurrency-keys/{key}`)"},
    )


class BatchItemSchema(JobSubmitSchema):
    """One job of a batch: the single submit's body, with its own optional key."""

    # The rule of the Idempotency-Key header (api/body.py's `printable`).
    idempotency_key = fields.String(
        validate=validate.Regexp(
            r"^[\x21-\x7e]{1,255}$", error="1-255 printable ASCII characters, no spaces"
        ),
        metadata={"description": "as the Idempotency-Key header of a single submit"},
    )


class JobBatchSubmitSchema(Schema):
    class Meta:
        unknown = RAISE

    jobs = fields.List(
        fields.Nested(BatchItemSchema),
        required=True,
        validate=validate.Length(1, MAX_ITEMS),
        metadata={"description": f"1 to {MAX_ITEMS:,} jobs, all made or none"},
    )


class ErrorBodySchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)


# The response schemas below are what the routes answer: `@blp.response` dumps each body
# through its schema, and the document shows that same schema. A field is `required` when the
# API always sends it, so the document (and schemathesis, which checks answers against it)
# says so, and an example that leaves one out fails its test.


class WaitingReasonSchema(Schema):
    code = fields.String(
        required=True,
        validate=validate.OneOf(["due_at", "provider_limited", "paused", "tenant_limit",
                                 "key_limit", "fair_share", "dispatched"]),
    )
    message = fields.String(required=True)
    due_at = fields.String()
    key = fields.String()
    running = fields.Integer()
    limit = fields.Integer()


class JobSchema(Schema):
    id = fields.UUID(required=True)
    kind = fields.String(required=True)
    params = fields.Dict(required=True)
    status = fields.String(required=True, validate=validate.OneOf(_STATUSES))
    progress = fields.Float(required=True, validate=validate.Range(0, 1))
    result = fields.Raw(required=True, allow_none=True)
    result_url = fields.String(required=True, allow_none=True)
    error = fields.Nested(ErrorBodySchema, required=True, allow_none=True)
    attempts = fields.Integer(required=True)
    max_retries = fields.Integer(required=True)
    priority = fields.Integer(required=True)
    card_id = fields.String(required=True, allow_none=True)
    correlation_id = fields.String(required=True)
    timeout_s = fields.Float(required=True)
    cancel_requested = fields.Boolean(required=True)
    concurrency_key = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True)
    started_at = fields.String(required=True, allow_none=True)
    finished_at = fields.String(required=True, allow_none=True)
    updated_at = fields.String(required=True)


class JobDetailSchema(JobSchema):
    """One job as `GET /jobs/{id}` answers it: with why it waits."""

    waiting_reason = fields.Nested(
        WaitingReasonSchema,
        required=True,
        allow_none=True,
        metadata={"description": "why a queued or retrying job has not started; null "
                  "otherwise"},
    )


class JobPageSchema(Schema):
    items = fields.List(fields.Nested(JobSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class JobBatchSchema(Schema):
    items = fields.List(
        fields.Nested(JobSchema),
        required=True,
        metadata={"description": "a job for each item, in the request's order"},
    )
    replayed = fields.List(
        fields.Integer(),
        required=True,
        metadata={
            "description": "the indexes of the items whose idempotency_key this tenant used "
            "before: their job is that earlier one, not a new one"
        },
    )


class JobListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    status = fields.String(validate=validate.OneOf(_STATUSES))
    kind = fields.String(validate=validate.Length(1, 64))
    card_id = fields.String(validate=validate.Length(1, 255))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    cursor = fields.String(validate=validate.Length(1, 512))


MAX_EVENTS_PAGE = 1000


class SinceQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    since = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1))
    # A replay is paged: a subject of 10,000 events is never one answer.
    limit = fields.Integer(load_default=100, validate=validate.Range(1, MAX_EVENTS_PAGE))


class OutputQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1),
                            metadata={"description": "text characters already read"})
    delta_offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1),
                                  metadata={"description": "deltas already read"})


class OutputSchema(Schema):
    job_id = fields.UUID(required=True)
    attempt = fields.Integer(required=True,
                             metadata={"description": "the attempt this output is of"})
    status = fields.String(required=True)
    done = fields.Boolean(required=True,
                          metadata={"description": "the job ended: the output is whole"})
    text = fields.String(required=True, metadata={"description": "the text from `offset` on"})
    offset = fields.Integer(required=True,
                            metadata={"description": "the text's length so far: the next "
                                      "`offset`"})
    deltas = fields.List(fields.Raw(), required=True,
                         metadata={"description": "the deltas from `delta_offset` on"})
    delta_offset = fields.Integer(required=True,
                                  metadata={"description": "the deltas so far: the next "
                                            "`delta_offset`"})


class SubjectSchema(Schema):
    type = fields.String(required=True)
    id = fields.String(required=True)


class EventSchema(Schema):
    event_id = fields.UUID(required=True)
    event_type = fields.String(required=True)
    seq = fields.Integer(required=True, validate=validate.Range(1))
    timestamp = fields.String(required=True)
    source_service = fields.String(required=True)
    subject = fields.Nested(SubjectSchema, required=True)
    payload = fields.Dict(required=True)
    metadata = fields.Dict(required=True)


class EventListSchema(Schema):
    items = fields.List(fields.Nested(EventSchema), required=True)
    next_since = fields.Integer(
        required=True,
        metadata={"description": "the `since` of the next page: the last `seq` here"},
    )
    has_more = fields.Boolean(
        required=True, metadata={"description": "whether events after this page exist"}
    )


class ErrorSchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=True)


class ErrorEnvelopeSchema(Schema):
    """`{"error": {code, message, details}}`: `details` names each field at fault."""

    error = fields.Nested(ErrorSchema, required=True)


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


class NoBodySchema(Schema):
    """The body of /cancel and /retry: nothing, or an empty object."""

    class Meta:
        unknown = RAISE


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
    name = fields.String(required=True)
    description = fields.String(required=True)
    input_schema = fields.Dict(required=True)
    scopes = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "scopes a key needs, beyond agents:write, to execute it"},
    )


class AgentSchema(Schema):
    id = fields.UUID(required=True)
    name = fields.String(required=True)
    type = fields.String(required=True)
    description = fields.String(required=True)
    config = fields.Dict(required=True)
    capabilities = fields.List(fields.Nested(CapabilitySchema), required=True)
    version = fields.Integer(required=True, validate=validate.Range(1))
    status = fields.String(required=True, validate=validate.OneOf(_AGENT_STATUSES))
    error = fields.Nested(ErrorBodySchema, required=True, allow_none=True)
    last_heartbeat = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)


class AgentPageSchema(Schema):
    items = fields.List(fields.Nested(AgentSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class AgentCommandSchema(Schema):
    id = fields.UUID(required=True)
    agent_id = fields.UUID(required=True)
    command = fields.String(required=True, validate=validate.OneOf(_COMMANDS))
    params = fields.Dict(required=True)
    status = fields.String(
        required=True, validate=validate.OneOf(["queued", "processing", "completed", "failed"])
    )
    result = fields.Raw(required=True, allow_none=True)
    error = fields.Nested(ErrorBodySchema, required=True, allow_none=True)
    job_id = fields.UUID(required=True, allow_none=True)
    created_at = fields.String(required=True)
    started_at = fields.String(required=True, allow_none=True)
    finished_at = fields.String(required=True, allow_none=True)
    updated_at = fields.String(required=True)


class AgentCommandListSchema(Schema):
    items = fields.List(fields.Nested(AgentCommandSchema), required=True)


class AgentVersionSchema(Schema):
    version = fields.Integer(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    config = fields.Dict(required=True)
    reason = fields.String(required=True)
    created_by = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True)


class AgentVersionListSchema(Schema):
    items = fields.List(fields.Nested(AgentVersionSchema), required=True)


class AgentStatusSchema(Schema):
    agent_id = fields.UUID(required=True)
    status = fields.String(required=True, validate=validate.OneOf(_AGENT_STATUSES))
    last_heartbeat = fields.String(required=True, allow_none=True)
    error = fields.Nested(ErrorBodySchema, required=True, allow_none=True)
    version = fields.Integer(required=True)
    queued_commands = fields.Integer(required=True)


class DurationsSchema(Schema):
    avg = fields.Float(required=True, allow_none=True)
    p50 = fields.Float(required=True, allow_none=True)
    p95 = fields.Float(required=True, allow_none=True)
    max = fields.Float(required=True, allow_none=True)


class CommandStatsSchema(Schema):
    count = fields.Integer(required=True)
    completed = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    in_progress = fields.Integer(required=True)
    duration_s = fields.Nested(DurationsSchema, required=True)


class AgentMetricsSchema(Schema):
    agent_id = fields.UUID(required=True)
    commands = fields.Dict(
        keys=fields.String(), values=fields.Nested(CommandStatsSchema), required=True
    )
    executions = fields.Dict(
        keys=fields.String(), values=fields.Nested(CommandStatsSchema), required=True
    )
    last_heartbeat = fields.String(required=True, allow_none=True)


class LogLineSchema(Schema):
    at = fields.String(required=True)
    level = fields.String(required=True)
    message = fields.String(required=True)
    command_id = fields.UUID(required=True, allow_none=True)


class LogListSchema(Schema):
    items = fields.List(fields.Nested(LogLineSchema), required=True)


class AuditKeySchema(Schema):
    id = fields.UUID(required=True, allow_none=True)
    prefix = fields.String(required=True, allow_none=True)


class AuditEntrySchema(Schema):
    id = fields.Integer(required=True)
    at = fields.String(required=True)
    key = fields.Nested(AuditKeySchema, required=True)
    action = fields.String(required=True)
    subject = fields.Nested(SubjectSchema, required=True)
    details = fields.Dict(required=True)


class AuditPageSchema(Schema):
    items = fields.List(fields.Nested(AuditEntrySchema), required=True)
    next_before = fields.Integer(required=True, allow_none=True)


class AgentTypeSchema(Schema):
    type = fields.String(required=True)
    description = fields.String(required=True)
    config_schema = fields.Dict(required=True)
    capabilities = fields.List(fields.Nested(CapabilitySchema), required=True)


class AgentTypeListSchema(Schema):
    items = fields.List(fields.Nested(AgentTypeSchema), required=True)


class GeneratorSchema(Schema):
    kind = fields.String(required=True)
    description = fields.String(required=True)
    params_schema = fields.Dict(required=True)


class GeneratorListSchema(Schema):
    items = fields.List(fields.Nested(GeneratorSchema), required=True)


class EventTypeSchema(Schema):
    event_type = fields.String(required=True)
    schema = fields.Dict(required=True)


class EventTypeListSchema(Schema):
    items = fields.List(fields.Nested(EventTypeSchema), required=True)


class LivenessSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["alive"]))


class ReadinessSchema(Schema):
    """200 `healthy` with every check `ok`, or 503 `unhealthy` naming the `failed` ones."""

    status = fields.String(required=True, validate=validate.OneOf(["healthy", "unhealthy"]))
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    failed = fields.List(fields.String())




# --- scheduling -------------------------------------------------------------------------


class TenantLimitsSchema(Schema):
    weight = fields.Float(required=True)
    max_running = fields.Integer(required=True)
    max_priority = fields.Integer(required=True)
    key_limit = fields.Integer(required=True)
    own = fields.List(
        fields.String(), required=True,
        metadata={"description": "the limits set for this tenant; the others are defaults"},
    )


class PauseSchema(Schema):
    tenant = fields.String(required=True, allow_none=True,
                           metadata={"description": "null: every tenant"})
    kind = fields.String(required=True, allow_none=True,
                         metadata={"description": "null: every kind"})
    since = fields.String(required=True)


class PauseListSchema(Schema):
    items = fields.List(fields.Nested(PauseSchema), required=True)


class SchedulingSchema(Schema):
    limits = fields.Nested(TenantLimitsSchema, required=True)
    running = fields.Integer(required=True,
                             metadata={"description": "jobs holding a slot (sent or running)"})
    waiting = fields.Integer(required=True,
                             metadata={"description": "jobs waiting in Postgres for a slot"})
    pauses = fields.List(fields.Nested(PauseSchema), required=True)


class PauseRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    kind = fields.String(allow_none=True, validate=validate.Length(1, 64),
                         metadata={"description": "one kind; left out: all the tenant's work"})


class PauseStateSchema(Schema):
    tenant = fields.String(required=True)
    kind = fields.String(required=True, allow_none=True)
    paused = fields.Boolean(required=True)
    changed = fields.Boolean(required=True,
                             metadata={"description": "false: it was so already"})


class KeyLimitSchema(Schema):
    key = fields.String(required=True)
    max_running = fields.Integer(required=True)
    own = fields.Boolean(required=True,
                         metadata={"description": "false: the tenant's default applies"})
    running = fields.Integer(required=True, metadata={"description": "slots its jobs hold"})


class KeyLimitListSchema(Schema):
    items = fields.List(fields.Nested(KeyLimitSchema), required=True)
    next_after = fields.String(required=True, allow_none=True)


class KeyLimitQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    after = fields.String(validate=validate.Regexp(limits.KEY, error=limits.KEY_RULE))
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 500))


class KeyLimitSetSchema(Schema):
    class Meta:
        unknown = RAISE

    max_running = fields.Integer(required=True, strict=True,
                                 validate=validate.Range(0, 100000))


# --- chat providers ---------------------------------------------------------------------


class ProviderSchema(Schema):
    name = fields.String(required=True)
    base_url = fields.String(required=True)
    has_key = fields.Boolean(required=True, metadata={
        "description": "whether a key is stored; nothing of the key itself is ever shown"})
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)


class ProviderListSchema(Schema):
    items = fields.List(fields.Nested(ProviderSchema), required=True)


class ProviderSetSchema(Schema):
    class Meta:
        unknown = RAISE

    base_url = fields.String(
        required=True,
        validate=[validate.Length(1, providers.MAX_URL_CHARS),
                  validate.Regexp(URL_PATTERN, error="an http(s) URL without whitespace")],
        metadata={"description": "the API's base, e.g. https://api.example.com/v1; "
                                 "no credentials in it"},
    )
    api_key = fields.String(
        load_only=True,
        validate=validate.Regexp(providers.KEY_PATTERN, error=providers.KEY_RULE),
        metadata={"description": "sent as `Authorization: Bearer <api_key>`; stored encrypted, "
                                 "never shown again (left out: the provider has no key)"},
    )
