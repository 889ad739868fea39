"""The one secret policy of openavs-st: nothing a run writes (configs, store records, summaries, logs, a
logger's config or command line) holds a secret.

Replaced by ``***`` before anything is written:

- the value of a key named like a secret (``api_key``, ``OPENAI_API_KEY``, ``secret``, ``password``,
  ``authorization``, ``token``, ``hf_token``, ``access_token``; not ``prompt_tokens``, a count, nor
  ``api_key_env``, the *name* of a variable), in nested configs and in text (``+notes.api_key=...`` on a
  command line or in Hydra's ``overrides.yaml``, ``token: ...`` in YAML, ``"password": "..."`` in JSON);
- values that look like keys wherever they stand: OpenAI ``sk-...``, Hugging Face ``hf_...``, the
  credentials of an ``Authorization: Bearer ...`` / ``Basic ...`` header;
- credentials inside URLs: ``http://user:pass@host/v1`` -> ``http://user:***@host/v1`` (a user part
  alone, ``https://TOKEN@host``, is replaced whole) and query parameters named like a secret
  (``?api_key=...``).

Environment variables remain the way to pass keys: code reads them, nothing writes them.

- :func:`scrub_secrets`: a scrubbed copy of a nested config or record (dicts, lists, strings);
- :func:`scrub_text`: one string (a log line, a command line, a file's text);
- :func:`install_log_scrubbing`: every log record of the process is scrubbed when it is created, so no
  handler (stderr, a log file, a library's own handler added later) sees a secret: httpx logs request
  URLs with their password, and exception texts can quote them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***"

# Key names whose values are secrets; matched at the end of the key (its last dotted part).
SECRET_KEY = re.compile(r"(api[_-]?key|secret|password|passwd|authorization|(^|[_.\-])token)$", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|hf_[A-Za-z0-9]{8,})")
_AUTH_SCHEME = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]{4,}", re.IGNORECASE)
# scheme://userinfo@ : userinfo is "user:password" or a bare token.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#@\"'<>]+)@")
# ?name=value / &name=value in a URL's query.
_QUERY_PARAM = re.compile(r"(?P<lead>[?&])(?P<key>[\w.\-]+)=(?P<value>[^&#\s\"']+)")
# key=value / key: value / "key": "value" in free text (command lines, overrides, YAML, JSON, queries).
_KEY_VALUE = re.compile(
    r"(?P<key>[A-Za-z_][\w.\-]*)(?P<sep>[\"']?\s*[=:]\s*[\"']?)(?P<value>[^\s\"',;&}\]]+)"
)


def is_secret_key(name: Any) -> bool:
    """True for a key named like a secret (``api_key``, ``llm.token``, ``OPENAI_API_KEY`` ...)."""
    return bool(SECRET_KEY.search(str(name)))


def _url_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    return f"{match['scheme']}{user}:{REDACTED}@" if colon else f"{match['scheme']}{REDACTED}@"


def _key_value(match: re.Match[str]) -> str:
    if not is_secret_key(match["key"]) or match["value"] == REDACTED:
        return match[0]
    groups = match.groupdict()
    return f"{groups.get('lead', '')}{match['key']}{groups.get('sep', '=')}{REDACTED}"


def scrub_text(text: str) -> str:
    """``text`` with every secret of the policy (module docstring) replaced by ``***``."""
    if not text:
        return text
    text = _URL_USERINFO.sub(_url_userinfo, text)
    text = _QUERY_PARAM.sub(_key_value, text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m[1]} {REDACTED}", text)
    text = _KEY_VALUE.sub(_key_value, text)
    return _SECRET_VALUE.sub(REDACTED, text)


def scrub_secrets(obj: Any) -> Any:
    """A copy of a nested config/record (mappings, lists, tuples, strings) with the values of secret-like
    keys replaced by ``"***"`` (empty ones kept, so an unset key still reads as unset) and every string
    passed through :func:`scrub_text`."""
    if isinstance(obj, Mapping):
        return {k: (REDACTED if is_secret_key(k) and v else scrub_secrets(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_secrets(v) for v in obj]
    if isinstance(obj, str):
        return scrub_text(obj)
    return obj


_base_factory: Any = None


def _scrubbing_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is logging's to report, when it is emitted
        return record
    clean = scrub_text(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = scrub_text(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub_text(record.stack_info)
    return record


def install_log_scrubbing() -> None:
    """Scrub every log record of this process (its message, arguments and exception text) as it is created,
    whatever logger, level or handler (idempotent). Entry points call it before they log anything."""
    global _base_factory
    if _base_factory is None:
        _base_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_scrubbing_factory)
