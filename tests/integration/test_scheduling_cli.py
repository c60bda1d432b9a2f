"""The operator's scheduling commands, run through Flask's CLI runner against the real database."""

from __future__ import annotations

import uuid

from app import tenants
from app.scheduling import limits, pauses


def test_the_operator_sets_a_tenants_limits_and_pauses_a_kind(flask_app):
    runner = flask_app.test_cli_runner()
    name = f"o-{uuid.uuid4().hex[:8]}"
    tenant = tenants.authenticate(tenants.create_key(name))
    out = runner.invoke(args=["scheduling", "limits", name, "--weight", "2", "--max-running", "7"])
    assert out.exit_code == 0, out.output
    assert "weight: 2.0" in out.output and "max_running: 7" in out.output
    assert limits.tenant_limits(name).own == {"weight", "max_running"}
    bad = runner.invoke(args=["scheduling", "limits", name, "--weight", "0"])
    assert bad.exit_code != 0 and "weight" in bad.output
    out = runner.invoke(args=["scheduling", "pause", "--tenant", name, "--kind", "sleep"])
    assert out.output.strip() == "paused"
    assert [p["kind"] for p in pauses.paused(tenant.id) if p["tenant"] == name] == ["sleep"]
    assert runner.invoke(args=["scheduling", "pause"]).exit_code != 0
    listed = runner.invoke(args=["scheduling", "pauses"]).output
    assert f"{name}  sleep" in listed
    assert runner.invoke(args=["scheduling", "resume", "--tenant", name, "--kind", "sleep"]
                         ).output.strip() == "resumed"
    assert pauses.paused(tenant.id) == [] or all(p["tenant"] != name
                                                 for p in pauses.paused(tenant.id))
