"""One writer per OUTPUT: a lock that is also a fence.

    OUTPUT/_corpus_nlp/lock    JSON: run id, host, pid, heartbeat (epoch seconds)

The run that creates the lock (exclusive create: O_EXCL on a local disk, If-None-Match on S3)
holds it and refreshes its heartbeat every HEARTBEAT_S, always as a compare-and-swap on the
version it created or last wrote (the file's inode on a local disk, the object's ETag on S3), so a
run that lost its lock can never refresh, and never recreate, the lock of the run that took it.

A lock is stale, and is taken over, when its holder's process is gone (same host) or its
heartbeat is older than `stale_after_s`; `--break-lock` takes any lock. Taking over is itself a
compare-and-swap on the stale version, so of two runs that find the same stale lock one wins.

Fencing: the committer calls `check()` before every commit. A run whose lock was taken over (or
removed) finds another version there, raises LockLost and commits nothing more. What remains is
the time between one check and the commit that follows it (milliseconds, against the minutes a
takeover waits for): the lock cannot close that window on any store, and Delta's own optimistic
commit protocol (a log entry is created exclusively) keeps the tables consistent even then.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from typing import Any

from . import errors
from .storage import PreconditionFailed, Storage, Version

HEARTBEAT_S = 15.0
STALE_AFTER_S = 600.0
ACQUIRE_ATTEMPTS = 5  # looks at a lock that keeps changing under a take-over before giving up
LOCK = ("_corpus_nlp", "lock")


class LockLost(errors.OutputError):
    """This run's lock was taken over or removed: it must not commit."""


class RunLock:
    def __init__(self, storage: Storage, run_id: str, stale_after_s: float = STALE_AFTER_S, heartbeat_s: float = HEARTBEAT_S):
        self.storage = storage
        self.path = storage.path(*LOCK)
        self.run_id = run_id
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.version: Version | None = None
        self.lost: str | None = None  # why, once the heartbeat found the lock gone
        self._stop = threading.Event()
        # the heartbeat's conditional write and the version it returns are one step for check():
        # between them an object store already shows the new version while self.version is the old
        self._beating = threading.Lock()
        self._thread: threading.Thread | None = None

    def record(self) -> bytes:
        return json.dumps({"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}).encode()

    def acquire(self, break_lock: bool = False) -> None:
        """Create the lock, or take it over from a holder that is stale (or any, with `break_lock`).
        A take-over is a compare-and-swap on the version just read: a holder's heartbeat or another
        run's take-over in between makes it fail, and the lock is looked at again (a live holder's
        heartbeat makes it not stale; `break_lock` tries again), a few times at most."""
        for _ in range(ACQUIRE_ATTEMPTS):
            self.version = self.storage.create_exclusive(self.path, self.record())
            if self.version is not None:
                break
            holder, version = self.holder()
            if version is None:  # released between our two looks
                continue
            if not (break_lock or self.is_stale(holder)):
                break
            try:
                self.version = self.storage.take_over(self.path, self.record(), version)
                break
            except PreconditionFailed:  # the holder beat, or another run took it over, in between
                continue
        if self.version is None:
            raise errors.output_locked(self.storage.url, self.holder()[0])
        self._thread = threading.Thread(target=self._beat, name="corpus-nlp-lock", daemon=True)
        self._thread.start()

    def holder(self) -> tuple[dict[str, Any], Version | None]:
        """The lock's record (with its heartbeat's age) and version; ({}, None) if there is none."""
        version = self.storage.version(self.path)
        data = self.storage.read_bytes(self.path)
        if data is None:
            return {}, None
        try:
            holder = json.loads(data)
        except ValueError:
            holder = {}  # a lock being written right now: judged by its age like any other
        holder["heartbeat_age_s"] = round(time.time() - float(holder.get("heartbeat", 0)), 1)
        return holder, version

    def is_stale(self, holder: dict[str, Any]) -> bool:
        """Stale: the holder's process is gone (same host), or its heartbeat is too old. A process
        that exists but belongs to another user (PermissionError) is alive as far as the pid goes,
        and is still judged by its heartbeat."""
        if holder.get("host") == socket.gethostname() and holder.get("pid"):
            try:
                os.kill(int(holder["pid"]), 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
        return float(holder.get("heartbeat_age_s", 0)) > self.stale_after_s

    def check(self) -> None:
        """The fence: raise LockLost unless the lock is still the one this run holds."""
        with self._beating:
            if self.lost is None and self.version is not None and self.storage.version(self.path) != self.version:
                self.lost = "another run took OUTPUT's lock over (or it was removed)"
        if self.lost is not None:
            holder = self.holder()[0]
            raise LockLost(
                f"this run lost OUTPUT's lock ({self.lost}; now held by run {holder.get('run_id')} on "
                f"{holder.get('host')}): it stopped committing. Nothing half-done is visible; the run that holds "
                "the lock (or a later --resume) finishes the work."
            )

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._beating:
                try:
                    assert self.version is not None
                    self.version = self.storage.replace_if(self.path, self.record(), self.version)
                except PreconditionFailed:
                    self.lost = "another run took OUTPUT's lock over (or it was removed)"
                    return

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        if self.version is not None and self.lost is None:
            self.storage.delete_if(self.path, self.version)
        self.version = None
