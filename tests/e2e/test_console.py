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

from scripts import procfile
from scripts.sandbox import free_port
from tests.e2e.browser import launch, local_only, screenshot, sign_in
from tests.e2e.conftest import Client, _ping_workers
from tests.support.stack import Stack, stack_env, wait_until

pytestmark = pytest.mark.e2e

LIVE_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def console_stack(domain):
    """api, relay (known port, CORS = the api's origin), one worker (and the io worker, where
    the Procfile has one: the `chat` jobs' queue), the system worker and beat."""
    api_port, relay_port = free_port(), free_port()
    origin, relay_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{relay_port}"
    stack = Stack(stack_env(domain, RELAY_CORS_ORIGINS=origin, CONSOLE_RELAY_URL=relay_url))
    workers = 2
    try:
        api = stack.start("api", port=api_port, API_WORKERS=2)
        relay = stack.start("relay", port=relay_port)
        stack.start("worker")
        if "io" in procfile.read_procfile():
            stack.start("io", IO_CONCURRENCY=20)
            workers += 1
        stack.start("system")
        stack.start("beat")
        stack.wait_http(api)
        stack.wait_http(relay)
        wait_until(lambda: _ping_workers(domain, workers), 60, 0.5, f"{workers} workers")
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


def the_relay(stack):
    """The relay now running (a test before may have restarted it: the latest started)."""
    return stack.procs_named("relay")[-1]


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
    relay = the_relay(console_stack)
    console_stack.kill(relay)
    page.wait_for_selector('#conn:not([data-state="live"])')
    client.wait_status(job["id"], "completed", timeout=60)  # finished while the page was away
    later = client.submit("echo", {"after": "restart"})  # a job the table never heard of
    client.wait_status(later["id"], "completed")
    console_stack.start("relay", port=relay.port)
    console_stack.wait_http(the_relay(console_stack))
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


PANEL = "#job-output"


def words(n: int) -> str:
    """The fake chat server's reply of `n` tokens (`tests/support/fake_llm.py`)."""
    return "".join(f"tok{i} " for i in range(n))


def submit_chat(client, fake_llm, tokens: int, **fields) -> dict:
    params = {"base_url": fake_llm.base_url, "model": "fake-1",
              "messages": [{"role": "user", "content": "Go on."}], "max_tokens": tokens}
    return client.submit("chat", params, **fields)


def panel_text(page) -> str:
    return page.text_content(PANEL) or ""


def panel_longer_than(page, n: int) -> str | None:
    """The panel's text once it has more than `n` characters (else None: wait on)."""
    text = panel_text(page)
    return text if len(text) > n else None


def stored_output(client, job_id: str) -> dict:
    return client.get(f"/api/v1/jobs/{job_id}/output").json()


def record_panel(page) -> None:
    """From now on, note every state the Output panel shows (attempt and text) in the page,
    each time the page changes it: `panel_history` reads them back."""
    page.wait_for_selector(PANEL, state="attached")
    page.evaluate(
        """() => {
          const pre = document.getElementById("job-output");
          window.__panel = [];
          const note = () => window.__panel.push([pre.dataset.attempt, pre.textContent]);
          note();
          new MutationObserver(note).observe(
            pre, {childList: true, characterData: true, subtree: true, attributes: true});
        }"""
    )


def panel_history(page) -> list[tuple[str, str]]:
    return [tuple(state) for state in page.evaluate("window.__panel")]


def timeline_seqs(page) -> list[int]:
    """Every seq the timeline covers; a row of output chunks covers `seq` to `lastSeq`."""
    spans = page.eval_on_selector_all(
        "#timeline tbody tr",
        "rows => rows.map(r => [+r.dataset.seq, +(r.dataset.lastSeq || r.dataset.seq)])",
    )
    return [seq for first, last in spans for seq in range(first, last + 1)]


def pump(page, ms: int = 20) -> None:
    """Let Playwright deliver the page's events (route handlers) for a moment."""
    page.wait_for_timeout(ms)


