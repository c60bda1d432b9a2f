"""Chat providers over the real API, Postgres and Redis: an admin configures one, a `chat` job
names it, the fake chat server receives its key as a bearer token; no answer, event, log line
or stored error shows the key, Postgres holds it only encrypted, and one tenant's providers are
nobody else's."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from api import providers_examples as examples
from app import config, db, jobs, providers, tenants
from app.agents.builtin import Generator
from app.errors import ValidationFailed
from app.generators import http as http_gen
from app.models import ChatProvider
from app.scheduling import pauses
from tests.integration.test_chat import run_to_end
from tests.integration.test_tasks import celery_app_worker  # noqa: F401

KEY = "sk-test-" + "k3y" * 8  # what must never show
PATH = "/api/v1/providers"


@pytest.fixture(autouse=True)
def settings_back(domain, fake_llm):
    """Each test's own settings are undone after it; no hold of the server's host is left."""
    from app import pubsub

    pubsub.client().delete(http_gen._hold_key(f"127.0.0.1:{fake_llm.port}"))
    yield
    config.install(domain)


@pytest.fixture
def admin(flask_app, tenant):
    """The test client and an admin key of the tenant (the `tenant` fixture's key has none)."""
    secret = tenants.create_key(tenant[1].name, ["admin"])
    return flask_app.test_client(), {"Authorization": f"Bearer {secret}"}


def put(client, auth, name, **body):
    return client.put(f"{PATH}/{name}", json=body, headers=auth)


def chat_job(**params) -> dict:
    return {"kind": "chat", "params": {
        "model": "fake-1", "messages": [{"role": "user", "content": "Say twenty words."}],
        **params}}


def sealed_of(tenant_id, name: str) -> str | None:
    with db.transaction() as conn:
        return conn.execute(select(ChatProvider.api_key_sealed).where(
            ChatProvider.tenant_id == tenant_id, ChatProvider.name == name)).scalar_one()


def answers_of(client, auth, job_id) -> str:
    """Everything the API answers about a job, as one text."""
    got = [client.get(f"/api/v1/jobs/{job_id}{tail}", headers=auth).get_data(as_text=True)
           for tail in ("", "/events?since=0", "/output")]
    return "\n".join(got)


# --- the routes -----------------------------------------------------------------------------


def test_an_admin_configures_a_provider_and_no_answer_shows_its_key(admin, http, tenant):
    client, auth = admin
    made = put(client, auth, "vllm", base_url="http://10.0.0.5:8000/v1", api_key=KEY)
    # 10.0.0.5 is private and not listed: refused before anything is stored.
    assert made.status_code == 422 and "HTTP_PRIVATE_HOSTS" in made.get_data(as_text=True)
    config.install(config.current().with_(http_private_hosts="10.0.0.5:8000"))
    made = put(client, auth, "vllm", base_url="http://10.0.0.5:8000/v1", api_key=KEY)
    assert made.status_code == 200, made.json
    assert made.json == {**made.json, "name": "vllm", "has_key": True,
                         "base_url": "http://10.0.0.5:8000/v1"}
    reader, read_auth = http  # the tenant's ordinary key reads them
    listed = reader.get(PATH, headers=read_auth)
    one = reader.get(f"{PATH}/vllm", headers=read_auth)
    assert listed.json["items"] == [one.json] and one.json == made.json
    replaced = put(client, auth, "vllm", base_url="http://10.0.0.5:8000/v1")
    assert replaced.json["has_key"] is False and sealed_of(tenant[1].id, "vllm") is None
    trail = reader.get("/api/v1/audit", headers=read_auth).json["items"]
    assert [e["action"] for e in trail][:2] == ["provider.put", "provider.put"]
    assert trail[1]["details"] == {"name": "vllm", "base_url": "http://10.0.0.5:8000/v1",
                                   "has_key": True, "created": True}
    assert client.delete(f"{PATH}/vllm", headers=auth).status_code == 204
    assert reader.get(f"{PATH}/vllm", headers=read_auth).json == examples.error(
        "NOT_FOUND", "no provider named 'vllm'")
    assert client.delete(f"{PATH}/vllm", headers=auth).status_code == 404
    seen = [made, listed, one, replaced]
    assert not any(KEY in r.get_data(as_text=True) for r in seen)
    assert KEY not in json.dumps(trail)


def test_changes_take_the_admin_scope_and_reading_the_jobs_scope(http, admin, fake_llm):
    client, auth = http  # jobs and agents scopes, no admin
    assert put(client, auth, "p", base_url=fake_llm.base_url).json == examples.NOT_ADMIN
    put(*admin, "p", base_url=fake_llm.base_url, api_key=KEY)
    assert client.delete(f"{PATH}/p", headers=auth).json == examples.NOT_ADMIN
    assert client.get(f"{PATH}/p", headers=auth).status_code == 200
    name = tenants.authenticate(auth["Authorization"].split()[1]).name
    agents_only = {"Authorization": "Bearer " + tenants.create_key(name, ["agents:read"])}
    refused = client.get(PATH, headers=agents_only)
    assert refused.status_code == 403 and refused.json["error"]["details"] == {
        "scope": ["requires jobs:read"]}


@pytest.mark.parametrize(("name", "body", "field"), [
    ("Vllm", {"base_url": "{llm}"}, "name"),
    ("-x", {"base_url": "{llm}"}, "name"),
    ("x" * 64, {"base_url": "{llm}"}, "name"),
    ("p", {"base_url": "ftp://llm/v1"}, "base_url"),
    ("p", {"base_url": "http://u:pw@{host}/v1"}, "base_url"),
    ("p", {"base_url": "http://169.254.169.254/latest"}, "base_url"),
    ("p", {"base_url": "http://127.0.0.1:1/v1"}, "base_url"),  # loopback, not listed
    ("p", {"base_url": "http://[::1/v1"}, "base_url"),
    ("p", {"base_url": "{llm}", "api_key": "sk with space"}, "api_key"),
    ("p", {"base_url": "{llm}", "api_key": "sk\r\nX-Evil: 1"}, "api_key"),
    ("p", {"base_url": "{llm}", "api_key": ""}, "api_key"),
    ("p", {"base_url": "{llm}", "headers": {"X": "1"}}, "headers"),
    ("p", {}, "base_url"),
])
def test_bad_names_urls_and_keys_are_refused_field_by_field(admin, tenant, fake_llm, name,
                                                            body, field):
    client, auth = admin
    host = f"127.0.0.1:{fake_llm.port}"
    body = {k: v.format(llm=fake_llm.base_url, host=host) if isinstance(v, str) else v
            for k, v in body.items()}
    resp = put(client, auth, name, **body)
    assert resp.status_code == 422, resp.json
    assert list(resp.json["error"]["details"]) == [field]
    assert client.get(PATH, headers=auth).json["items"] == []  # nothing was written


def test_the_refusal_examples_are_what_the_api_says(admin, monkeypatch, domain):
    client, auth = admin
    vllm = {"base_url": examples.VLLM_URL}
    cases = [
        ("Bad Name", vllm, examples.BAD_NAME),
        ("vllm", {"base_url": examples.METADATA_URL}, examples.BAD_URL),
        ("vllm", {"base_url": examples.CREDENTIALS_URL}, examples.CREDENTIALS),
        ("vllm", {"base_url": "ftp://10.0.0.5/v1"}, examples.NOT_A_URL),
    ]
    for name, body, documented in cases:
        assert put(client, auth, name, **body).json == documented
    assert client.get(f"{PATH}/gone", headers=auth).json == examples.NO_SUCH
    assert client.delete(f"{PATH}/gone", headers=auth).json == examples.NO_SUCH
    assert client.get(f"{PATH}/Bad%20Name", headers=auth).json == examples.BAD_NAME
    assert client.delete(f"{PATH}/Bad%20Name", headers=auth).json == examples.BAD_NAME
    config.install(domain.with_(provider_key_secrets="", http_private_hosts="10.0.0.5:8000"))
    refused = put(client, auth, "vllm", **vllm, api_key=KEY)
    assert refused.status_code == 409 and refused.json == examples.NOT_CONFIGURED
    assert client.get(PATH, headers=auth).json["items"] == []
    # A provider without a key needs no secret.
    assert put(client, auth, "vllm", **vllm).json["has_key"] is False


def test_a_tenant_names_at_most_max_providers(admin, monkeypatch, fake_llm):
    client, auth = admin
    monkeypatch.setattr(providers, "MAX_PROVIDERS", 3)
    for i in range(3):
        assert put(client, auth, f"p{i}", base_url=fake_llm.base_url).status_code == 200
    too_many = put(client, auth, "p3", base_url=fake_llm.base_url)
    assert too_many.status_code == 422
    assert too_many.json["error"] == {**examples.TOO_MANY["error"], "details": {
        "name": ["a tenant may name at most 3"]}}
    assert put(client, auth, "p0", base_url=fake_llm.base_url, api_key=KEY).status_code == 200
    assert [p["name"] for p in client.get(PATH, headers=auth).json["items"]] == ["p0", "p1", "p2"]


def test_one_tenants_providers_are_nobody_elses(flask_app, admin, other_tenant, fake_llm):
    client, auth = admin
    put(client, auth, "shared", base_url=fake_llm.base_url, api_key=KEY)
    other = {"Authorization": "Bearer " + tenants.create_key(other_tenant[1].name, ["admin"])}
    assert client.get(f"{PATH}/shared", headers=other).status_code == 404
    assert client.get(PATH, headers=other).json["items"] == []
    assert client.delete(f"{PATH}/shared", headers=other).status_code == 404
    assert client.get(f"{PATH}/shared", headers=auth).json["has_key"] is True  # still there
    mine = put(client, other, "shared", base_url=fake_llm.base_url)  # a name of its own
    assert mine.json["has_key"] is False
    assert client.get(f"{PATH}/shared", headers=auth).json["has_key"] is True


# --- at rest --------------------------------------------------------------------------------


def test_the_key_is_stored_only_encrypted(admin, tenant, fake_llm, domain):
    put(*admin, "p", base_url=fake_llm.base_url, api_key=KEY)
    with db.transaction() as conn:
        row = conn.execute(text("SELECT row_to_json(p)::text FROM chat_providers p "
                                "WHERE tenant_id = :t"), {"t": tenant[1].id}).scalar_one()
    assert KEY not in row and KEY.encode().hex() not in row
    sealed = sealed_of(tenant[1].id, "p")
    assert Fernet(domain.provider_key_secrets.encode()).decrypt(sealed.encode()) == KEY.encode()


def test_a_rotated_secret_still_reads_old_keys_and_reseal_moves_them(flask_app, admin, tenant,
                                                                     fake_llm, domain):
    old = domain.provider_key_secrets
    put(*admin, "p", base_url=fake_llm.base_url, api_key=KEY)
    job, _ = jobs.submit(tenant[1], chat_job(provider="p"))
    new = Fernet.generate_key().decode()
    config.install(domain.with_(provider_key_secrets=f"{new},{old}"))
    assert providers.for_job(job.id, "p").api_key == KEY  # the old secret, second, decrypts
    before = sealed_of(tenant[1].id, "p")
    out = flask_app.test_cli_runner().invoke(args=["providers", "reseal"])
    assert out.exit_code == 0 and "re-encrypted" in out.output, out.output
    after = sealed_of(tenant[1].id, "p")
    assert after != before and Fernet(new.encode()).decrypt(after.encode()) == KEY.encode()
    config.install(domain.with_(provider_key_secrets=new))  # the old one dropped
    assert providers.for_job(job.id, "p").api_key == KEY
    config.install(domain.with_(provider_key_secrets=old))  # a list without the new one
    with pytest.raises(providers.KeyUnreadable, match="'p'") as caught:
        providers.for_job(job.id, "p")
    assert KEY not in str(caught.value)


# --- the chat generator ---------------------------------------------------------------------


def test_submit_takes_exactly_one_of_base_url_or_provider(admin, http, fake_llm):
    client, auth = http
    cases = [({}, "one of base_url, provider is required"),
             ({"base_url": fake_llm.base_url, "provider": "p"},
              "only one of base_url, provider may be given")]
    for params, why in cases:
        resp = client.post("/api/v1/jobs", json=chat_job(**params), headers=auth)
        assert resp.status_code == 422
        assert resp.json["error"]["details"] == {"params": [why]}
    resp = client.post("/api/v1/jobs", json=chat_job(provider="No Such"), headers=auth)
    assert list(resp.json["error"]["details"]) == ["params.provider"]
    resp = client.post("/api/v1/jobs", json=chat_job(provider="p"), headers=auth)
    assert resp.status_code == 422  # a name the tenant has none of: refused at submit
    assert resp.json["error"]["details"]["params.provider"][0].startswith(
        "no provider named 'p' for this tenant")
    put(*admin, "p", base_url=fake_llm.base_url, api_key=KEY)
    assert client.post("/api/v1/jobs", json=chat_job(provider="p"),
                       headers=auth).status_code == 202


def test_an_agent_submits_a_chat_job_through_a_provider():
    Generator.check({}, {"kind": "chat", "params": chat_job(provider="p")["params"]})
    with pytest.raises(ValidationFailed) as refused:
        Generator.check({}, {"kind": "chat", "params": chat_job()["params"]})
    assert refused.value.details == {"params.input.params": [
        "one of base_url, provider is required"]}


def test_a_job_through_a_provider_sends_its_key_as_a_bearer_token(
    celery_app_worker, admin, http, tenant, fake_llm, caplog  # noqa: F811
):
    caplog.set_level(logging.DEBUG)
    fake_llm.control(require_key=KEY)
    put(*admin, "llm", base_url=fake_llm.base_url, api_key=KEY)
    job, _ = jobs.submit(tenant[1], chat_job(provider="llm"))
    done = run_to_end(tenant, job.id)
    assert done.status == "completed", done.error
    assert done.result["text"].startswith("tok0 ") and done.params["provider"] == "llm"
    call = fake_llm.stats()["calls"][-1]
    assert call["authorization"] == f"Bearer {KEY}" and call["idempotency_key"] == str(job.id)
    assert KEY not in answers_of(*http, job.id) and KEY not in caplog.text


def test_a_server_that_echoes_the_key_in_its_refusal_never_gets_it_stored_or_logged(
    celery_app_worker, admin, http, tenant, fake_llm, caplog  # noqa: F811
):
    caplog.set_level(logging.DEBUG)
    fake_llm.control(require_key="sk-the-right-one")
    put(*admin, "llm", base_url=fake_llm.base_url, api_key=KEY)
    job, _ = jobs.submit(tenant[1], chat_job(provider="llm"))
    done = run_to_end(tenant, job.id)
    assert done.status == "failed" and done.attempts == 1
    assert "HTTP 401" in done.error["message"] and "[redacted]" in done.error["message"]
    assert fake_llm.stats()["calls"][-1]["authorization"] == f"Bearer {KEY}"  # it was echoed
    assert KEY not in json.dumps(done.error) and KEY not in answers_of(*http, job.id)
    assert KEY not in caplog.text


def test_a_provider_gone_or_another_tenants_fails_the_job_for_good(
    celery_app_worker, admin, tenant, other_tenant, fake_llm  # noqa: F811
):
    put(*admin, "llm", base_url=fake_llm.base_url, api_key=KEY)
    with pytest.raises(ValidationFailed) as refused:  # another tenant's: none of its own
        jobs.submit(other_tenant[1], chat_job(provider="llm"))
    assert list(refused.value.details) == ["params.provider"]
    pauses.pause(tenant[1].id, "chat")  # made while the provider is there, run once it is gone
    mine, _ = jobs.submit(tenant[1], chat_job(provider="llm"))
    client, auth = admin
    assert client.delete(f"{PATH}/llm", headers=auth).status_code == 204
    pauses.resume(tenant[1].id, "chat")
    done = run_to_end(tenant, mine.id)
    assert done.status == "failed" and done.error["code"] == "PROVIDER_NOT_FOUND"
    assert done.attempts == 1 and fake_llm.stats()["calls"] == []  # nothing was sent
    assert "no provider named 'llm'" in done.error["message"]


def test_a_key_no_secret_can_read_fails_the_job_for_good(
    celery_app_worker, admin, tenant, fake_llm, domain, caplog  # noqa: F811
):
    put(*admin, "llm", base_url=fake_llm.base_url, api_key=KEY)
    config.install(domain.with_(provider_key_secrets=Fernet.generate_key().decode()))
    job, _ = jobs.submit(tenant[1], chat_job(provider="llm"))
    done = run_to_end(tenant, job.id)
    assert done.status == "failed" and done.error["code"] == "PROVIDER_KEY_UNREADABLE"
    assert "was its secret removed?" in caplog.text and fake_llm.stats()["calls"] == []


def test_a_job_naming_a_provider_finds_it_only_through_its_own_tenant(admin, tenant,
                                                                     other_tenant, fake_llm):
    put(*admin, "llm", base_url=fake_llm.base_url, api_key=KEY)
    mine, _ = jobs.submit(tenant[1], chat_job(provider="llm"))
    theirs, _ = jobs.submit(other_tenant[1], chat_job(base_url=fake_llm.base_url))
    assert providers.for_job(mine.id, "llm").api_key == KEY
    assert providers.for_job(theirs.id, "llm") is None
    assert providers.for_job(str(uuid.uuid4()), "llm") is None
    assert KEY not in repr(providers.for_job(mine.id, "llm"))


def test_the_service_refuses_what_the_routes_schema_would(tenant, fake_llm):
    """The domain checks for itself (a CLI or a plugin calls it without the route's schema)."""
    for url, key, field in [(fake_llm.base_url, "sk\nX-Evil: 1", "api_key"),
                            ("ftp://llm/v1", None, "base_url"),
                            (fake_llm.base_url + "/" + "a" * 2000, None, "base_url")]:
        with pytest.raises(ValidationFailed) as refused:
            providers.put(tenant[1], "p", url, key)
        assert list(refused.value.details) == [field]
    assert providers.all_of(tenant[1]) == []
