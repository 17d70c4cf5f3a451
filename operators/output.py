"""OUTPUT: four Delta tables, what is committed, and the consistent snapshot readers use.

    OUTPUT/documents/ tokens/ entities/ sentences/   Delta tables (the product)
    OUTPUT/_corpus_nlp/units/        Delta table: the committed pieces (file identity, row range)
    OUTPUT/_corpus_nlp/run.json      the configuration every row of OUTPUT was made with
    OUTPUT/_corpus_nlp/snapshot.json the table versions of the last consistent state
    OUTPUT/_corpus_nlp/rounds/<n>.json  the round being committed (deleted once it is applied)
    OUTPUT/_corpus_nlp/lock          the run lock (operators/lock.py)
    OUTPUT/_reports/<run id>.json    one report per run

Commit rounds. Actors write their units' data files into the table folders, where no reader sees
them until a commit names them. The driver commits finished units in rounds, numbered upwards:

1. rounds/<n>.json records the round (its data files per table, or the input files whose rows
   it deletes), durably;
2. the `units` table gets the round's pieces (or loses the removed files' pieces) in one Delta
   commit: this is the round's commit point;
3. each data table, documents first, gets the round's files (or loses the removed files' rows by
   `source`) in one Delta commit each, carrying the Delta transaction ("corpus-nlp", n);
4. snapshot.json records every table's version; rounds/<n>.json is deleted.

After a crash, `recover()` (run first by every run, under the lock) finishes a round whose step 2
happened: each data table whose Delta transaction is below n gets the round's commit (deletes are
applied again: they are idempotent, and no later round exists yet). A round whose step 2 did not
happen is dropped; its data files are never named and VACUUM removes them. So a unit's rows are in
every table or in none, exactly once, however the driver dies.

A consistent read: the versions in snapshot.json (operators.query reads them). Reading each table
at its latest version can see a round's documents before its tokens, never the reverse: documents
are committed first.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction

from . import errors, schema
from .storage import Storage, json_bytes
from .units import Coverage, Unit
from .writer import DataFile

STATE = "_corpus_nlp"
APP_ID = "corpus-nlp"  # the Delta transaction id of corpus-nlp's commits
OLD_LAYOUT = ("_manifest", "units")  # per-unit Parquet files and JSON entries (schema version 1)
DATA_TABLES = schema.TABLES  # documents first: see the module doc

FaultHook = Callable[[str], None]


@dataclass
class Committed:
    """What OUTPUT holds: committed row ranges by file identity, and each input path's identity."""

    coverage: Coverage
    identities: dict[str, str]  # path -> identity of the committed file
    units: int


