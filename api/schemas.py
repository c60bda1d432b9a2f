"""marshmallow schemas of the HTTP API, declared once; instances at module top."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from app.models import JobStatus

_STATUSES = [s.value for s in JobStatus]


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


job_submit = JobSubmitSchema()
job_list_query = JobListQuerySchema()
since_query = SinceQuerySchema()
