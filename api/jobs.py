"""Jobs routes: thin adapters over `app.jobs`, each declaring its input, answer and refusals."""

from __future__ import annotations

import logging

from flask import Response, url_for

from api import correlation, jobs_examples
from api.auth import current_tenant, requires
from api.body import header
from api.contract import Blueprint
from api.schemas import (
    EventListSchema,
    EventTypeListSchema,
    GeneratorListSchema,
    JobBatchSchema,
    JobBatchSubmitSchema,
    JobDetailSchema,
    JobListQuerySchema,
    JobPageSchema,
    JobSchema,
    JobSubmitSchema,
    NoBodySchema,
    OutputQuerySchema,
    OutputSchema,
    SinceQuerySchema,
)
from app import batches, events, jobs, output
from app.events import plain
from app.generators import all_generators
from app.scheduling import reasons

log = logging.getLogger(__name__)
bp = Blueprint("jobs", __name__, tag="Jobs", area="jobs", examples=jobs_examples.jobs)
bp.before_request(requires("jobs"))

_IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}


@bp.post("/jobs")
@bp.arguments(JobSubmitSchema)
@bp.response(202, JobSchema, description="queued")
@bp.alt_response(200, schema=JobSchema, description="idempotent replay", success=True)
@bp.doc(parameters=[_IDEMPOTENCY_KEY])
def submit(req: dict):
    """Submit a generation job

    Queues a job of a generator `kind` (202, with `Location`). `params` are checked against the
    generator's schema first: an unknown kind or refused params is a 422 and no job is made.
    With an `Idempotency-Key` this tenant used before, the answer is 200 with the original job,
    and no second job is made. Built-in kinds: `echo` (any params; the result is the params),
    `sleep` `{seconds (at most 3600), steps? (at most 100)}`, `fail` `{message, transient?,
    times?}` and `http` `{url, payload?, poll_url?}`; plugins add more. `timeout_s` may not
    exceed the deployment's `MAX_TIMEOUT_S` (the document's maximum).
    """
    job, created = jobs.submit(
        current_tenant(),
        req,
        idempotency_key=header("Idempotency-Key"),
        correlation_id=correlation.for_new_rows(),
    )
    correlation.bind(job_id=str(job.id))
    log.info("job %s %s", "submitted" if created else "found by idempotency key", job.kind)
    headers = {"Location": url_for("jobs.get_job", job_id=str(job.id))}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return plain(job), 202 if created else 200, headers


@bp.post("/jobs/batch")
@bp.arguments(JobBatchSubmitSchema)
@bp.response(202, JobBatchSchema, description="queued, or found by their keys")
@bp.refuses(409)
def submit_batch(req: dict):
    """Submit up to 1,000 jobs at once

    `jobs` holds up to 1,000 bodies of the single submit, each with an optional
    `idempotency_key` of its own. All or nothing: every item is checked first (its fields,
    its generator's params, `MAX_TIMEOUT_S`, a key given twice in the batch), and one refused
    item refuses the batch (422, each fault named `jobs.<index>.<field>`) with nothing made.
    The jobs are made in one transaction. The answer lists a job for each item in order; an
    item whose key this tenant used before is that earlier job, and its index is in
    `replayed`. The body is bounded by `MAX_BODY_BYTES` like every other (256 KiB by
    default: 1,000 items of up to about 250 bytes each).
    """
    items, replayed = batches.submit_batch(
        current_tenant(), req["jobs"], correlation_id=correlation.for_new_rows()
    )
    log.info("batch of %d jobs submitted, %d found by idempotency key", len(items), len(replayed))
    return {"items": [plain(job) for job in items], "replayed": replayed}


@bp.get("/jobs/<job_id>")
@bp.response(200, JobDetailSchema, description="the job")
@bp.refuses(404)
def get_job(job_id: str):
    """Get a job

    One job with its status, progress, attempts and result or error, and for a job that
    waits its `waiting_reason`. Another tenant's job answers 404.
    """
    job, reason = reasons.job_and_reason(current_tenant(), job_id)
    return {**plain(job), "waiting_reason": reason}


