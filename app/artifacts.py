"""Artifact stores: where the bytes a generator produced are kept, and read back.

`ARTIFACT_STORE=postgres` keeps them in the `job_artifacts` row; `filesystem` writes a file
under `ARTIFACT_DIR` (a directory the api and every worker share) and the row names it. Either
way the row says an artifact exists and carries its content type, and reading follows the row,
so artifacts written before a change of store stay readable.

The run's state change and its event commit in one transaction, and the artifact's row with
them. A file is therefore written *before* that transaction, under a name of its own, and made
visible by the commit of the row that points at it: a crash (or a run that lost its job) in
between leaves at most an orphan file in `ARTIFACT_DIR`, never a row without its file. A run
removes a file it staged only once it read that no row names it (a COMMIT that lost its answer
may have succeeded). Files are removed only after the transaction that deleted their rows
committed.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert

from app import config, db
from app.errors import NotFound, Unavailable
from app.models import JobArtifact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Staged:
    """An artifact ready to be attached to its job: bytes for the row, or a written file."""

    content_type: str
    body: bytes | None = None
    path: str | None = None  # relative to ARTIFACT_DIR


def _dir() -> Path:
    return Path(config.current().artifact_dir)


class StoreError(Exception):
    """The store could not keep an artifact (a full disk, an unwritable ARTIFACT_DIR)."""


def stage(job_id: str, artifact: tuple[str, bytes] | None) -> Staged | None:
    """Ready an artifact before the transaction; the filesystem store writes its file now
    (`StoreError` if it cannot)."""
    if artifact is None:
        return None
    content_type, body = artifact
    store = config.current().artifact_store
    if store == "postgres":
        return Staged(content_type, body=body)
    if store != "filesystem":
        stores = config.ARTIFACT_STORES
        raise ValueError(f"ARTIFACT_STORE must be one of {stores}, not {store!r}")
    ext = mimetypes.guess_extension(content_type.split(";")[0].strip()) or ".bin"
    name = f"{job_id}-{uuid.uuid4().hex}{ext}"
    try:
        _write(_dir() / name, body)
    except OSError as exc:
        raise StoreError(f"could not write {name} under ARTIFACT_DIR: {exc}") from exc
    return Staged(content_type, path=name)


def _write(path: Path, body: bytes) -> None:
    # Written aside and renamed: a reader never sees half a file, whatever crashes.
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with part.open("wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)


def discard(job_id, staged: Staged | None) -> None:
    """Remove a staged file the run will not attach, unless a committed row names it.

    The run's outcome may have been retried after its COMMIT lost its answer (the connection
    dropped): that COMMIT may have succeeded, and its row points at this file. So the row is
    read first; the file goes only when no row names it, and stays when that cannot be known
    (an orphan file is the safe side, a row without its file is not).
    """
    if staged is None or not staged.path:
        return
    try:
        with db.transaction() as conn:
            attached = conn.execute(
                select(JobArtifact.job_id).where(
                    JobArtifact.job_id == job_id, JobArtifact.path == staged.path
                )
            ).first()
    except Unavailable:
        log.warning("artifact file %s kept: the database cannot say if a row names it", staged.path)
        return
    if attached is not None:
        log.info("artifact file %s kept: a commit whose answer was lost attached it", staged.path)
        return
    remove([staged.path])


# One statement, built once: a run that completes a job again (a duplicate message that
# won the claim after a reap) replaces the artifact. Job completion is the hot path.
def _replacing(given):
    """The insert `given`, replacing the artifact a job already has."""
    return given.on_conflict_do_update(
        index_elements=[JobArtifact.job_id],
        set_={c: given.excluded[c] for c in ("content_type", "body", "path")},
    )


_UPSERT = _replacing(insert(JobArtifact.__table__))


def attach(conn: Connection, job_id, staged: Staged | None) -> None:
    """Point the job at its artifact, in the caller's transaction."""
    attach_many(conn, [(job_id, staged)])


def attach_many(conn: Connection, staged: list[tuple[object, Staged | None]]) -> None:
    """Point each job at its artifact, `(job_id, staged)`, in one statement."""
    rows = [
        {"job_id": job_id, "content_type": s.content_type, "body": s.body, "path": s.path}
        for job_id, s in staged
        if s is not None
    ]
    if len(rows) == 1:
        conn.execute(_UPSERT, rows[0])
    elif rows:
        conn.execute(_replacing(db.insert_rows(JobArtifact.__table__, rows)))


def find(conn: Connection, job_id) -> Staged | None:
    """The job's artifact row (bytes or file name), or None."""
    row = conn.execute(
        select(JobArtifact.content_type, JobArtifact.body, JobArtifact.path).where(
            JobArtifact.job_id == job_id
        )
    ).first()
    if row is None:
        return None
    body = bytes(row.body) if row.body is not None else None
    return Staged(row.content_type, body=body, path=row.path)


def read(found: Staged) -> tuple[str, bytes]:
    """`(content_type, body)` of an artifact `find()` returned, from whichever store holds it."""
    if found.path is None:
        return found.content_type, found.body or b""
    try:
        return found.content_type, (_dir() / found.path).read_bytes()
    except FileNotFoundError:
        log.error("artifact file %s is missing from %s", found.path, _dir())
        raise NotFound("this job's result artifact is no longer available") from None


def files_of(conn: Connection, job_ids: list) -> list[str]:
    """The artifact files of these jobs (to remove once their rows are deleted)."""
    if not job_ids:
        return []
    return list(
        conn.execute(
            select(JobArtifact.path).where(
                JobArtifact.job_id.in_(job_ids), JobArtifact.path.is_not(None)
            )
        ).scalars()
    )


def remove(paths: list[str]) -> None:
    """Delete artifact files; one already gone is fine (a second sweep, a manual cleanup)."""
    for name in paths:
        try:
            (_dir() / name).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove artifact file %s: %s", name, exc)
