"""A test that needs what this machine may lack: skipped here, failed in CI.

A skip on a developer's machine without `redis-server` or root is fair; the same skip in CI
(`CI=true`, as CI services set it) would let the test silently never run, so there it fails
and names what is missing.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    """Whether this is a CI run (`CI` set to true, as GitHub Actions, GitLab and others do)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require(available: bool, what: str) -> None:
    """Go on if `available`; else skip the test, or fail it in CI."""
    if available:
        return
    if in_ci():
        pytest.fail(f"CI must provide {what} for this test (it would be skipped silently)",
                    pytrace=False)
    pytest.skip(f"needs {what}")
