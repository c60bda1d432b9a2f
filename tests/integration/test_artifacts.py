"""The `image` generator and both artifact stores, served by `GET /api/v1/jobs/{id}/result`."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import make_url, select, text

from app import config, db, jobs, retention, runs
from app.models import Job, JobArtifact
from tests.support.pg_proxy import PgProxy

PARAMS = {
    "width": 320,
    "height": 200,
    "background": "#204060",
    "text": "Orchestra",
    "shapes": [{"type": "ellipse", "xy": [10, 10, 90, 90], "fill": "#ff0000"}],
}


@pytest.fixture(params=["postgres", "filesystem"])
def store(request, domain, tmp_path):
    """Each test once per store; the filesystem store writes under a directory of its own."""
    settings = config.install(
        domain.with_(artifact_store=request.param, artifact_dir=str(tmp_path / "artifacts"))
    )
    yield settings
    config.install(domain)


def run_job(tenant, kind: str, params: dict) -> dict:
    """Submit a job and run its attempt here, as a worker would."""
    job, _ = jobs.submit(tenant[1], {"kind": kind, "params": params})
    with db.transaction() as conn:
        token = conn.execute(select(Job.dispatch_token).where(Job.id == job.id)).scalar_one()
    runs.execute(job.id, str(token), "test-worker")
    return jobs.get(tenant[1], job.id)


def artifact_row(job_id: str):
    with db.transaction() as conn:
        return conn.execute(
            select(JobArtifact.body, JobArtifact.path).where(JobArtifact.job_id == job_id)
        ).first()


def test_image_result_is_a_png_of_the_requested_size(store, tenant, http):
    job = run_job(tenant, "image", PARAMS)
    assert job.status == "completed"
    assert job.result["width"] == 320 and job.result["format"] == "png"
    client, auth = http
    resp = client.get(f"/api/v1/jobs/{job.id}/result", headers=auth)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(resp.data))
    image.verify()  # a whole, valid PNG
    image = Image.open(io.BytesIO(resp.data))
    assert image.format == "PNG" and image.size == (320, 200)
    assert image.getpixel((50, 50)) == (255, 0, 0) and image.getpixel((300, 5)) == (32, 64, 96)
    assert len(resp.data) == job.result["bytes"]
    progress = [e["payload"]["progress"] for e in jobs.job_events(tenant[1], job.id)["items"]
                if e["event_type"] == "job.progress.updated"]
    # Three reports within milliseconds are coalesced: the first is written, the latest
    # (0.8, "text") is recorded with the outcome.
    assert progress == sorted(progress) and progress[0] == 0.1 and progress[-1] == 0.8

    row = artifact_row(job.id)
    if store.artifact_store == "filesystem":
        assert row.body is None and row.path.endswith(".png")
        tmp_dir = Path(store.artifact_dir)
        assert (tmp_dir / row.path).read_bytes() == resp.data
        assert not list(tmp_dir.glob("*.part"))
    else:
        assert row.path is None and bytes(row.body) == resp.data


def test_artifacts_stay_readable_after_the_store_changes(store, domain, tenant, http):
    job = run_job(tenant, "echo", {"a": 1})
    other = "postgres" if store.artifact_store == "filesystem" else "filesystem"
    config.install(store.with_(artifact_store=other))
    client, auth = http
    resp = client.get(f"/api/v1/jobs/{job.id}/result", headers=auth)
    assert resp.status_code == 200 and resp.get_json() == {"a": 1}
    assert resp.headers["Content-Type"] == "application/json"


def test_no_artifact_is_a_404_envelope(store, tenant, http):
    job = run_job(tenant, "sleep", {"seconds": 0})
    client, auth = http
    resp = client.get(f"/api/v1/jobs/{job.id}/result", headers=auth)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "NOT_FOUND"
    resp = client.get(f"/api/v1/jobs/{uuid.uuid4()}/result", headers=auth)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "NOT_FOUND"


def test_a_missing_file_is_a_404_not_a_500(domain, tenant, http, tmp_path):
    config.install(domain.with_(artifact_store="filesystem", artifact_dir=str(tmp_path)))
    try:
        job = run_job(tenant, "image", {"width": 8, "height": 8})
        (tmp_path / artifact_row(job.id).path).unlink()
        client, auth = http
        resp = client.get(f"/api/v1/jobs/{job.id}/result", headers=auth)
    finally:
        config.install(domain)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "NOT_FOUND"


def test_a_store_that_cannot_write_ends_the_attempt_as_transient(domain, tenant, tmp_path):
    blocked = tmp_path / "a-file-not-a-directory"
    blocked.write_text("")
    config.install(domain.with_(artifact_store="filesystem", artifact_dir=str(blocked)))
    try:
        job = run_job(tenant, "image", {"width": 8, "height": 8})
    finally:
        config.install(domain)
    # Not left `processing` for the orphan sweep: retried, with our error named.
    assert job.status == "retrying"
    assert job.error["code"] == "ARTIFACT_STORE_ERROR"
    assert artifact_row(job.id) is None


def test_retention_removes_the_artifact_files(domain, tenant, tmp_path):
    settings = config.install(
        domain.with_(artifact_store="filesystem", artifact_dir=str(tmp_path), retention_s=3600)
    )
    try:
        old, recent = (run_job(tenant, "image", {"width": 16, "height": 16}) for _ in range(2))
        old_file, recent_file = (tmp_path / artifact_row(j.id).path for j in (old, recent))
        with db.transaction() as conn:
            conn.execute(text("UPDATE jobs SET finished_at = now() - interval '2 hours' "
                              "WHERE id = :id"), {"id": old.id})
        while retention.purge_expired(batch=1):
            pass
    finally:
        config.install(domain)
    assert settings.retention_s == 3600
    assert not old_file.exists() and artifact_row(old.id) is None
    assert recent_file.exists() and artifact_row(recent.id) is not None


@pytest.mark.parametrize(
    "params,field",
    [({"width": 4096, "height": 10}, "params.width"),
     ({"width": 10}, "params"),
     ({"width": 10, "height": 10, "background": "red"}, "params.background"),
     ({"width": 10, "height": 10, "shapes": [{"type": "star", "xy": [0, 0, 1, 1]}]},
      "params.shapes.0.type")],
)
def test_bad_image_params_are_refused_field_by_field(http, params, field):
    client, auth = http
    resp = client.post("/api/v1/jobs", json={"kind": "image", "params": params}, headers=auth)
    assert resp.status_code in (400, 422)
    body = resp.get_json()["error"]
    assert body["code"] == "VALIDATION_ERROR" and field in body["details"], body


@pytest.fixture
def proxied(domain):
    """This process's database connections through a proxy that can lose a COMMIT."""
    url = make_url(domain.database_url)
    proxy = PgProxy((url.host or "127.0.0.1", url.port or 5432))
    db.init(proxy.url(url.database))
    yield proxy
    db.init(domain.database_url)
    proxy.close()


