"""The browser console: its page at `/`, its files under `/console/`, and where the relay is.

The files are built from `console/` (`make console`: npm ci, then a copy into
`api/static/console/`); this blueprint only serves them. The page is static, so the relay's
address comes from a small JSON document rather than from a template.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, jsonify, request, send_from_directory

BUILD_DIR = Path(__file__).resolve().parent / "static" / "console"

bp = Blueprint("console", __name__, static_folder=BUILD_DIR, static_url_path="/console")


def relay_url() -> str:
    """The relay the page should connect to: `CONSOLE_RELAY_URL`, else this host on RELAY_PORT."""
    settings = current_app.extensions["orchestra.settings"]
    if settings.console_relay_url:
        return settings.console_relay_url.rstrip("/")
    host = urlsplit(request.host_url).hostname or "127.0.0.1"
    if ":" in host:  # an IPv6 literal goes back in brackets
        host = f"[{host}]"
    return f"{request.scheme}://{host}:{settings.relay_port}"


def _policy(relay: str) -> str:
    """A strict Content-Security-Policy: our own scripts only, the relay the one other peer.

    Job params and results are anyone's JSON; the page writes them with textContent, and this
    policy is the second fence should a `innerHTML` ever slip in.
    """
    parts = urlsplit(relay)
    connect = "'self'"
    if parts.netloc:  # a relay elsewhere: its HTTP (polling) and WebSocket origins
        ws = "wss" if parts.scheme == "https" else "ws"
        connect += f" {parts.scheme}://{parts.netloc} {ws}://{parts.netloc}"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' blob:",
            f"connect-src {connect}",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


@bp.get("/")
def index():
    """The console's single page (503 with a hint when the front end was not built)."""
    if not (BUILD_DIR / "index.html").is_file():
        return Response(
            "The console is not built: run `make console` (npm ci + copy).\n",
            status=503,
            content_type="text/plain",
        )
    resp = send_from_directory(BUILD_DIR, "index.html", max_age=0)
    resp.headers["Content-Security-Policy"] = _policy(relay_url())
    return resp


@bp.get("/console/config.json")
def config():
    """Where the page finds the relay (public: it holds no tenant data)."""
    return jsonify({"relay_url": relay_url()})
