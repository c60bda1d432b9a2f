"""What the two plugin registries (generators, agent types) share: entry points and schemas."""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

log = logging.getLogger(__name__)


def load_entry_points(group: str, register: Callable[[Any], Any]) -> None:
    """Register every plugin of an entry point group (a class is instantiated first).

    A plugin that fails to load is logged and skipped: it must not take the service down.
    """
    for ep in entry_points(group=group):
        try:
            plugin = ep.load()
            register(plugin() if isinstance(plugin, type) else plugin)
        except Exception:  # noqa: BLE001 - see the docstring
            log.exception("plugin %s of %s failed to load", ep.name, group)


def schema_errors(validator: Draft202012Validator, value: Any, prefix: str) -> dict[str, list[str]]:
    """What `value` breaks of a JSON Schema, field by field: `{"<prefix>.<path>": [why]}`."""
    details: dict[str, list[str]] = {}
    for err in sorted(validator.iter_errors(value), key=lambda e: list(e.path)):
        key = ".".join([prefix, *(str(p) for p in err.path)])
        details.setdefault(key, []).append(_message(err))
    return details


def _message(err: ValidationError) -> str:
    """The error's words. jsonschema's own for a `oneOf` repeat the whole value (a chat job's
    messages, say); when every choice has a `title`, the choices are named instead."""
    titles = [s.get("title") for s in err.validator_value] if err.validator == "oneOf" else []
    if not titles or None in titles:
        return err.message
    # `context` holds each choice's failures: empty when more than one choice matched.
    choices = ", ".join(titles)
    return f"one of {choices} is required" if err.context else f"only one of {choices} may be given"
