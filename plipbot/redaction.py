"""One redaction for every place text leaves the process: logs, `plipbot doctor`, error messages.

Connection URLs carry passwords (`redis://:pw@host`, `postgresql+psycopg://u:pw@db/x`,
`http://u:pw@qdrant:6333`), query strings carry keys (`?password=`, `api-key=`, `token=`), and a
password may contain characters that end a URL's authority when unencoded (`#`, `/`, `?`). A parser
such as `urllib.parse.urlsplit` then reads half the password as a path or a fragment and prints it;
so this module does not parse. It takes everything between `scheme://` and the *last* `@` of the
URL as credentials, and every value of a secret-looking key as a secret. It errs towards hiding:
`http://host:8080/users/@me` loses its port and path (there is no way to tell them from a
password), never the other way round.

Known secret values (the Discord token) are replaced wherever they appear, URL or not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

MASK = "***"
"""What a secret becomes."""

REDACTED = "<redacted>"
"""What user content (task arguments, results, exception messages) becomes in logs."""

# A URL runs from its scheme to the first character that cannot be in an unquoted URL in a log
# line (whitespace, quotes, angle brackets); everything else, `#/?@` included, may be in a password.
_URL = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>[^\s'\"<>`]*)")

_HIDDEN_NAMES = (
    r"password|passwd|pwd|pass|secret|client[-_]?secret|api[-_]?key|apikey|access[-_]?key"
    r"|access[-_]?token|auth[-_]?token|refresh[-_]?token|token|credentials?|signature"
)
# `key=value` or `key: value`, in a query string or in prose; the key may end a longer name
# (PLIPBOT_DISCORD__TOKEN=..., x-api-key: ...). The value runs to `&`, whitespace, a quote, `,` or
# `;`, and a final `:`, `.` or `)` is left to the sentence around it.
_KEY_VALUE = re.compile(
    rf"(?P<key>(?<![A-Za-z0-9])(?:[A-Za-z0-9]+[-_.]+)*(?:{_HIDDEN_NAMES})[\"']?\s*[=:]\s*[\"']?)"
    r"(?P<value>[^\s&'\"<>,;]*[^\s&'\"<>,;:.)])",
    re.IGNORECASE,
)
# HTTP authorisation headers: `Bot <token>`, `Bearer <token>`, `Basic <base64>`.
_AUTH_HEADER = re.compile(r"\b(?P<kind>Bot|Bearer|Basic)\s+(?P<value>[A-Za-z0-9._~+/=-]{12,})")

_MIN_SECRET_CHARS = 4
"""Shorter known secrets are not searched for: masking every "pass" would make logs unreadable."""


def _userinfo_spans(text: str) -> Iterator[tuple[int, int]]:
    """The password of every `scheme://user:password@host` (or a token used as the user name)."""
    for match in _URL.finditer(text):
        rest, start = match.group("rest"), match.start("rest")
        at = rest.rfind("@")
        if at <= 0:
            continue
        user, colon, _password = rest[:at].partition(":")
        if colon:
            yield start + len(user) + 1, start + at
        elif "/" not in user:  # `https://discord.com/users/@me` has an `@` in its path, not a user
            yield start, start + at


def _secret_spans(text: str, secrets: Iterable[str]) -> Iterator[tuple[int, int]]:
    yield from _userinfo_spans(text)
    for match in _KEY_VALUE.finditer(text):
        yield match.span("value")
    for match in _AUTH_HEADER.finditer(text):
        yield match.span("value")
    for secret in {s for s in secrets if s and len(s) >= _MIN_SECRET_CHARS}:
        start = text.find(secret)
        while start >= 0:
            yield start, start + len(secret)
            start = text.find(secret, start + 1)


def redact_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every credential in it masked: URL passwords, secret query or key=value values,
    authorisation headers, and each of `secrets` (known values such as the Discord token).

    Every rule marks spans of the original text and the union is masked, so one rule's mask cannot
    hide a secret from another (a `?password=` value holding an `@`, a URL password holding `&pass=`).
    """
    spans = sorted(_secret_spans(text, secrets))
    if not spans:
        return text
    out: list[str] = []
    position = 0
    end = -1
    for start, stop in spans:
        if start > end:  # a new masked region
            if end >= 0:
                out.append(MASK)
            out.append(text[position:start])
            end = stop
        else:
            end = max(end, stop)
        position = end
    out.append(MASK)
    out.append(text[position:])
    return "".join(out)


def redact_url(url: str) -> str:
    """A URL safe to print: its password (or token user name) and secret query values masked."""
    return redact_secrets(url)
