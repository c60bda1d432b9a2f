"""The domain's import graph: no circles in `app/`, and nothing of the adapters or frameworks.

Read statically by grimp (every import statement, those inside functions too), so a lazy
import that points back up the tree counts like any other.
"""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]

# What `app/` must never import: the adapters above it and the frameworks they wrap.
ADAPTERS_AND_FRAMEWORKS = ("api", "tasks", "workers", "celery", "kombu", "flask", "flask_socketio")


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("app", include_external_packages=True, cache_dir=None)


def cycles(g: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """One import chain per circle: for each import a -> b inside app, a chain b -> ... -> a."""
    found = set()
    for importer in sorted(m for m in g.modules if m.startswith("app")):
        for imported in sorted(g.find_modules_directly_imported_by(importer)):
            if not imported.startswith("app"):
                continue
            back = g.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                found.add(tuple(sorted({importer, *back})))
    return sorted(found)


def test_no_import_circles_in_app():
    assert cycles(graph()) == []


def test_app_imports_no_adapter_and_no_framework():
    g = graph()
    offenders = {
        (importer, outside)
        for outside in ADAPTERS_AND_FRAMEWORKS
        if outside in g.modules
        for importer in g.find_modules_that_directly_import(outside)
    }
    assert offenders == set()


def test_bootstrapping_registers_what_builds_on_jobs():
    """Every process bootstraps (api, relay, worker, beat, CLI): each then ends an execution
    with its job and sweeps agent commands, whatever modules it imported itself."""
    code = (
        "import app.bootstrap, app.jobs as jobs, app.outbox.send as send;"
        "print(*[f'{h.__module__}.{h.__name__}' for h in jobs.terminal_hooks()]);"
        "print(*[s.name for s in send.registered()])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["app.agents.commands.job_ended", "job command"]
