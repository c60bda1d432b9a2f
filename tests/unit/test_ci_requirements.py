"""A test whose tool is missing is skipped on a developer's machine and fails in CI."""

from __future__ import annotations

import pytest

from tests.support.ci import require


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_a_missing_tool_fails_the_test_in_ci(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="CI must provide redis-server"):
        require(False, "redis-server")


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_a_missing_tool_skips_the_test_elsewhere(monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="needs redis-server"):
        require(False, "redis-server")


def test_a_present_tool_runs_the_test_in_ci_and_elsewhere(monkeypatch):
    for ci in ("true", ""):
        monkeypatch.setenv("CI", ci)
        assert require(True, "redis-server") is None


def test_the_resilience_tests_ask_rather_than_skip():
    """No `skipif` on the tests that need redis-server or root: they call `require`."""
    from pathlib import Path

    source = (Path(__file__).parents[1] / "e2e" / "test_resilience.py").read_text()
    assert "skipif" not in source
    assert source.count('require(shutil.which("redis-server") is not None') == 2
    assert source.count("require(private_pg.available()") == 1