class Output:
    def __init__(self, url: str, fault: FaultHook | None = None):
        self.storage = Storage(url)
        self.url = self.storage.url
        self.fault = fault or (lambda point: None)
        self._round: int | None = None
        self._handles: dict[str, DeltaTable] = {}

    # ---- where things are
    def table_url(self, table: str) -> str:
        return self.storage.url_of(table) if table in DATA_TABLES else self.storage.url_of(STATE, table)

    def table(self, table: str, version: int | None = None) -> DeltaTable:
        """A table at `version`, or at its latest version (a handle kept open and brought up to date:
        on an object store, reading a table's log anew for every commit costs a request per file)."""
        if version is not None:
            return DeltaTable(self.table_url(table), version=version)
        handle = self._handles.get(table)
        if handle is None:
            handle = self._handles[table] = DeltaTable(self.table_url(table))
        else:
            handle.update_incremental()
        return handle

    def exists(self) -> bool:
        return "units" in self._handles or DeltaTable.is_deltatable(self.table_url("units"))

    # ---- the configuration OUTPUT was made with
    def check_layout(self) -> None:
        if self.storage.exists(*OLD_LAYOUT):
            raise errors.output_old_layout(self.url)

    def check_fingerprint(self, fingerprint: dict[str, Any]) -> None:
        found = self.storage.read_json(STATE, "run.json")
        if found is not None and any(found.get(k) != v for k, v in fingerprint.items()):
            raise errors.output_has_other_run(self.url, found, fingerprint)

    def save_fingerprint(self, fingerprint: dict[str, Any]) -> None:
        self.storage.write_json(self.storage.path(STATE, "run.json"), fingerprint)

    def fingerprint(self) -> dict[str, Any] | None:
        return self.storage.read_json(STATE, "run.json")

    # ---- tables
    def create_tables(self, id_type: pa.DataType) -> None:
        """Create the four data tables and `units` if they do not exist yet (empty, version 0)."""
        for table in DATA_TABLES:
            DeltaTable.create(self.table_url(table), schema.table_schema(table, id_type), mode="ignore", name=table)
        DeltaTable.create(self.table_url("units"), schema.UNITS_SCHEMA, mode="ignore", name="corpus_nlp_units")
        if self.snapshot() is None:
            self.write_snapshot(0)

    def id_type(self) -> pa.DataType | None:
        try:
            return pa.schema(self.table("documents").schema().to_arrow()).field("doc_id").type
        except TableNotFoundError:
            return None

    def committed(self) -> Committed:
        if not self.exists():
            return Committed({}, {}, 0)
        rows = pa.table(self.table("units").to_pyarrow_table(columns=["unit", "path", "identity", "row_start", "row_end"]))
        coverage: Coverage = {}
        identities: dict[str, str] = {}
        for unit, path, identity, start, end in zip(*(rows.column(c).to_pylist() for c in rows.column_names)):
            coverage.setdefault(identity, []).append((start, end))
            identities[path] = identity
        return Committed(coverage, identities, len(set(rows.column("unit").to_pylist())))

    # ---- rounds
    def next_round(self) -> int:
        """One more than any round a table has seen (read once, then counted here: one writer)."""
        if self._round is None:
            self._round = max(self._txn(t) for t in (*DATA_TABLES, "units"))
        self._round += 1
        return self._round

    def _txn(self, table: str) -> int:
        try:
            return self.table(table).transaction_version(APP_ID) or 0
        except TableNotFoundError:
            return 0

    def commit_units(self, done: list[tuple[Unit, list[DataFile]]], run_id: str, check: Callable[[], None]) -> int:
        """Commit finished units (their pieces and data files) as one round; its number."""
        n = self.next_round()
        adds: dict[str, list[dict]] = {t: [] for t in DATA_TABLES}
        for _, files in done:
            for f in files:
                adds[f.table].append(f.to_dict())
        record = {"round": n, "kind": "add", "run_id": run_id, "adds": adds}
        self._write_round(record)
        now = _now()
        pieces = [(u.key, p) for u, _ in done for p in u.pieces]
        rows = pa.table(
            {
                "unit": [k for k, _ in pieces],
                "round": [n] * len(pieces),
                "run_id": [run_id] * len(pieces),
                "path": [p.path for _, p in pieces],
                "identity": [p.identity for _, p in pieces],
                "row_start": [p.row_start for _, p in pieces],
                "row_end": [p.row_end for _, p in pieces],
                "committed": [now] * len(pieces),
            },
            schema=schema.UNITS_SCHEMA,
        )
        check()
        self.fault("before_units_commit")
        write_deltalake(self.table("units"), rows, mode="append", commit_properties=self._commit(n, run_id))
        self._apply(n, check, record)
        return n

    def remove_sources(self, paths: Iterable[str], run_id: str, check: Callable[[], None]) -> int | None:
        """Delete every row of these input files from every table, as one round."""
        paths = sorted(set(paths))
        if not paths:
            return None
        n = self.next_round()
        record = {"round": n, "kind": "remove", "run_id": run_id, "sources": paths}
        self._write_round(record)
        check()
        self.table("units").delete(f"path IN ({_sql_list(paths)})", commit_properties=self._commit(n, run_id))
        self._apply(n, check, record)
        return n

    def recover(self, check: Callable[[], None]) -> list[int]:
        """Finish the round a dead run committed (step 2) but did not apply; drop a round it did not
        commit. Returns the rounds finished."""
        finished = []
        units_txn = self._txn("units")
        for path in self.storage.list_files(STATE, "rounds"):
            data = self.storage.read_bytes(path)
            record = json.loads(data) if data else None
            if record is not None and record["round"] <= units_txn:
                self._apply(record["round"], check, record)
                finished.append(record["round"])
            self.storage.delete(path)
        self._round = None
        return finished

    def _apply(self, n: int, check: Callable[[], None], record: dict) -> None:
        for table in DATA_TABLES:
            self.fault(f"before_commit:{table}")
            check()
            commit = self._commit(n, record["run_id"])
            if record["kind"] == "remove":
                self.table(table).delete(f"source IN ({_sql_list(record['sources'])})", commit_properties=commit)
                continue
            dt = self.table(table)
            if (dt.transaction_version(APP_ID) or 0) >= n:
                continue  # applied before a crash
            actions = [AddAction(f["path"], f["size"], {}, f["modification_time"], True, f["stats"]) for f in record["adds"][table]]
            dt.create_write_transaction(actions, mode="append", schema=dt.schema(), commit_properties=commit)
        self.write_snapshot(n)
        self.storage.delete(self.storage.path(STATE, "rounds", f"{n:012d}.json"))

    def _write_round(self, record: dict) -> None:
        self.storage.write_bytes(self.storage.path(STATE, "rounds", f"{record['round']:012d}.json"), json_bytes(record))

    @staticmethod
    def _commit(n: int, run_id: str) -> CommitProperties:
        return CommitProperties(
            app_transactions=[Transaction(APP_ID, n)],
            custom_metadata={"corpus_nlp.round": str(n), "corpus_nlp.run_id": run_id},
        )

    # ---- the consistent snapshot
    def write_snapshot(self, n: int | None = None) -> dict[str, Any]:
        snapshot = {
            "round": n if n is not None else (self.snapshot() or {}).get("round", 0),
            "versions": {t: self.table(t).version() for t in (*DATA_TABLES, "units")},
            "written": _now(),
        }
        self.storage.write_json(self.storage.path(STATE, "snapshot.json"), snapshot)
        return snapshot

    def snapshot(self) -> dict[str, Any] | None:
        return self.storage.read_json(STATE, "snapshot.json")

    # ---- files sized for queries, and old files removed
    def compact(self, target_bytes: int, check: Callable[[], None]) -> dict[str, dict[str, Any]]:
        """Delta OPTIMIZE (bin-packing compaction) of every table to about target_bytes per file.
        Rows do not change (Delta marks these commits dataChange=false)."""
        done = {}
        for table in (*DATA_TABLES, "units"):
            check()
            self.fault(f"before_compact:{table}")
            start = time.perf_counter()
            metrics = self.table(table).optimize.compact(
                target_size=target_bytes,
                commit_properties=CommitProperties(custom_metadata={"corpus_nlp.operation": "compact"}),
            )
            done[table] = {"files_removed": metrics["numFilesRemoved"], "files_added": metrics["numFilesAdded"],
                           "seconds": round(time.perf_counter() - start, 3)}
        self.write_snapshot()
        return done

    def vacuum(self, retention_hours: float) -> int:
        """Delete files no table version within `retention_hours` needs: files replaced by compaction
        or deletes, and data files of attempts that were never committed (killed actors and
        drivers). Time travel reaches back `retention_hours`."""
        removed = 0
        for table in (*DATA_TABLES, "units"):
            removed += len(self.table(table).vacuum(
                retention_hours=int(retention_hours), dry_run=False, enforce_retention_duration=False, full=True,
            ))
        return removed

    def file_counts(self) -> dict[str, int]:
        return {t: len(self.table(t).file_uris()) for t in (*DATA_TABLES, "units")}

    def wipe(self) -> None:
        self._handles.clear()
        for table in DATA_TABLES:
            self.storage.delete_tree(table)
        for part in ("units", "rounds", "run.json", "snapshot.json"):
            self.storage.delete_tree(STATE, part)
        self.storage.delete_tree(*OLD_LAYOUT[:1])


def _sql_list(values: Iterable[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
