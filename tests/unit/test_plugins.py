"""A third-party generator registers through the `orchestra.generators` entry point group."""

from __future__ import annotations

import sys
import textwrap

import pytest

from app import generators
from app.generators import Output, base


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A package with an entry point, installed the way pip would leave it (a dist-info)."""
    (tmp_path / "orchestra_upper.py").write_text(textwrap.dedent('''
        from app.generators import Output

        class Upper:
            name = "upper"
            params_schema = {"type": "object", "properties": {"text": {"type": "string"}},
                             "required": ["text"]}

            def run(self, params, ctx):
                return Output(result={"text": params["text"].upper()})
    '''))
    dist = tmp_path / "orchestra_upper-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: orchestra-upper\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[orchestra.generators]\nupper = orchestra_upper:Upper\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(base, "_loaded_entry_points", False)
    yield
    base._registry.pop("upper", None)
    base._validators.pop("upper", None)
    sys.modules.pop("orchestra_upper", None)


def test_entry_point_generator_is_registered_and_validated(installed_plugin):
    gen = generators.get("upper")
    generators.validate_params("upper", {"text": "hi"})
    with pytest.raises(generators.ValidationFailed) as exc:
        generators.validate_params("upper", {})
    assert "params" in exc.value.details
    out = gen.run({"text": "hi"}, ctx=None)
    assert isinstance(out, Output) and out.result == {"text": "HI"}
    assert {"echo", "sleep", "fail", "upper"} <= set(generators.all_generators())
