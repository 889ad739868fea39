"""A disk cache of LLM responses: one JSON file per request, so a rerun of a labeling job costs nothing.

The key is the SHA-256 of the canonical JSON of everything that determines a response: the model
name, the chat messages, temperature, seed and the output-token limit. The endpoint and the API key
are not part of the key and are never written: a cache directory can be shared or published.

Layout: ``<dir>/<key[:2]>/<key>.json`` (sharded so no directory grows past a few thousand files).
Writes are atomic (a temporary file in the same directory, then ``os.replace``), so a killed job
leaves either a complete entry or none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

log = logging.getLogger(__name__)


def request_key(
    model: str,
    messages: Sequence[Mapping[str, str]],
    temperature: float,
    seed: int | None,
    max_tokens: int,
) -> str:
    """The cache key (64 hex digits) of one chat request."""
    payload = {
        "model": model,
        "messages": [dict(message) for message in messages],
        "temperature": float(temperature),
        "seed": seed,
        "max_tokens": int(max_tokens),
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """JSON-file-per-key response cache under ``directory`` (created on first write)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.directory)!r})"

    def path(self, key: str) -> Path:
        """Where the entry for ``key`` lives."""
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry for ``key`` (with a ``response`` text), or None. An unreadable or foreign
        entry is logged and treated as a miss (it is overwritten by the next :meth:`put`)."""
        path = self.path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable LLM cache entry %s: %s", path, exc)
            return None
        if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("response"), str):
            log.warning("ignoring LLM cache entry %s: not a response entry for this key", path)
            return None
        return entry

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        """Store ``entry`` (JSON-serialisable; ``key`` is added) atomically."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({**entry, "key": key}, ensure_ascii=False, indent=1)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{key[:8]}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
