"""A third-party agent type registers through the `orchestra.agent_types` entry point group."""

from __future__ import annotations

import sys
import textwrap
import uuid

import pytest

from app.agents import core, types
from app.agents.types import AgentContext
from app.errors import ValidationFailed


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A package with an entry point, installed the way pip would leave it (a dist-info)."""
    (tmp_path / "orchestra_counter.py").write_text(
        textwrap.dedent("""
        from app.agents.types import Capability

        class Counter:
            name = "counter"
            description = "counts words"
            config_schema = {"type": "object", "properties": {"max": {"type": "integer"}},
                             "additionalProperties": False}

            def __init__(self):
                self.capabilities = {"count": Capability(
                    "count",
                    {"type": "object", "properties": {"text": {"type": "string"}},
                     "required": ["text"]},
                    lambda ctx, data: {"words": len(data["text"].split())},
                )}

            def start(self, ctx):
                ctx.log("counting")

            def stop(self, ctx):
                pass

            def health(self, ctx):
                return {"healthy": True}
    """)
    )
    dist = tmp_path / "orchestra_counter-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: orchestra-counter\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[orchestra.agent_types]\ncounter = orchestra_counter:Counter\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(types, "_loaded_entry_points", False)
    yield
    types._registry.pop("counter", None)
    for key in [k for k in types._validators if k[0] == "counter"]:
        types._validators.pop(key)
    sys.modules.pop("orchestra_counter", None)


def test_entry_point_agent_type_is_registered_with_its_schemas(installed_plugin):
    counter = types.get("counter")
    assert {"echo", "generator", "counter"} <= set(types.all_types())
    types.validate_config("counter", {"max": 3})
    with pytest.raises(ValidationFailed) as exc:
        types.validate_config("counter", {"max": "three"})
    assert exc.value.details == {"config.max": ["'three' is not of type 'integer'"]}
    cap = types.capability("counter", "count")
    types.validate_input("counter", cap, {"text": "a b c"}, {})
    with pytest.raises(ValidationFailed) as exc:
        types.validate_input("counter", cap, {}, {})
    assert "params.input" in exc.value.details
    ctx = AgentContext(uuid.uuid4(), "c", "counter", {}, "acme")
    counter.start(ctx)
    assert cap.run(ctx, {"text": "a b c"}) == {"words": 3}
    assert ctx.lines == [("info", "counting")]
    assert core.describe(counter)["capabilities"][0]["name"] == "count"


def test_unknown_types_and_capabilities_name_the_known_ones():
    with pytest.raises(ValidationFailed) as exc:
        types.get("nope")
    assert "echo" in exc.value.details["type"][0]
    with pytest.raises(ValidationFailed) as exc:
        types.capability("echo", "shout")
    assert exc.value.details == {"params.capability": ["unknown capability; known: say"]}


def test_a_broken_plugin_is_logged_not_fatal(tmp_path, monkeypatch, caplog):
    dist = tmp_path / "orchestra_broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: orchestra-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[orchestra.agent_types]\nbroken = no_such_module:X\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(types, "_loaded_entry_points", False)
    assert "echo" in types.all_types()
    assert "plugin broken of orchestra.agent_types failed to load" in caplog.text
