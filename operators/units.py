"""Units of work, cut by text size whatever the input's layout, and the read tasks that feed them.

A *unit* is the granularity of work, retry and commit: consecutive row ranges (*pieces*) of one or
more input files, about `target` bytes of text in all. A row group far larger than a unit is cut
into many units; many small files or row groups are packed into one. Sizes are guided: each unit
takes a share of the text still to do (remaining / (actors x GUIDE)), between MIN_UNIT_BYTES and
the configured maximum, so units shrink towards the end of a run and no actor idles through a
long last unit while the others wait.

A unit's key hashes its pieces (file identity + row range) and the run's fingerprint, so a
retried unit writes under the same key. What a run does is planned from what OUTPUT has
committed (its *coverage*: the committed pieces): only uncovered rows become units, so a resumed
or nightly run never annotates a row twice, whatever unit sizes an earlier run used.

A *read task* reads each input row group it needs once and emits its units, in order, as Arrow
tables (one table per unit): a row group shared by several units is read by one task, never once
per unit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .inputs import InputFile, normalize

UNIT_COLUMN = "_unit"  # the unit's descriptor (JSON), in the one-row-per-unit blocks read tasks emit
SOURCE_COLUMN = "source"  # the input file each row comes from
MIN_UNIT_BYTES = 64 * 1024  # below this, a unit's fixed cost (a task, four files) outweighs its work
GUIDE = 2  # a unit takes at most 1 / (actors x GUIDE) of the text still to do
READ_BATCH_ROWS = 4096  # rows per Parquet batch while reading: bounds a read task's memory
SPLIT_ABOVE = 1.5  # a unit whose actual text exceeds its estimate this many times is split while read


@dataclass(frozen=True)
class Piece:
    path: str
    identity: str
    row_start: int  # rows of the file, end excluded
    row_end: int

    @property
    def rows(self) -> int:
        return self.row_end - self.row_start


@dataclass(frozen=True)
class Unit:
    key: str
    pieces: tuple[Piece, ...]
    text_bytes: int  # estimated from the row groups' sizes (actual, once read)
    target_bytes: int = 0  # the size it was cut to: a unit can fall short of it at a file's end

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.pieces)

    @property
    def paths(self) -> list[str]:
        return sorted({p.path for p in self.pieces})


@dataclass(frozen=True)
class ReadTask:
    units: tuple[Unit, ...]
    row_groups: tuple[tuple[str, int], ...]  # (path, row group): what the task reads, each once
    stored_bytes: int  # compressed bytes of the id and text columns it reads


Coverage = dict[str, list[tuple[int, int]]]  # file identity -> committed row ranges


def unit_key(pieces: Iterable[Piece], fingerprint: str) -> str:
    h = hashlib.sha256(fingerprint.encode())
    for p in pieces:
        h.update(json.dumps([p.identity, p.row_start, p.row_end]).encode())
    return h.hexdigest()[:24]


def uncovered(rows: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The row ranges of [0, rows) that no committed range covers."""
    gaps, pos = [], 0
    for start, end in sorted(covered):
        if start > pos:
            gaps.append((pos, min(start, rows)))
        pos = max(pos, end)
    if pos < rows:
        gaps.append((pos, rows))
    return [(a, b) for a, b in gaps if b > a]


def todo_bytes(files: list[InputFile], coverage: Coverage) -> int:
    return sum(_range_bytes(f, a, b) for f in files for a, b in uncovered(f.rows, coverage.get(f.identity, [])))


def cut_units(files: list[InputFile], coverage: Coverage, fingerprint: str, *, actors: int, max_unit_bytes: int) -> list[Unit]:
    """Cut every uncovered row of `files` into units (in file and row order; see module doc)."""
    remaining = todo_bytes(files, coverage)
    units: list[Unit] = []
    pieces: list[Piece] = []
    size = 0.0
    target = _target(remaining, actors, max_unit_bytes)

    def close() -> None:
        nonlocal pieces, size, remaining, target
        if pieces:
            units.append(Unit(unit_key(pieces, fingerprint), tuple(pieces), int(size), target))
            remaining -= int(size)
            target = _target(remaining, actors, max_unit_bytes)
        pieces, size = [], 0.0

    for f in files:
        starts = _group_starts(f)
        for start, end in uncovered(f.rows, coverage.get(f.identity, [])):
            pos = start
            while pos < end:
                g = _group_of(starts, pos)
                group_end = min(end, starts[g] + f.row_groups[g].rows)
                per_row = f.row_groups[g].text_bytes / max(1, f.row_groups[g].rows)
                take = group_end - pos
                if size + take * per_row > target:
                    take = max(1, int((target - size) / per_row)) if per_row > 0 else take
                    take = min(take, group_end - pos)
                if pieces and pieces[-1].path == f.path and pieces[-1].row_end == pos:
                    pieces[-1] = Piece(f.path, f.identity, pieces[-1].row_start, pos + take)
                else:
                    pieces.append(Piece(f.path, f.identity, pos, pos + take))
                size += take * per_row
                pos += take
                if size >= target:
                    close()
    close()
    return units


