"""Credentials are masked in every form a URL or a log line can carry them (plipbot/redaction.py)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plipbot.doctor import CheckResult
from plipbot.redaction import MASK, redact_secrets, redact_url

PASSWORD = "Zq#s/ec?ret:1"  # characters that end a URL's authority when left unencoded

# (text containing PASSWORD or its encoding, what must remain) for each form the issue lists.
FORMS = [
    (f"redis://:{PASSWORD}@redis:6379/0", "redis://:***@redis:6379/0"),
    (f"redis://:{quote(PASSWORD, safe='')}@redis:6379/0", "redis://:***@redis:6379/0"),
    (f"rediss://plipbot:{PASSWORD}@cache.example:6380/1", "rediss://plipbot:***@cache.example:6380/1"),
    (f"postgresql+psycopg://plipbot:{PASSWORD}@db/plipbot", "postgresql+psycopg://plipbot:***@db/plipbot"),
    (f"http://admin:{PASSWORD}@qdrant:6333", "http://admin:***@qdrant:6333"),
    (f"https://qdrant.example:6333/collections?api-key={PASSWORD}", "?api-key=***"),
    (f"https://qdrant.example/?x=1&api_key={PASSWORD}&y=2", "&api_key=***&y=2"),
    (f"https://h.example/db?password={PASSWORD}", "?password=***"),
    (f"https://h.example/hook?token={PASSWORD}", "?token=***"),
    (f"redis://redis:6379/0?password={quote(PASSWORD, safe='')}", "?password=***"),
    (f"PLIPBOT_DISCORD__TOKEN={PASSWORD}", "PLIPBOT_DISCORD__TOKEN=***"),
    (f"{{'password': '{PASSWORD}'}}", "'password': '***'"),
]


@pytest.mark.parametrize(("text", "kept"), FORMS)
def test_each_listed_form_is_masked(text: str, kept: str) -> None:
    redacted = redact_secrets(f"cannot connect to {text}: refused")
    assert PASSWORD not in redacted and quote(PASSWORD, safe="") not in redacted
    assert kept in redacted and MASK in redacted
    assert redacted.startswith("cannot connect to ") and redacted.endswith(": refused")


def test_an_at_sign_in_a_password_hides_more_never_less() -> None:
    assert redact_url("redis://:p@ss@redis:6379/0") == "redis://:***@redis:6379/0"
    over = redact_secrets("https://qdrant:6333/points?limit=5&password=Pw@9&x=1")
    assert "Pw@9" not in over and "9&x" not in over and over.endswith("&x=1")
    assert redact_secrets("redis://:a&pass=b@host/0") == "redis://:***"


def test_urls_without_credentials_are_left_alone() -> None:
    for url in (
        "http://qdrant:6333",
        "redis://127.0.0.1:6379/0",
        "https://discord.com/api/v10/users/@me",
        "https://cdn.example/a.png?size=128",
    ):
        assert redact_url(url) == url


def test_a_token_as_user_name_and_authorisation_headers() -> None:
    assert redact_url("https://s3cr3t-token@example.com/x") == "https://***@example.com/x"
    assert redact_secrets("Authorization: Bot MTIzNDU2Nzg5.MTIzNDU2.abcdefghij") == "Authorization: Bot ***"


def test_known_secrets_are_masked_anywhere() -> None:
    token = "MTA5ODc2NTQzMjEw.GhIjKl.mNoPqRsTuVwXyZ"
    assert redact_secrets(f"login with {token} failed", [token]) == "login with *** failed"


def test_doctor_lines_are_redacted() -> None:
    line = CheckResult("ledger", "FAIL", f"cannot connect: postgresql://u:{PASSWORD}@db/x (refused)").line()
    assert PASSWORD not in line and "postgresql://u:***@db/x" in line


# Passwords of printable characters that cannot end a log token (no whitespace or quotes), always
# with a marker so that a short password cannot be "found" inside the host name.
_password_chars = st.characters(
    min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="'\"<>`\\"
) | st.characters(categories=("L", "N"))
passwords = st.text(_password_chars, min_size=1, max_size=24).map(lambda p: f"Pw{p}9")
hosts = st.sampled_from(["redis", "127.0.0.1", "db.internal", "qdrant"])
schemes = st.sampled_from(["redis", "rediss", "postgresql+psycopg", "http", "https", "amqp"])
users = st.sampled_from(["", "plipbot", "u"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    password=passwords,
    scheme=schemes,
    user=users,
    host=hosts,
    port=st.integers(1, 65535),
    encode=st.booleans(),
)
def test_property_no_userinfo_password_survives(
    password: str, scheme: str, user: str, host: str, port: int, encode: bool
) -> None:
    secret = quote(password, safe="") if encode else password
    url = f"{scheme}://{user}:{secret}@{host}:{port}/0"
    redacted = redact_secrets(f"error talking to {url}, retrying")
    assert secret not in redacted
    assert f"{scheme}://{user}:{MASK}@{host}:{port}/0" in redacted


# In a query string an unencoded `&` ends the value by definition, so the property covers the rest.
query_passwords = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="'\"<>`\\&,;"),
    min_size=1,
    max_size=24,
).map(lambda p: f"Pw{p}9")


@settings(max_examples=300, deadline=None)
@given(
    password=query_passwords,
    key=st.sampled_from(["password", "api-key", "api_key", "apikey", "token", "access_token", "secret"]),
    encode=st.booleans(),
)
def test_property_no_query_secret_survives(password: str, key: str, encode: bool) -> None:
    secret = quote(password, safe="") if encode else password
    redacted = redact_secrets(f"GET https://qdrant:6333/points?limit=5&{key}={secret}&x=1 failed")
    assert secret not in redacted and password not in redacted
    if "@" not in secret:  # with an `@`, the URL reads as user:password@host and hides more
        assert f"{key}={MASK}&x=1 failed" in redacted and "limit=5" in redacted
