"""One writer per shard manifest: the lock a :class:`~openavs_st.data.store.StoreWriter` holds for its life.

The lock is an exclusive ``flock`` on ``<manifest>.lock`` next to the manifest it guards
(``manifest.jsonl.lock``, ``manifest.shard-i-of-n.jsonl.lock``), so different shards of one store are
written at once while a second writer of the same shard is refused. The holder writes who it is into the
file (``{"pid", "host", "since"}``) for the refusal message. The kernel releases the lock when the
holder's file is closed: by :meth:`WriterLock.release`, when the writer is garbage-collected, or when its
process ends however it ends (a SIGKILL included), so a stale lock file never blocks a rerun. ``flock``
is advisory and per host on some network file systems: run the writers of one shard on one machine.
"""

from __future__ import annotations

import json
import os
import socket
import time
import weakref
from datetime import datetime, timezone
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no locking (one writer per shard is then the user's to ensure)
    fcntl = None  # type: ignore[assignment]

LOCK_SUFFIX = ".lock"


class StoreLockedError(RuntimeError):
    """Another writer holds the lock of this shard of the store; the message names it."""


def lock_path(manifest: Path) -> Path:
    """The lock file of a manifest (``manifest.jsonl`` -> ``manifest.jsonl.lock``)."""
    return manifest.with_name(manifest.name + LOCK_SUFFIX)


class WriterLock:
    """The exclusive lock of one shard manifest, taken on creation (or :class:`StoreLockedError`)."""

    def __init__(self, manifest: Path) -> None:
        self.path = lock_path(manifest)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StoreLockedError(self._refusal(manifest)) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._release = weakref.finalize(self, os.close, fd)

    def release(self) -> None:
        """Give the lock up (idempotent); the lock file stays, naming the last holder."""
        self._release()

    @property
    def held(self) -> bool:
        return self._release.alive

    def _refusal(self, manifest: Path) -> str:
        holder = read_holder(self.path)
        if holder is None:
            who = "another writer"
        else:
            same = holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()
            who = (
                f"another writer (pid {holder.get('pid')} on host {holder.get('host')}, since {holder.get('since')}"
                + (", this process: close that StoreWriter first)" if same else ")")
            )
        return (
            f"{manifest.parent}: {who} is writing {manifest.name} (lock file {self.path}); one writer per shard "
            "manifest: wait for it to finish, or label another shard of the input (shard=i/n)"
        )


def read_holder(path: Path, wait_s: float = 0.5) -> dict | None:
    """Who holds (or last held) a lock file: ``{"pid", "host", "since"}``, or None if it does not say. A holder
    that has just taken the lock may not have written itself yet: read again for up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            holder = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(holder, dict):
                return holder
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