def test_job_page_shows_a_chat_reply_as_it_streams_through_a_reload_and_a_relay_restart(
    console, console_stack, fake_llm
):
    """The Output panel grows live while the job is processing; after a reload (whose read of
    the output is held back while chunks it will hold are also replayed) and after a relay
    restart mid-stream, it ends with the reply exactly: nothing missing, nothing twice."""
    page, client = console
    tokens = 240  # 12 s at 20 tokens a second: the reload and the restart happen mid-stream
    reply = words(tokens)
    fake_llm.control(rate=20)
    job = submit_chat(client, fake_llm, tokens)
    base = page.url.split("#")[0]
    page.goto(base + f"#/jobs/{job['id']}")
    record_panel(page)

    # Live: the text grows while the job runs, and is always the start of the reply.
    first = wait_until(lambda: panel_longer_than(page, len(words(10))), 30, 0.05,
                       "ten tokens on the page")
    assert client.job(job["id"])["status"] == "processing"
    assert reply.startswith(first)
    grown = wait_until(lambda: panel_longer_than(page, len(first)), 15, 0.05, "more text")
    assert reply.startswith(grown)
    history = panel_history(page)

    # A reload, its read of the output held until more chunks are stored: the room replays
    # those after the events the page listed, and the read has them too.
    held = []

    def hold(route):
        held.append(route)

    page.route("**/api/v1/jobs/*/output*", hold)
    page.reload()
    wait_until(lambda: pump(page) or held, 30, 0.01, "the page to read the output")
    record_panel(page)
    stored = len(stored_output(client, job["id"])["text"])
    wait_until(lambda: len(stored_output(client, job["id"])["text"]) >= stored + len(words(8)),
               15, 0.05, "more chunks stored while the read is held")
    held[0].continue_()
    page.unroute("**/api/v1/jobs/*/output*", hold)
    mark_no_reload(page)
    after_reload = wait_until(lambda: panel_longer_than(page, stored + len(words(8))), 15,
                              0.05, "the text to go on after the reload")
    assert reply.startswith(after_reload), "doubled or missing after the reload"
    assert client.job(job["id"])["status"] == "processing"

    # The relay goes away mid-stream and comes back on its port: the page resubscribes from
    # the last seq it saw and is replayed what it missed.
    relay = the_relay(console_stack)
    console_stack.kill(relay)
    page.wait_for_selector('#conn:not([data-state="live"])')
    at_kill = panel_text(page)
    wait_until(lambda: len(stored_output(client, job["id"])["text"]) >= len(at_kill)
               + len(words(8)), 15, 0.05, "chunks stored while the relay is down")
    console_stack.start("relay", port=relay.port)
    console_stack.wait_http(the_relay(console_stack))
    page.wait_for_selector('#conn[data-state="live"]')
    wait_until(lambda: len(panel_text(page)) >= len(at_kill) + len(words(8)), 15, 0.05,
               "the missed chunks on the page")

    done = client.wait_status(job["id"], "completed", timeout=60)
    page.wait_for_selector('#job-summary [data-field="status"] .status-completed')
    wait_until(lambda: len(panel_text(page)) >= len(reply), 10, 0.05, "the whole reply")
    shown = panel_text(page)
    assert shown == reply == done["result"]["text"]
    answer = stored_output(client, job["id"])
    assert answer["done"] and answer["attempt"] == 1 and answer["text"] == shown
    assert page.get_attribute(PANEL, "data-attempt") == "1"
    assert page.text_content("#job-output-attempt") == "attempt 1"
    assert_not_reloaded(page)
    # Whatever the page showed on its way, it was the start of the reply: never a doubled chunk.
    history += panel_history(page)
    assert all(reply.startswith(text) for _, text in history), "the panel showed a wrong text"
    # The timeline covers every event once; the chunks share one row.
    seqs = timeline_seqs(page)
    assert seqs == list(range(1, len(seqs) + 1)), "a gap or a duplicate in the timeline"
    events = client.get(f"/api/v1/jobs/{job['id']}/events?limit=1000").json()["items"]
    assert len(seqs) == len(events)
    chunks = sum(e["event_type"] == "job.output.appended" for e in events)
    assert chunks > 20 and page.locator("#timeline tr.output-run").count() == 1
    screenshot(page, "console-job-output")


