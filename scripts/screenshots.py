"""`python -m scripts.screenshots`: docs/console.png and docs/flower.png (docs/operations.md).

Starts a private stack (its own database, Redis db and ports, removed after), runs a few
jobs of every outcome, and photographs the console's jobs table and Flower's tasks page in
headless Chromium, so the pictures show the real thing and can be made again after a change.
"""

from __future__ import annotations

import time

import requests
from playwright.sync_api import sync_playwright

from app import bootstrap, tenants
from bench.sandbox import ROOT, sandbox
from scripts.stack import Stack, stack_env, wait_until
from tests.e2e.browser import launch, sign_in
from tests.e2e.conftest import Client, _ping_workers

DOCS = ROOT / "docs"
FLOWER_AUTH = ("ops", "screenshots")


def run_jobs(client: Client) -> str:
    """A few jobs: finished ones of each outcome and one still running; the running one's id."""
    done = [
        client.submit("echo", {"prompt": "a lighthouse at dusk"}, card_id="card-7"),
        client.submit("sleep", {"seconds": 1, "steps": 4}),
        client.submit("fail", {"message": "model refused the prompt"}, max_retries=0),
        client.submit("fail", {"message": "upstream 503", "transient": True, "times": 1}),
    ]
    cancelled = client.submit("sleep", {"seconds": 30, "steps": 30})
    client.wait_status(cancelled["id"], "processing")
    client.post(f"/api/v1/jobs/{cancelled['id']}/cancel")
    for job in done + [cancelled]:
        client.wait_status(job["id"], ("completed", "failed", "cancelled"), timeout=60)
    running = client.submit("sleep", {"seconds": 20, "steps": 40}, card_id="card-7")
    client.wait_status(running["id"], "processing")
    return running["id"]


def shoot(stack: Stack, client: Client, running_id: str) -> None:
    """Photograph the console (jobs table, live) and Flower (tasks)."""
    api, flower = stack.procs_named("api")[0], stack.procs_named("flower")[0]
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 640})
        sign_in(page, stack.url(api), client.secret)
        page.wait_for_selector(f'#jobs tr[data-id="{running_id}"] .status-processing')
        time.sleep(3)  # let the running job's bar move a little
        page.screenshot(path=str(DOCS / "console.png"))
        page = browser.new_page(
            viewport={"width": 1440, "height": 720},
            http_credentials={"username": FLOWER_AUTH[0], "password": FLOWER_AUTH[1]},
        )
        page.goto(stack.url(flower) + "/tasks")
        page.wait_for_selector("text=orchestra.jobs.run")
        # The beat's sweep runs every second and would fill the page: show the job runs.
        page.fill("input[placeholder*='state:']", "orchestra.jobs.run")
        page.keyboard.press("Enter")
        time.sleep(1.5)
        page.screenshot(path=str(DOCS / "flower.png"))
        browser.close()


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    with sandbox() as settings:
        bootstrap.init(settings)
        stack = Stack(stack_env(settings))
        try:
            api = stack.start("api", CONSOLE_RELAY_URL=f"http://127.0.0.1:{settings.relay_port}")
            stack.start("relay", port=settings.relay_port)
            stack.start("worker")
            stack.start("system")
            stack.start("beat")
            flower = stack.start("flower", FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH))
            stack.wait_http(api)
            stack.wait_http(flower, "/healthcheck")
            wait_until(lambda: _ping_workers(settings, 2), 60, 0.5, "a worker")
            # Flower names only the tasks whose events it heard: wait until it sees the worker.
            workers = stack.url(flower) + "/api/workers?refresh=1"
            wait_until(lambda: requests.get(workers, auth=FLOWER_AUTH, timeout=10).json(), 60, 1)
            client = Client(stack.url(api), tenants.create_key("demo"))
            running = run_jobs(client)
            shoot(stack, client, running)
            client.post(f"/api/v1/jobs/{running}/cancel")  # so the worker stops at once
            client.wait_status(running, "cancelled")
        except BaseException:
            print(stack.logs())
            raise
        finally:
            stack.stop()
    print(f"wrote {DOCS / 'console.png'} and {DOCS / 'flower.png'}")


if __name__ == "__main__":
    main()