def plan_read_tasks(units: list[Unit], files: list[InputFile]) -> list[ReadTask]:
    """Group consecutive units that share a row group into one read task (and no others)."""
    by_path = {f.path: f for f in files}
    tasks: list[ReadTask] = []
    current: list[Unit] = []
    groups: list[tuple[str, int]] = []
    for unit in units:
        touched = [(p.path, g) for p in unit.pieces for g in _groups_of_range(by_path[p.path], p.row_start, p.row_end)]
        if current and touched[0] != groups[-1]:
            tasks.append(_read_task(current, groups, by_path))
            current, groups = [], []
        current.append(unit)
        groups.extend(g for g in touched if not groups or g != groups[-1])
    if current:
        tasks.append(_read_task(current, groups, by_path))
    return tasks


def _read_task(units: list[Unit], groups: list[tuple[str, int]], by_path: dict[str, InputFile]) -> ReadTask:
    stored = sum(by_path[path].row_groups[g].stored_bytes for path, g in groups)
    return ReadTask(tuple(units), tuple(groups), stored)


def read_units(task: ReadTask, text_column: str, id_column: str, id_type: pa.DataType, fingerprint: str) -> Iterator[pa.Table]:
    """The task's units, in order, each as a one-row Arrow table (_unit: its JSON; id, text, source:
    its rows as lists); each row group the task needs is read once, a batch at a time.

    Planned sizes are estimates (a dictionary-encoded text column of repeated texts looks smaller
    in the footer than it is), so a unit whose actual text outgrows SPLIT_ABOVE times its estimate
    is split here, by actual bytes. `_unit` holds the JSON of the unit actually emitted (its key and
    pieces, and the planned unit it belongs to)."""
    reader = _Cursor(text_column, id_column, id_type)
    try:
        for unit in task.units:
            limit = max(unit.text_bytes, unit.target_bytes, 1) * SPLIT_ABOVE
            parts: list[pa.Table] = []
            pieces: list[Piece] = []
            size = 0
            for piece in unit.pieces:
                for first, part in reader.rows(piece):
                    while part.num_rows:
                        sizes = pc.fill_null(pc.binary_length(part.column(text_column)), 0).to_numpy(zero_copy_only=False)
                        fits = int(np.searchsorted(np.cumsum(sizes), limit - size, side="left")) + 1
                        take = min(part.num_rows, max(1, fits))
                        parts.append(part.slice(0, take))
                        _extend(pieces, Piece(piece.path, piece.identity, first, first + take))
                        size += int(sizes[:take].sum())
                        part, first = part.slice(take), first + take
                        if size >= limit:
                            yield _unit_table(parts, pieces, unit, fingerprint, text_column)
                            parts, pieces, size = [], [], 0
            if parts:
                yield _unit_table(parts, pieces, unit, fingerprint, text_column)
    finally:
        reader.close()


def _extend(pieces: list[Piece], piece: Piece) -> None:
    last = pieces[-1] if pieces else None
    if last and last.path == piece.path and last.row_end == piece.row_start:
        pieces[-1] = Piece(last.path, last.identity, last.row_start, piece.row_end)
    else:
        pieces.append(piece)


def _unit_table(parts: list[pa.Table], pieces: list[Piece], planned: Unit, fingerprint: str, text_column: str) -> pa.Table:
    """One row holding the whole unit: its descriptor and its rows as lists (a row is never split)."""
    table = pa.concat_tables(parts).combine_chunks()
    text_bytes = pc.sum(pc.binary_length(table.column(text_column))).as_py() or 0
    emitted = Unit(unit_key(pieces, fingerprint), tuple(pieces), int(text_bytes))
    descriptor = json.dumps(unit_to_dict(emitted) | {"planned": planned.key})
    sources = pa.array([p.path for p in pieces for _ in range(p.rows)], pa.string())
    offsets = pa.array([0, table.num_rows], pa.int32())
    return pa.table({
        UNIT_COLUMN: [descriptor],
        **{name: pa.ListArray.from_arrays(offsets, table.column(name).chunk(0)) for name in table.column_names},
        SOURCE_COLUMN: pa.ListArray.from_arrays(offsets, sources),
    })