@pytest.mark.parametrize("fault", ["lose_answer", "lose_commit"])
def test_a_file_stays_whenever_an_ambiguous_commit_left_its_row(
    domain, tenant, tmp_path, proxied, fault
):
    """The connection drops during the outcome's COMMIT, after the server committed
    (`lose_answer`) or before it saw the COMMIT (`lose_commit`): the run cannot tell which,
    retries, and must not remove a file that a committed row names."""
    config.install(domain.with_(artifact_store="filesystem", artifact_dir=str(tmp_path)))
    try:
        job, _ = jobs.submit(tenant[1], {"kind": "echo", "params": {"kept": fault}})
        with db.transaction() as conn:
            token = conn.execute(
                select(Job.dispatch_token).where(Job.id == job.id)
            ).scalar_one()
        proxied.arm(fault, after=b"INSERT INTO job_artifacts")
        runs.execute(job.id, str(token), "test-worker")
        assert proxied.dropped.is_set(), "the COMMIT was not interrupted"
        done = jobs.get(tenant[1], job.id)
        row = artifact_row(job.id)
    finally:
        config.install(domain)
    assert done.status == "completed" and done.result == {"kept": fault}
    assert row is not None and row.path  # committed: by the first try, or by the retry
    assert (tmp_path / row.path).read_bytes() == b'{"kept": "%s"}' % fault.encode()
    completions = [e for e in jobs.job_events(tenant[1], job.id)["items"]
                   if e["payload"].get("status") == "completed"]
    assert len(completions) == 1
