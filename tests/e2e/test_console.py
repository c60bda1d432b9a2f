"""The browser console, driven in headless Chromium against real api, relay, worker and beat.

The stack here is the console's own: the relay listens on a port chosen in advance and accepts
only the console's origin, so the page's cross-origin Socket.IO connection is tested as it is
deployed, and the relay can be killed and started again where the page expects it.
"""

from __future__ import annotations

import re
import time

import pytest
import requests

from scripts.sandbox import free_port
from tests.e2e.browser import launch, local_only, screenshot, sign_in
from tests.e2e.conftest import Client, _ping_workers
from tests.support.stack import Stack, stack_env, wait_until

pytestmark = pytest.mark.e2e

LIVE_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def console_stack(domain):
    """api, relay (known port, CORS = the api's origin), one worker and beat."""
    api_port, relay_port = free_port(), free_port()
    origin, relay_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{relay_port}"
    stack = Stack(stack_env(domain, RELAY_CORS_ORIGINS=origin, CONSOLE_RELAY_URL=relay_url))
    try:
        api = stack.start("api", port=api_port, API_WORKERS=2)
        relay = stack.start("relay", port=relay_port)
        stack.start("worker")
        stack.start("system")
        stack.start("beat")
        stack.wait_http(api)
        stack.wait_http(relay)
        wait_until(lambda: _ping_workers(domain, 2), 60, 0.5, "a worker")
    except BaseException:
        print(stack.logs())
        stack.stop()
        raise
    stack.origin, stack.relay_url = origin, relay_url
    yield stack
    print(stack.logs())
    stack.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch(pw)
        yield chromium
        chromium.close()


