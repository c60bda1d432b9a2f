"""The process harness of the end-to-end tests lives in `scripts/stack.py` (bench uses it too)."""

from scripts.stack import VENV_BIN, Stack, stack_env, wait_until

__all__ = ["VENV_BIN", "Stack", "stack_env", "wait_until"]