def test_a_retried_attempts_output_replaces_the_earlier_one_on_the_page(
    admin_console, fake_llm
):
    """The first attempt's stream is cut midway; the page shows its text, then, as the next
    attempt streams, that attempt's output alone, marked as such: never a mix of the two."""
    page, client = admin_console
    tokens = 60
    reply = words(tokens)
    # Held back while the page opens, so the page hears the first attempt from its start.
    assert client.post("/api/v1/pauses", {"kind": "chat"}).status_code == 200
    try:
        fake_llm.control(rate=20, cut_after=15)
        job = submit_chat(client, fake_llm, tokens, max_retries=2)
        page.goto(page.url.split("#")[0] + f"#/jobs/{job['id']}")
        page.wait_for_selector('#waiting-reason[data-code="paused"]')
        record_panel(page)
        mark_no_reload(page)
    finally:
        assert client.post("/api/v1/pauses/resume", {"kind": "chat"}).status_code == 200
    # The first call took its cut with it; the calls after it stream the whole reply.
    wait_until(lambda: any(c["idempotency_key"] == job["id"] for c in fake_llm.stats()["calls"]),
               30, 0.02, "the first attempt's call")
    fake_llm.control(cut_after=None, rate=40)

    done = client.wait_status(job["id"], {"completed", "failed"}, timeout=60)
    assert done["status"] == "completed" and done["attempts"] >= 2, done
    page.wait_for_selector('#job-summary [data-field="status"] .status-completed')
    wait_until(lambda: len(panel_text(page)) >= len(reply), 10, 0.05, "the whole reply")
    assert panel_text(page) == reply == done["result"]["text"]
    assert stored_output(client, job["id"])["text"] == reply
    attempt = str(done["attempts"])
    assert page.get_attribute(PANEL, "data-attempt") == attempt
    assert page.text_content("#job-output-attempt") == f"attempt {attempt}"
    assert_not_reloaded(page)

    history = panel_history(page)
    first = [text for a, text in history if a == "1"]
    assert any(first), "the first attempt's output was never shown"
    assert all(words(15).startswith(text) for text in first)
    assert all(reply.startswith(text) for _, text in history), "a mix of two attempts"
    shown_attempts = [int(a) for a, _ in history]
    assert shown_attempts == sorted(shown_attempts)  # an attempt, once replaced, never back
    # The timeline keeps one row per attempt's chunks.
    assert page.locator("#timeline tr.output-run").count() == done["attempts"]


