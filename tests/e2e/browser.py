"""Headless Chromium for the console's tests: Debian's binary, driven by Playwright.

Playwright's own browser download cannot run here, so it launches /usr/bin/chromium
(`make browser` installs it) with the flags that keep Chromium off the closed network.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def launch(playwright):
    """Chromium, headless, from Debian's package."""
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: run `make browser` (as root)"
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def local_only(context) -> list[str]:
    """Refuse every request that leaves 127.0.0.1 and return the list they are written to.

    The console must need no CDN: a test asserts that list stays empty.
    """
    foreign: list[str] = []

    def route(r):
        host = urlsplit(r.request.url).hostname
        if r.request.url.startswith(("blob:", "data:")) or host in ("127.0.0.1", "localhost"):
            r.continue_()
        else:
            foreign.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    return foreign


def screenshot(page, name: str) -> Path:
    """Save a full-page PNG under tests/artifacts/, print where, and check it is one."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5000, f"{path} is not a real PNG"
    return path


def sign_in(page, base_url: str, secret: str) -> None:
    """Open the console and sign in with `secret`; wait until the relay connection is live."""
    page.goto(base_url + "/")
    page.fill("#key", secret)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#nav", state="visible")
    page.wait_for_selector('#conn[data-state="live"]', timeout=30_000)
