"""Secrets and their masking: a try's log, URLs, error messages and tracebacks.

A running try's secrets (connection passwords, sensitive variables) are masked
in its log (`collecting`, `redact`); every URL any face shows goes through
`mask_url`, and every error text shown to users (import errors) through
`mask_text`.
"""

from __future__ import annotations

import contextvars
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

#: parts of a variable, connection-extra or field name that make its value a secret,
#: matched case-insensitively anywhere in the name (Airflow's default sensitive names)
SENSITIVE_NAMES = (
    "access_token",
    "api_key",
    "apikey",
    "authorization",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "secret",
    "token",
    "keyfile_dict",
    "service_account",
)

_secrets: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("herald_secrets", default=None)


def is_sensitive(name: str) -> bool:
    """True when a variable or field name says its value is a secret."""
    lowered = name.lower()
    return any(word in lowered for word in SENSITIVE_NAMES)


def mask_secret(value: object) -> None:
    """Remember a secret of the running try, to mask it in the try's log."""
    found = _secrets.get()
    if found is not None and isinstance(value, str) and len(value) >= 3:
        found.add(value)


@contextmanager
def collecting() -> Iterator[set[str]]:
    """Collect the secrets a try reads (used by the worker around one try)."""
    found: set[str] = set()
    token = _secrets.set(found)
    try:
        yield found
    finally:
        _secrets.reset(token)


def redact(text: str, secrets: set[str]) -> str:
    """Replace every secret in `text` by ***, longest first."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


#: a URL in free text (an error message, a traceback line): scheme://, then up to a space or a quote
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")
#: a sensitive name given a quoted value in code or JSON: `password="x"`, `"token": 'x'`, `secret = "x"`
_ASSIGNED = re.compile(r"""(?P<name>["']?\b\w+["']?\s*[:=]\s*)(?P<quote>["'])(?P<value>[^"'\n]*)(?P=quote)""")
#: the environment variables connections and variables are read from (Herald's and Airflow's)
_CONNECTION_PREFIXES = ("HERALD_CONN_", "AIRFLOW_CONN_")
_VARIABLE_PREFIXES = ("HERALD_VAR_", "AIRFLOW_VAR_")


def mask_url(url: str) -> str:
    """`url` with its password and its sensitive query options replaced by `***`.

    The one masking of a URL for every face (watchers' `describe()`, dead letters,
    import errors, `herald publish`, logs): `redis://u:***@h/0?password=***`. The
    userinfo is masked on the netloc's text, so a list of hosts
    (`kafka://u:p@k1:9092,k2:9092/t`) is masked too; a query option is masked when
    `is_sensitive` says its name is a secret (`password`, `sasl_password`, `token`,
    `aws_secret_access_key`...). The rest of the URL is kept as written.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return _mask_query_text(url)
    netloc = parts.netloc
    credentials, at, hosts = netloc.rpartition("@")
    if at and ":" in credentials:
        netloc = f"{credentials.partition(':')[0]}:***@{hosts}"
    query = _mask_query_text(parts.query) if parts.query else parts.query
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _mask_query_text(query: str) -> str:
    """`a=1&password=x` -> `a=1&password=***`, each option kept as written unless its name is a secret."""
    out = []
    for option in re.split(r"([&;?])", query):
        name, eq, _value = option.partition("=")
        out.append(f"{name}=***" if eq and is_sensitive(unquote(name)) else option)
    return "".join(out)


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` (an error message, a traceback) with its secrets replaced by `***`.

    Every URL in it is masked (`mask_url`), a sensitive name given a quoted value
    (`password="x"` in a traceback's source line) shows `***`, and each of `secrets`
    (values known to be secret: `environment_secrets`, sensitive variables) is
    replaced wherever it appears.
    """
    text = redact(text, {s for s in secrets if len(s) >= 3})
    text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)

    def assigned(match: re.Match[str]) -> str:
        if not is_sensitive(match.group("name")) or not match.group("value"):
            return match.group(0)
        return f"{match.group('name')}{match.group('quote')}***{match.group('quote')}"

    return _ASSIGNED.sub(assigned, text)


def environment_secrets(environ: Mapping[str, str] | None = None) -> set[str]:
    """The secrets this process's environment holds, to mask wherever they might be shown.

    The values of sensitive variables (`HERALD_VAR_<KEY>`, `AIRFLOW_VAR_<KEY>` with a
    sensitive key) and of connections (`HERALD_CONN_<ID>`, `AIRFLOW_CONN_<ID>`): the
    password and the sensitive options of the URI form, or the password and sensitive
    extras of the JSON form.
    """
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in env.items():
        upper = name.upper()
        if upper.startswith(_VARIABLE_PREFIXES) and is_sensitive(upper.split("_VAR_", 1)[1]):
            found.add(value)
        elif upper.startswith(_CONNECTION_PREFIXES):
            found |= _connection_secrets(value.strip())
    return {s for s in found if len(s) >= 3}


def url_secrets(url: str) -> set[str]:
    """The secrets a URL holds (its password, its sensitive options), to mask them in an error about it."""
    return {s for s in _connection_secrets(url) if len(s) >= 3}


def _connection_secrets(value: str) -> set[str]:
    found: set[str] = set()
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except ValueError:
            return found
        if not isinstance(data, dict):
            return found
        extra = data.get("extra")
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except ValueError:
                extra = None
        fields = {**(extra if isinstance(extra, dict) else {}), "password": data.get("password")}
        return {str(v) for k, v in fields.items() if is_sensitive(str(k)) and isinstance(v, str | int) and v != ""}
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return found
    if password:
        found |= {password, unquote(password)}
    for key, option in parse_qsl(parts.query, keep_blank_values=True):
        if is_sensitive(key) and option:
            found.add(option)
    return found


def mask_fields(value: Any) -> Any:
    """A JSON-like value (a trigger's `describe()`) with secrets masked, whatever the trigger wrote.

    A field whose name is sensitive shows `***`, every string holding a URL is masked
    (`mask_url`): so a user-written trigger that describes itself with its raw URL leaks
    nothing either.
    """
    if isinstance(value, dict):
        return {k: "***" if is_sensitive(str(k)) and v not in (None, "") else mask_fields(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_fields(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return mask_text(value)
    return value
