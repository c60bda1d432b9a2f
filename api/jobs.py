"""Jobs routes: thin adapters over `app.jobs`."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, url_for

from api import correlation, schemas
from api.auth import current_tenant, requires
from api.body import header, json_body, query
from app import events, jobs
from app.generators import all_generators

log = logging.getLogger(__name__)
bp = Blueprint("jobs", __name__)
bp.before_request(requires("jobs"))


@bp.post("/jobs")
def submit():
    """Submit a generation job (202), or find the one an `Idempotency-Key` made (200)."""
    req = schemas.job_submit.load(json_body())
    job, created = jobs.submit(
        current_tenant(),
        req,
        idempotency_key=header("Idempotency-Key"),
        correlation_id=correlation.for_new_rows(),
    )
    correlation.bind(job_id=job["id"])
    log.info("job %s %s", "submitted" if created else "found by idempotency key", job["kind"])
    resp = jsonify(job)
    resp.status_code = 202 if created else 200
    resp.headers["Location"] = url_for("jobs.get_job", job_id=job["id"])
    if not created:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    """One job."""
    return jsonify(jobs.get(current_tenant(), job_id))


@bp.get("/jobs")
def list_jobs():
    """The tenant's jobs, newest first, with keyset pagination."""
    q = query(schemas.job_list_query)
    items, next_cursor = jobs.list_jobs(current_tenant(), q, q["limit"], q.get("cursor"))
    return jsonify({"items": items, "next_cursor": next_cursor})


@bp.post("/jobs/<job_id>/cancel")
def cancel(job_id: str):
    """Cancel a job (202); 409 if it already ended."""
    json_body(optional=True)
    return jsonify(jobs.cancel(current_tenant(), job_id)), 202


@bp.post("/jobs/<job_id>/retry")
def retry(job_id: str):
    """Queue a failed or cancelled job again (202)."""
    json_body(optional=True)
    return jsonify(jobs.retry(current_tenant(), job_id)), 202


@bp.get("/jobs/<job_id>/events")
def job_events(job_id: str):
    """A page of the job's events after `since`, in `seq` order (`limit` at most)."""
    q = query(schemas.since_query)
    return jsonify(jobs.job_events(current_tenant(), job_id, q["since"], q["limit"]))


@bp.get("/jobs/<job_id>/result")
def result(job_id: str):
    """The artifact the job's generator wrote, with its content type."""
    content_type, body = jobs.artifact(current_tenant(), job_id)
    return Response(body, content_type=content_type)


@bp.get("/event-types")
def event_types():
    """Every event type with the JSON Schema of its payload."""
    items = [{"event_type": t, "schema": schema} for t, schema in events.EVENT_TYPES.items()]
    return jsonify({"items": items})


@bp.get("/generators")
def generators():
    """Every job kind with the JSON Schema of its params (the console builds its form from it)."""
    items = [
        {"kind": name, "description": _first_line(gen), "params_schema": gen.params_schema}
        for name, gen in sorted(all_generators().items())
    ]
    return jsonify({"items": items})


def _first_line(gen) -> str:
    doc = (type(gen).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""
