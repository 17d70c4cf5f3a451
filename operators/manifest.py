"""OUTPUT's bookkeeping: the run fingerprint, the per-unit manifest, the run lock, the reports.

    OUTPUT/_manifest/run.json            fingerprint every unit of this OUTPUT was made with
    OUTPUT/_manifest/units/<key>.json    one per committed unit: input identity, files, counts
    OUTPUT/_lock                         held by the run writing OUTPUT (JSON: run id, host, pid)
    OUTPUT/_reports/<run id>.json        one report per run

A unit is done exactly when its manifest entry exists. Entries are written under a temporary
name, flushed to disk and renamed, so an entry is either absent or complete.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

import pyarrow.fs as pafs

from . import errors, schema
from .config import FINGERPRINT_DEFAULTS
from .writer import output_filesystem, unit_relpaths

HEARTBEAT_S = 15.0


class OutputStore:
    def __init__(self, output: str):
        self.output = output
        self.fs, self.root = output_filesystem(output)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    # ---- paths
    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def unit_files(self, key: str) -> dict[str, str]:
        return {table: self.path(rel) for table, rel in unit_relpaths(key).items()}

    # ---- small JSON files, written atomically
    def write_json(self, path: str, value: Any) -> None:
        data = (json.dumps(value, indent=1, sort_keys=True, default=str) + "\n").encode()
        folder = path.rsplit("/", 1)[0]
        self.fs.create_dir(folder, recursive=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        if self.local:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the rename itself survives a crash
            finally:
                os.close(dir_fd)
        else:
            with self.fs.open_output_stream(tmp) as handle:
                handle.write(data)
            self.fs.move(tmp, path)

    def read_json(self, path: str) -> Any | None:
        try:
            with self.fs.open_input_stream(path) as handle:
                return json.loads(handle.read())
        except FileNotFoundError:
            return None

    def delete(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            pass

    def list(self, folder: str) -> list[str]:
        selector = pafs.FileSelector(self.path(folder), allow_not_found=True)
        return [info.path for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.File]

    # ---- fingerprint
    def check_fingerprint(self, fingerprint: dict[str, Any]) -> None:
        """Refuse an OUTPUT made with another model, schema version or output-changing option."""
        found = self.read_json(self.path("_manifest", "run.json"))
        if found is None:
            return
        have, want = {**FINGERPRINT_DEFAULTS, **found}, {**FINGERPRINT_DEFAULTS, **fingerprint}
        if any(have.get(k) != v for k, v in want.items()):
            raise errors.output_has_other_run(self.output, have, want)

    def save_fingerprint(self, fingerprint: dict[str, Any]) -> None:
        self.write_json(self.path("_manifest", "run.json"), fingerprint)

    # ---- units
    def committed(self) -> dict[str, dict[str, Any]]:
        entries = {}
        for path in self.list("_manifest/units"):
            if path.endswith(".json"):
                entry = self.read_json(path)
                entries[entry["key"]] = entry
        return entries

    def commit(self, entry: dict[str, Any]) -> None:
        self.write_json(self.path("_manifest", "units", f"{entry['key']}.json"), entry)

    def remove_unit(self, key: str) -> None:
        """Files first, then the entry: a crash in between leaves an entry whose files are gone,
        which the next run removes again, never files that no entry accounts for."""
        for path in self.unit_files(key).values():
            self.delete(path)
        self.delete(self.path("_manifest", "units", f"{key}.json"))

    def remove_orphans(self, keep: set[str]) -> list[str]:
        """Delete temporary files and unit files that no entry or planned unit accounts for."""
        removed = []
        for table in schema.TABLES:
            for path in self.list(table):
                name = path.rsplit("/", 1)[-1]
                key = name[len("part-") :].split(".", 1)[0] if name.startswith("part-") else None
                if ".tmp-" in name or key not in keep:
                    self.delete(path)
                    removed.append(path)
        return removed

    def wipe(self) -> None:
        for folder in (*schema.TABLES, "_manifest"):
            self.fs.delete_dir_contents(self.path(folder), missing_dir_ok=True)


def committed_files(output: str, table: str) -> list[str]:
    """The table's files of committed units only: what a reader that must never see an
    uncommitted unit passes to pl.scan_parquet (the glob also shows units in flight)."""
    store = OutputStore(output)
    base = output.rstrip("/")
    return sorted(f"{base}/{e['files'][table]}" for e in store.committed().values() if table in e.get("files", {}))


class RunLock:
    """One run per OUTPUT. The holder refreshes a heartbeat; a lock is stale when its process is
    gone (same host) or its heartbeat is older than `stale_after_s`, and a stale lock is taken over."""

    def __init__(self, store: OutputStore, run_id: str, stale_after_s: float = 600.0):
        self.store = store
        self.path = store.path("_lock")
        self.run_id = run_id
        self.stale_after_s = stale_after_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}

    def acquire(self, break_lock: bool = False) -> None:
        self.store.fs.create_dir(self.store.root, recursive=True)
        if not self._create_exclusive():
            holder = self.store.read_json(self.path) or {}
            holder["heartbeat_age_s"] = round(time.time() - float(holder.get("heartbeat", 0)), 1)
            if not (break_lock or self._is_stale(holder)):
                raise errors.output_locked(self.store.output, holder)
            self.store.delete(self.path)
            if not self._create_exclusive():
                raise errors.output_locked(self.store.output, self.store.read_json(self.path) or {})
        self._thread = threading.Thread(target=self._beat, name="corpus-nlp-lock", daemon=True)
        self._thread.start()

    def _create_exclusive(self) -> bool:
        data = json.dumps(self._record()).encode()
        if self.store.local:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            return True
        # object stores have no exclusive create: check, write, read back (documented as best effort)
        if self.store.read_json(self.path) is not None:
            return False
        self.store.write_json(self.path, self._record())
        return (self.store.read_json(self.path) or {}).get("run_id") == self.run_id

    def _is_stale(self, holder: dict[str, Any]) -> bool:
        if holder.get("host") == socket.gethostname() and holder.get("pid"):
            try:
                os.kill(int(holder["pid"]), 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return holder.get("heartbeat_age_s", 0) > self.stale_after_s

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.store.write_json(self.path, self._record())

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        holder = self.store.read_json(self.path) or {}
        if holder.get("run_id") == self.run_id:
            self.store.delete(self.path)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