PANEL_SCRIPT = """async () => {
  const { outputPanel } = await import("/console/views/output.js");
  // The API's side: each attempt's whole output; `read` answers GET .../output from there on.
  let server = { attempt: 1, text: "héllo 🎉 ", deltas: [] };
  const reads = [];
  const read = async (offset, deltaOffset) => {
    reads.push([offset, deltaOffset]);
    const chars = [...server.text];
    return { attempt: server.attempt, offset: chars.length, text: chars.slice(offset).join(""),
             delta_offset: server.deltas.length, deltas: server.deltas.slice(deltaOffset) };
  };
  const panel = outputPanel(read);
  document.body.append(panel.node);
  const pre = panel.node.querySelector("#job-output");
  const seen = {};
  const note = (name) => {
    seen[name] = {
      text: pre.textContent,
      attempt: panel.node.querySelector("#job-output-attempt").textContent,
      deltas: [...panel.node.querySelectorAll("#job-output-deltas li")].map((li) => li.textContent),
      reads: reads.length,
    };
  };
  await panel.load();
  note("load");
  await panel.chunk({ attempt: 1, offset: 0, text: "héllo " });
  note("duplicate");
  await panel.chunk({ attempt: 1, offset: 6, text: "🎉 wö" });
  note("overlap");
  await panel.chunk({ attempt: 1, offset: 10, text: "rld", delta_offset: 0, deltas: [{ a: 1 }] });
  note("next");
  server = { attempt: 1, text: "héllo 🎉 wörld, and more", deltas: [{ a: 1 }, [2], "three"] };
  await panel.chunk({ attempt: 1, offset: 19, text: "more", delta_offset: 2, deltas: ["three"] });
  note("gap");
  const hostile = "<img src=x onerror=window.__pwned=1>";
  await panel.chunk({ attempt: 2, offset: 0, text: hostile });
  note("new attempt");
  await panel.chunk({ attempt: 1, offset: 23, text: "late" });
  note("old attempt");
  server = { attempt: 3, text: "third try", deltas: [] };
  await panel.chunk({ attempt: 3, offset: 6, text: "try" });
  note("new attempt with a gap");
  server = { attempt: 4, text: "fourth", deltas: [] };
  await panel.chunk({ attempt: 3, offset: 20, text: "x" });
  note("gap read finds a newer attempt");
  // Scrolled to its end while it grows, unless the reader scrolled up.
  const many = (from, n) => Array.from({ length: n }, (_, i) => `line ${from + i}\\n`).join("");
  server = { attempt: 5, text: many(0, 400), deltas: [] };
  await panel.chunk({ attempt: 5, offset: 0, text: many(0, 200) });
  const atEnd = () => pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
  const followed = pre.scrollHeight > pre.clientHeight && atEnd();
  pre.scrollTop = 0;
  await panel.chunk({ attempt: 5, offset: [...many(0, 200)].length, text: many(200, 200) });
  return { seen, reads, followed, stayedUp: pre.scrollTop === 0,
           pwned: window.__pwned ?? null, imgs: panel.node.querySelectorAll("img").length };
}"""


def test_the_output_panel_places_each_chunk_by_its_offset(browser, console_stack):
    """The panel's rules, chunk by chunk, in Chromium: a chunk already shown is skipped, one
    that overlaps adds only its new characters (code points, as the server counts), a gap is
    read from the API from what is shown, an older attempt's chunk is dropped and a newer
    attempt replaces the text; deltas are listed, and text is never markup."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    foreign = local_only(context)
    try:
        page = context.new_page()
        page.goto(console_stack.origin + "/")
        page.wait_for_selector("#key")
        got = page.evaluate(PANEL_SCRIPT)
    finally:
        context.close()
    seen = got["seen"]
    assert seen["load"] == {"text": "héllo 🎉 ", "attempt": "attempt 1", "deltas": [], "reads": 1}
    assert seen["duplicate"]["text"] == "héllo 🎉 "
    assert seen["overlap"]["text"] == "héllo 🎉 wö"
    assert seen["next"]["text"] == "héllo 🎉 wörld" and seen["next"]["deltas"] == ['{"a":1}']
    assert seen["gap"] == {"text": "héllo 🎉 wörld, and more", "attempt": "attempt 1",
                           "deltas": ['{"a":1}', "[2]", '"three"'], "reads": 2}
    assert seen["new attempt"] == {"text": "<img src=x onerror=window.__pwned=1>",
                                   "attempt": "attempt 2", "deltas": [], "reads": 2}
    assert seen["old attempt"] == seen["new attempt"]
    assert seen["new attempt with a gap"]["text"] == "third try"
    assert seen["new attempt with a gap"]["attempt"] == "attempt 3"
    assert seen["gap read finds a newer attempt"]["text"] == "fourth"
    assert seen["gap read finds a newer attempt"]["attempt"] == "attempt 4"
    # load, the gap from (13 characters, 1 delta), the new attempt's from 0, the gap of
    # attempt 3 from 9 (which found attempt 4) and attempt 4's from 0
    assert got["reads"][:5] == [[0, 0], [13, 1], [0, 0], [9, 0], [0, 0]]
    assert got["followed"] and got["stayedUp"]
    assert got["pwned"] is None and got["imgs"] == 0
    assert foreign == []


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
