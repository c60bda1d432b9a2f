"""The guards around chat providers' keys that need no database: PROVIDER_KEY_SECRETS refused
at start without repeating it, and a key kept out of remote excerpts and of what a call raises."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from jsonschema import Draft202012Validator

from app import plugins
from app.config import Settings, SettingsError
from app.generators import PermanentError, TransientError
from app.generators import http as http_gen

KEY = "sk-unit-0123456789abcdef"


def test_bad_secrets_are_refused_at_start_naming_the_variable_not_the_value():
    good = Fernet.generate_key().decode()
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"PROVIDER_KEY_SECRETS": f"{good},not-a-fernet-key"})
    message = str(refused.value)
    assert message.startswith("PROVIDER_KEY_SECRETS: entry 2 is not a Fernet key")
    assert "withheld" in message and "not-a-fernet-key" not in message and good not in message


def test_secrets_rotate_as_a_list_and_never_show_in_the_settings():
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings = Settings.from_env({"PROVIDER_KEY_SECRETS": f" {new} , {old} "})
    assert settings.provider_key_secrets.replace(" ", "") == f"{new},{old}"
    assert new not in repr(settings) and new not in str(settings)
    assert Settings.from_env({}).provider_key_secrets == ""  # unset: no key can be stored


def test_an_excerpt_of_remote_text_never_shows_a_key_the_call_carries():
    # The key straddles the excerpt's cut: replaced after the cut, a piece of it would stay.
    body = ("x" * (http_gen.EXCERPT_CHARS - 8) + f" {KEY} trailing").encode()
    assert KEY[:4] in http_gen.excerpt(body)
    with http_gen.keeping(KEY):
        shown = http_gen.excerpt(body)
        assert KEY[:4] not in shown and shown.endswith("[redac\u2026")
        assert KEY not in http_gen.excerpt({"error": {"message": f"bad key {KEY}"}})
        long = ("y " * 1000 + KEY).encode()  # past the first cut, as whitespace collapses
        assert KEY[:4] not in http_gen.excerpt(long)
    assert KEY[:4] in http_gen.excerpt(body)  # only while the call is under way


@pytest.mark.parametrize("raised", [
    lambda: RuntimeError(f"Invalid header value {KEY!r}"),
    lambda: PermanentError(f"HTTP 401: {KEY}", code="UPSTREAM"),
    lambda: TransientError("the stream broke"),
])
def test_nothing_a_call_raises_carries_its_key(raised):
    original = raised()
    with pytest.raises(type(original)) as caught:
        with http_gen.keeping(KEY):
            raise original
    assert caught.value is original  # its class, code and traceback kept
    assert KEY not in str(caught.value)
    if isinstance(original, PermanentError):
        assert caught.value.code == "UPSTREAM" and "[redacted]" in str(caught.value)


def test_a_key_in_what_led_to_an_error_is_cut_from_its_chain():
    with pytest.raises(TransientError) as caught:
        with http_gen.keeping(KEY):
            try:
                raise OSError(13, f"denied for {KEY}")
            except OSError as exc:
                raise TransientError("connection failed") from exc
    seen, exc = [], caught.value
    while exc is not None:
        seen.append(f"{exc} {exc.args}")
        exc = exc.__cause__ or exc.__context__
    assert KEY not in " ".join(seen) and "connection failed" in seen[0]


def test_a_one_of_refusal_names_the_choices_instead_of_repeating_the_value():
    titled = {"oneOf": [{"title": "a", "required": ["a"]}, {"title": "b", "required": ["b"]}]}
    check = Draft202012Validator(titled)
    secretish = {"messages": "x" * 500}
    assert plugins.schema_errors(check, secretish, "params") == {
        "params": ["one of a, b is required"]}
    assert plugins.schema_errors(check, {"a": 1, "b": 2}, "params") == {
        "params": ["only one of a, b may be given"]}
    untitled = Draft202012Validator({"oneOf": [{"required": ["a"]}, {"required": ["b"]}]})
    assert "is not valid under any" in plugins.schema_errors(untitled, {}, "p")["p"][0]