@bp.get("/jobs")
@bp.arguments(JobListQuerySchema, location="query")
@bp.response(200, JobPageSchema, description="a page")
def list_jobs(q: dict):
    """List jobs, newest first

    The tenant's jobs, filtered by `status`, `kind` and `card_id`, newest first. Keyset
    pagination: pass the page's `next_cursor` as `cursor` for the next one; it is null on the
    last page.
    """
    items, next_cursor = jobs.list_jobs(current_tenant(), q, q["limit"], q.get("cursor"))
    return {"items": [plain(job) for job in items], "next_cursor": next_cursor}


@bp.post("/jobs/<job_id>/cancel")
@bp.arguments(NoBodySchema, location="optional_json", required=False)
@bp.response(202, JobSchema, description="cancelled or cancelling")
@bp.refuses(404, 409)
def cancel(_: dict, job_id: str):
    """Cancel a job

    A queued job never runs; a processing one stops at its next check and ends `cancelled`
    (`cancel_requested` shows it is on its way). 409 if the job already ended.
    """
    return plain(jobs.cancel(current_tenant(), job_id))


@bp.post("/jobs/<job_id>/retry")
@bp.arguments(NoBodySchema, location="optional_json", required=False)
@bp.response(202, JobSchema, description="queued again")
@bp.refuses(404, 409)
def retry(_: dict, job_id: str):
    """Retry a failed or cancelled job

    Puts a failed or cancelled job back in `queued`; `attempts` keeps counting. 409 for any
    other status.
    """
    return plain(jobs.retry(current_tenant(), job_id))


@bp.get("/jobs/<job_id>/events")
@bp.arguments(SinceQuerySchema, location="query")
@bp.response(200, EventListSchema, description="events in seq order")
@bp.refuses(404, 422)
def job_events(q: dict, job_id: str):
    """A job's events after `since`

    The job's stored events with `seq > since`, in `seq` order: the same envelopes the relay
    sends, so a client can catch up and then follow live. Paged: at most `limit` (default 100,
    at most 1,000) an answer; while `has_more`, ask again with `since=next_since`.
    """
    return jobs.job_events(current_tenant(), job_id, q["since"], q["limit"])


@bp.get("/jobs/<job_id>/output")
@bp.arguments(OutputQuerySchema, location="query")
@bp.response(200, OutputSchema, description="the output so far")
@bp.refuses(404, 422)
def job_output(q: dict, job_id: str):
    """A job's streamed output so far

    The text (and JSON deltas) the job's latest attempt streamed, from `offset` (characters)
    and `delta_offset` on; ask again with the answer's `offset` and `delta_offset` to read
    on, until `done`. A retried job's output starts again with its new `attempt`. Live, the
    same chunks arrive as `job.output.appended` events in the job's room.
    """
    return output.job_output(current_tenant(), job_id, q["offset"], q["delta_offset"])


_ARTIFACT = {
    "description": "the artifact, with its own content type",
    "content": {
        "application/json": {"schema": {}},
        "*/*": {"schema": {"type": "string", "format": "binary"}},
    },
}


@bp.get("/jobs/<job_id>/result")
@bp.doc(responses={"200": _ARTIFACT})
@bp.refuses(404)
def result(job_id: str):
    """The artifact the generator wrote

    The bytes a generator stored for the job, with their own content type (`echo` writes its
    params as JSON). 404 if the job wrote none.
    """
    content_type, body = jobs.artifact(current_tenant(), job_id)
    return Response(body, content_type=content_type)


@bp.get("/event-types")
@bp.response(200, EventTypeListSchema, description="{items: [{event_type, schema}]}")
def event_types():
    """Event types and the JSON Schema of their payloads

    The event catalogue: every `event_type` the API, workers and relay emit, with the JSON
    Schema its `payload` follows.
    """
    items = [{"event_type": t, "schema": schema} for t, schema in events.EVENT_TYPES.items()]
    return {"items": items}


@bp.get("/generators")
@bp.response(200, GeneratorListSchema, description="{items: [{kind, description, params_schema}]}")
def generators():
    """Job kinds and the JSON Schema of their params

    Every generator a job's `kind` may name, built-in or plugin, with a one-line description and
    the JSON Schema its `params` must pass (the console builds its submit form from it).
    """
    items = [
        {"kind": name, "description": _first_line(gen), "params_schema": gen.params_schema}
        for name, gen in sorted(all_generators().items())
    ]
    return {"items": items}


def _first_line(gen) -> str:
    doc = (type(gen).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""
