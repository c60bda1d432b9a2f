"""The built-in generators: `echo`, `sleep`, `fail`, `http`, `chat` and `image`."""

from __future__ import annotations

import json

from app.generators.base import Context, Output, PermanentError, TransientError, register, wait
from app.generators.chat import Chat
from app.generators.http import Http
from app.generators.image import ImageGenerator


class Echo:
    """Completes with `result` equal to `params`, and writes them as a JSON artifact."""

    name = "echo"
    params_schema = {"type": "object"}
    instant = True

    def run(self, params: dict, ctx: Context) -> Output:
        body = json.dumps(params).encode()
        return Output(result=params, artifact=("application/json", body))


class Sleep:
    """Sleeps `seconds`, reporting progress `steps` times; honours cancel between slices.

    Bounded so one request cannot ask for much: an hour holds a worker slot long enough for
    a demo, and each step is a transaction and an event, so at most `MAX_STEPS` of them.
    """

    name = "sleep"
    MAX_SECONDS = 3600
    MAX_STEPS = 100
    params_schema = {
        "type": "object",
        "properties": {
            "seconds": {"type": "number", "minimum": 0, "maximum": MAX_SECONDS},
            "steps": {"type": "integer", "minimum": 1, "maximum": MAX_STEPS},
        },
        "required": ["seconds"],
        "additionalProperties": False,
    }

    def run(self, params: dict, ctx: Context) -> Output:
        seconds = float(params["seconds"])
        steps = int(params.get("steps") or max(1, min(100, round(seconds))))
        for step in range(1, steps + 1):
            wait(seconds / steps, ctx)
            ctx.progress(step / steps, f"step {step}/{steps}")
        return Output(result={"slept": params["seconds"]})


class Fail:
    """Raises `message`; when `transient`, only the first `times` attempts fail."""

    name = "fail"
    params_schema = {
        "type": "object",
        "properties": {
            "message": {"type": "string", "minLength": 1, "maxLength": 2000},
            "transient": {"type": "boolean"},
            "times": {"type": "integer", "minimum": 0, "maximum": 1000},
        },
        "required": ["message"],
        "additionalProperties": False,
    }

    def run(self, params: dict, ctx: Context) -> Output:
        if not params.get("transient"):
            raise PermanentError(params["message"])
        times = params.get("times")
        if times is None or ctx.attempt <= times:
            raise TransientError(params["message"])
        return Output(result={"attempts": ctx.attempt})


for _gen in (Echo(), Sleep(), Fail(), Http(), Chat(), ImageGenerator()):
    register(_gen)