@pytest.fixture
def console(browser, console_stack, tenant):
    """A fresh browser context signed in to the console as a fresh tenant: (page, client)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    foreign = local_only(context)
    page = context.new_page()
    page.set_default_timeout(LIVE_TIMEOUT_MS)
    sign_in(page, console_stack.origin, tenant[0])
    yield page, Client(console_stack.origin, tenant[0])
    context.close()
    assert foreign == [], f"the console fetched from outside: {foreign}"


def mark_no_reload(page) -> None:
    """A flag a page reload would wipe: asserting it later proves the updates came live."""
    page.evaluate("window.__noReload = true")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("window.__noReload === true"), "the page was reloaded"


def row(job_id: str) -> str:
    return f'#jobs tr[data-id="{job_id}"]'


def test_relay_accepts_the_console_origin_and_refuses_others(console_stack):
    """The relay's CORS allows the page's origin (the api's) and no other."""
    handshake = console_stack.relay_url + "/socket.io/?EIO=4&transport=polling"
    ok = requests.get(handshake, headers={"Origin": console_stack.origin}, timeout=10)
    assert ok.status_code == 200
    assert ok.headers.get("Access-Control-Allow-Origin") == console_stack.origin
    refused = requests.get(handshake, headers={"Origin": "http://evil.example"}, timeout=10)
    assert refused.status_code == 400


def test_the_page_is_served_with_its_config_and_a_strict_policy(console_stack):
    """`/` is the console (with a CSP naming the relay); its config names the relay."""
    page = requests.get(console_stack.origin + "/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and console_stack.relay_url in policy
    config = requests.get(console_stack.origin + "/console/config.json", timeout=10).json()
    assert config == {"relay_url": console_stack.relay_url}
    vendored = requests.get(console_stack.origin + "/console/vendor/socket.io.esm.min.js")
    assert vendored.status_code == 200 and "javascript" in vendored.headers["Content-Type"]


def test_a_wrong_key_is_refused_at_sign_in(browser, console_stack):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(console_stack.origin + "/")
        page.fill("#key", "not-a-key")
        page.click("#signin button[type=submit]")
        page.wait_for_selector("#flash .error")
        assert "UNAUTHORIZED" in page.inner_text("#flash")
        assert page.is_hidden("#nav")
    finally:
        context.close()


def test_submit_a_sleep_job_and_watch_it_complete_live(console):
    """Sign in, submit `sleep` from the form, see the bar move and the status reach completed."""
    page, _ = console
    page.click('#nav a[href="#/submit"]')
    page.wait_for_selector("#param-seconds")
    page.select_option("#kind", "sleep")
    page.fill("#param-seconds", "3")
    page.fill("#param-steps", "6")
    page.click("#submit")
    page.wait_for_selector("#flash p:has-text('submitted')")
    job_id = re.search(r"Job ([0-9a-f-]{36}) submitted", page.inner_text("#flash")).group(1)
    mark_no_reload(page)
    page.wait_for_selector(row(job_id))

    seen: list[float] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # Both in one evaluation: read apart, the row could change in between (seen under
        # load: the bar read at 0.83, then the status read `completed`, and the loop ended).
        value, status = page.eval_on_selector(
            row(job_id),
            "r => [r.querySelector('progress').value,"
            " r.querySelector('.status-cell').innerText.trim()]",
        )
        if not seen or value != seen[-1]:
            seen.append(value)
        if status == "completed":
            break
        time.sleep(0.1)
    assert status == "completed", f"status stuck at {status}"
    assert any(0 < v < 1 for v in seen), f"no intermediate progress seen: {seen}"
    assert any(b > a for a, b in zip(seen, seen[1:], strict=False)), f"the bar never moved: {seen}"
    assert seen[-1] == 1
    assert page.inner_text(f"{row(job_id)} .attempts") == "1"
    assert re.fullmatch(r"\d+\.\d s", page.inner_text(f"{row(job_id)} .duration"))
    assert_not_reloaded(page)
    screenshot(page, "console-jobs")


def test_the_form_shows_the_apis_refusal_field_by_field(console):
    """What the browser's own checks would stop is sent anyway: the API's 422 is shown per field."""
    page, client = console
    page.goto(page.url.split("#")[0] + "#/submit")
    page.wait_for_selector("#param-seconds")
    page.select_option("#kind", "sleep")
    page.evaluate("document.getElementById('submit-form').noValidate = true")
    page.fill("#param-seconds", "-1")
    page.click("#submit")
    page.wait_for_selector("#form-errors li[data-field]")
    fields = page.eval_on_selector_all(
        "#form-errors li[data-field]", "items => items.map(i => i.textContent)"
    )
    assert any("seconds" in f for f in fields), fields
    assert page.url.endswith("#/submit")  # nothing was submitted
    assert client.get("/api/v1/jobs").json()["items"] == []


def test_cancel_a_running_job_from_the_table(console):
    page, client = console
    job = client.submit("sleep", {"seconds": 30, "steps": 30})
    page.goto(page.url.split("#")[0] + "#/jobs")
    mark_no_reload(page)
    page.wait_for_selector(f"{row(job['id'])} .status-processing")
    page.click(f"{row(job['id'])} button.cancel")
    page.wait_for_selector(f"{row(job['id'])} .status-cancelled")
    assert client.job(job["id"])["status"] == "cancelled"
    assert page.is_hidden(f"{row(job['id'])} button.cancel")  # nothing left to cancel
    assert_not_reloaded(page)


def test_filters_narrow_the_table(console):
    page, client = console
    echo = client.submit("echo", {"n": 1})
    client.wait_status(echo["id"], "completed")
    failed = client.submit("fail", {"message": "no"}, max_retries=0)
    client.wait_status(failed["id"], "failed")
    page.goto(page.url.split("#")[0] + "#/jobs")
    page.wait_for_selector(row(failed["id"]))
    page.wait_for_selector(row(echo["id"]))
    page.select_option("#filters select[name=status]", "failed")
    page.wait_for_selector(row(echo["id"]), state="detached")
    assert page.is_visible(row(failed["id"]))


def test_retry_a_failed_job_from_its_page(console):
    """A failed job's Retry button queues it again; the page follows it to completed, live."""
    page, client = console
    job = client.submit("fail", {"message": "flaky", "transient": True, "times": 1}, max_retries=0)
    client.wait_status(job["id"], "failed")
    page.goto(page.url.split("#")[0] + f"#/jobs/{job['id']}")
    page.wait_for_selector("#job-result .error:has-text('flaky')")
    mark_no_reload(page)
    page.click("#retry")
    page.wait_for_selector('#job-summary [data-field="status"] .status-completed')
    page.wait_for_selector("#job-result pre.json:has-text('attempts')")
    assert page.inner_text('#job-summary [data-field="attempts"]').startswith("2")
    assert_not_reloaded(page)


@pytest.fixture
def admin_console(browser, console_stack):
    """Signed in with a key that holds the admin scope: (page, client)."""
    from app import tenants

    secret = tenants.create_key(f"t-admin-{time.monotonic_ns()}",
                                (*tenants.DEFAULT_SCOPES, "admin"))
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    foreign = local_only(context)
    page = context.new_page()
    page.set_default_timeout(LIVE_TIMEOUT_MS)
    sign_in(page, console_stack.origin, secret)
    yield page, Client(console_stack.origin, secret)
    context.close()
    assert foreign == [], f"the console fetched from outside: {foreign}"


def test_an_admin_pauses_a_kind_the_job_page_says_why_it_waits_and_resume_runs_it(
    admin_console,
):
    page, client = admin_console
    base = page.url.split("#")[0]
    page.goto(base + "#/scheduling")
    page.wait_for_selector("#pause-kind option[value=sleep]", state="attached")
    page.select_option("#pause-kind", "sleep")
    page.click("#pause")
    page.wait_for_selector('#pauses tr[data-kind="sleep"]')
    job = client.submit("sleep", {"seconds": 0.2})

    page.goto(base + f"#/jobs/{job['id']}")
    page.wait_for_selector('#waiting-reason[data-code="paused"]')
    assert "paused" in page.inner_text('#job-summary [data-field="waiting"]')
    page.goto(base + "#/scheduling")
    page.click('#pauses tr[data-kind="sleep"] button.resume')
    page.wait_for_selector('#pauses tr[data-kind="sleep"]', state="detached")

    page.goto(base + f"#/jobs/{job['id']}")
    page.wait_for_selector('#job-summary [data-field="status"] .status-completed')
    assert page.locator("#waiting-reason").count() == 0


def test_pausing_without_the_admin_scope_is_refused_on_the_page(console):
    page, _ = console
    page.goto(page.url.split("#")[0] + "#/scheduling")
    page.wait_for_selector('#scheduling-summary [data-field="holding a slot"]')
    page.click("#pause")
    page.wait_for_selector("#flash:has-text('Could not pause')")
    assert page.locator("#pauses tbody tr").count() == 0


def test_load_more_pages_through_the_jobs(console):
    """The table shows a page of 25 newest first; "Load more" follows the keyset cursor."""
    page, client = console
    ids = [client.submit("echo", {"n": n})["id"] for n in range(27)]
    for job_id in ids:
        client.wait_status(job_id, "completed")
    page.goto(page.url.split("#")[0] + "#/jobs")
    page.wait_for_selector(row(ids[-1]))
    assert page.locator("#jobs tbody tr").count() == 25
    page.click("#more")
    page.wait_for_selector(row(ids[0]))
    shown = page.eval_on_selector_all("#jobs tbody tr", "rows => rows.map(r => r.dataset.id)")
    assert shown == ids[::-1]
    assert page.is_hidden("#more")


def test_job_page_escapes_hostile_data_and_shows_the_timeline(console):
    """Params and results are anyone's JSON: they appear as text, never as markup."""
    page, client = console
    hostile = "<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script>"
    job = client.submit("echo", {"html": hostile})
    client.wait_status(job["id"], "completed")
    page.goto(page.url.split("#")[0] + f"#/jobs/{job['id']}")
    page.wait_for_selector("#job-result pre.json")
    assert hostile in page.inner_text("#job-result")
    assert hostile in page.inner_text("#job-summary")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#job-summary img, #job-result script").count() == 0
    seqs = page.eval_on_selector_all("#timeline tbody tr", "rows => rows.map(r => r.dataset.seq)")
    assert seqs == [str(n) for n in range(1, len(seqs) + 1)] and len(seqs) >= 3


def test_an_image_job_from_the_form_shows_its_picture(console):
    """The `image` generator's form, then its PNG artifact shown as an <img> from a blob URL."""
    page, client = console
    page.goto(page.url.split("#")[0] + "#/submit")
    page.wait_for_selector("#param-seconds")
    page.select_option("#kind", "image")
    page.fill("#param-width", "160")
    page.fill("#param-height", "90")
    page.fill("#param-text", "<b>hello</b>")
    page.click("#submit")
    page.wait_for_selector("#flash p:has-text('submitted')")
    job_id = re.search(r"Job ([0-9a-f-]{36}) submitted", page.inner_text("#flash")).group(1)
    client.wait_status(job_id, "completed")
    page.goto(page.url.split("#")[0] + f"#/jobs/{job_id}")
    page.wait_for_selector("#result-image")
    # (wait_for_function would eval() in the page, which the console's CSP forbids)
    wait_until(
        lambda: page.eval_on_selector("#result-image", "i => [i.naturalWidth, i.naturalHeight]")
        == [160, 90],
        30, 0.1, "the image to load",
    )
    assert page.get_attribute("#result-image", "src").startswith("blob:")
    assert client.job(job_id)["params"] == {"width": 160, "height": 90, "text": "<b>hello</b>"}
    screenshot(page, "console-image-job")


def test_job_page_resumes_after_the_relay_restarts(console, console_stack):
    """Kill the relay mid-job, start it again on its port: the page reconnects by itself and
    the job's later events arrive, each once, without a reload."""
    page, client = console
    table = page.context.new_page()  # a second tab on the jobs table (tenant room)
    table.set_default_timeout(LIVE_TIMEOUT_MS)
    sign_in(table, console_stack.origin, client.secret)
    job = client.submit("sleep", {"seconds": 6, "steps": 12})
    page.goto(page.url.split("#")[0] + f"#/jobs/{job['id']}")
    mark_no_reload(page)
    mark_no_reload(table)
    page.wait_for_selector('#job-summary [data-field="status"] .status-processing')
    table.wait_for_selector(f"{row(job['id'])} .status-processing")
    (relay,) = console_stack.procs_named("relay")
    console_stack.kill(relay)
    page.wait_for_selector('#conn:not([data-state="live"])')
    client.wait_status(job["id"], "completed", timeout=60)  # finished while the page was away
    later = client.submit("echo", {"after": "restart"})  # a job the table never heard of
    client.wait_status(later["id"], "completed")
    console_stack.start("relay", port=relay.port)
    console_stack.wait_http(console_stack.procs_named("relay")[-1])
    page.wait_for_selector('#conn[data-state="live"]')
    page.wait_for_selector('#job-summary [data-field="status"] .status-completed')
    table.wait_for_selector(f"{row(job['id'])} .status-completed")
    table.wait_for_selector(f"{row(later['id'])} .status-completed")
    assert_not_reloaded(table)
    seqs = page.eval_on_selector_all("#timeline tbody tr", "rows => rows.map(r => r.dataset.seq)")
    assert seqs == [str(n) for n in range(1, len(seqs) + 1)], "a gap or a duplicate"
    assert len(seqs) >= 14  # queued, processing, 12 progress steps, completed
    assert_not_reloaded(page)
    screenshot(page, "console-job-after-relay-restart")


def test_agent_page_follows_a_start_live(console):
    page, client = console
    resp = client.post("/api/v1/agents", {"name": "<b>bold</b> agent", "type": "echo"})
    assert resp.status_code == 201, resp.text
    agent = resp.json()
    page.goto(page.url.split("#")[0] + "#/agents")
    page.wait_for_selector(f'#agents tr[data-id="{agent["id"]}"]')
    assert "<b>bold</b> agent" in page.inner_text("#agents")
    page.click(f'#agents tr[data-id="{agent["id"]}"] a')
    page.wait_for_selector('#agent-summary [data-field="status"] .status-stopped')
    mark_no_reload(page)
    page.click("#agent-start")
    page.wait_for_selector('#agent-summary [data-field="status"] .status-running')
    page.wait_for_selector("#commands tbody tr .status-completed")
    assert "start" in page.inner_text("#commands")
    assert page.inner_text('#agent-summary [data-field="heartbeat"]') != "never"
    assert_not_reloaded(page)
    screenshot(page, "console-agent")


def test_docs_page_renders_redoc_from_our_own_files(browser, console_stack):
    """/docs loads ReDoc from the API itself (no CDN) and renders the routes."""
    context = browser.new_context()
    foreign = local_only(context)
    try:
        page = context.new_page()
        page.goto(console_stack.origin + "/docs")
        page.wait_for_selector("h2:has-text('Submit a generation job')", timeout=LIVE_TIMEOUT_MS)
        assert foreign == []
    finally:
        context.close()
