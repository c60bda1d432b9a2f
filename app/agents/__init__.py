"""Agents: versioned agent definitions, their types (plugins), commands and heartbeats.

`types` holds the plugin interface and registry, `builtin` the `echo` and `generator`
types, `core` the agent row and its status changes, `definitions` create/patch/revert/delete,
`commands` the per-agent mailbox of lifecycle and execute commands, `heartbeats` the
health passes, `queries` its status, events, logs and metrics, `scopes` what a key may do
and see through an agent.
"""

from app.agents import builtin  # noqa: F401 - registers the built-in types (`types.all_types()`)