def unit_rows(block: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """(descriptor, rows) of each unit in a block of one-row units (what read_units emits)."""
    names = [n for n in block.column_names if n != UNIT_COLUMN]
    for i in range(block.num_rows):
        row = block.slice(i, 1)
        yield row.column(UNIT_COLUMN)[0].as_py(), pa.table({n: pc.list_flatten(row.column(n)) for n in names})


def unit_to_dict(unit: Unit) -> dict:
    return {"key": unit.key, "text_bytes": unit.text_bytes,
            "pieces": [[p.path, p.identity, p.row_start, p.row_end] for p in unit.pieces]}


def unit_from_dict(value: dict) -> Unit:
    return Unit(value["key"], tuple(Piece(*p) for p in value["pieces"]), value["text_bytes"])


@dataclass
class _Cursor:
    """Reads a file's row groups forward only, one batch at a time, and hands out row ranges."""

    text_column: str
    id_column: str
    id_type: pa.DataType
    reads: list[tuple[str, int]] = field(default_factory=list)  # (path, row group), in read order
    _path: str | None = None
    _handle: object = None
    _file: pq.ParquetFile | None = None
    _starts: list[int] = field(default_factory=list)
    _group: int = -1
    _batches: Iterator[pa.RecordBatch] | None = None
    _batch: pa.Table | None = None
    _batch_start: int = 0

    def rows(self, piece: Piece) -> Iterator[tuple[int, pa.Table]]:
        """(first row, rows) slices covering the piece, in order."""
        self._open(piece.path)
        pos = piece.row_start
        while pos < piece.row_end:
            if self._batch is None or pos >= self._batch_start + self._batch.num_rows:
                self._advance(pos)
                continue
            if pos < self._batch_start:
                raise RuntimeError(f"rows {pos}.. of {piece.path} were asked for after the cursor passed them")
            end = min(piece.row_end, self._batch_start + self._batch.num_rows)
            yield pos, self._batch.slice(pos - self._batch_start, end - pos)
            pos = end

    def _open(self, path: str) -> None:
        if path == self._path:
            return
        self.close()
        self._handle = fsspec.open(path, "rb").open()
        self._file = pq.ParquetFile(self._handle, pre_buffer=False)
        meta = self._file.metadata
        self._starts = [0]
        for g in range(meta.num_row_groups):
            self._starts.append(self._starts[-1] + meta.row_group(g).num_rows)
        self._path, self._group, self._batches, self._batch = path, -1, None, None

    def _advance(self, pos: int) -> None:
        """Next batch of the current row group, or the row group holding `pos` (groups before it
        that hold no wanted row are never read)."""
        assert self._file is not None and self._path is not None
        if self._batches is not None and pos < self._starts[self._group + 1]:
            try:
                batch = next(self._batches)
                self._batch_start += 0 if self._batch is None else self._batch.num_rows
                self._batch = normalize(pa.Table.from_batches([batch]), self.text_column, self.id_column, self.id_type)
                return
            except StopIteration:
                pass
        group = _group_of(self._starts, pos)
        if group <= self._group:
            raise RuntimeError(f"row group {group} of {self._path} would be read twice")
        self._group = group
        self.reads.append((self._path, group))
        self._batches = self._file.iter_batches(
            batch_size=READ_BATCH_ROWS, row_groups=[group], columns=[self.id_column, self.text_column]
        )
        self._batch, self._batch_start = None, self._starts[group]
        batch = next(self._batches)
        self._batch = normalize(pa.Table.from_batches([batch]), self.text_column, self.id_column, self.id_type)

    def empty(self) -> pa.Table:
        return pa.table({self.id_column: pa.array([], self.id_type), self.text_column: pa.array([], pa.large_string())})

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle = self._file = self._path = None


def _target(remaining: int, actors: int, max_unit_bytes: int) -> int:
    return max(1, min(max_unit_bytes, max(MIN_UNIT_BYTES, remaining // max(1, actors * GUIDE))))


def _group_starts(f: InputFile) -> tuple[int, ...]:
    return f.starts


def _group_of(starts: tuple[int, ...] | list[int], row: int) -> int:
    """Index of the row group holding `row` (starts: cumulative row counts, 0 first)."""
    lo, hi = 0, len(starts) - 2
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= row:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _groups_of_range(f: InputFile, start: int, end: int) -> list[int]:
    starts = _group_starts(f)
    return list(range(_group_of(starts, start), _group_of(starts, end - 1) + 1))


def _range_bytes(f: InputFile, start: int, end: int) -> int:
    starts = _group_starts(f)
    total = 0.0
    for g in _groups_of_range(f, start, end):
        overlap = min(end, starts[g + 1]) - max(start, starts[g])
        total += overlap * f.row_groups[g].text_bytes / max(1, f.row_groups[g].rows)
    return int(total)
