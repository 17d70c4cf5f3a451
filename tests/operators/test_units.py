import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators import units as units_module
from operators.inputs import read_corpus
from operators.units import (
    MIN_UNIT_BYTES,
    UNIT_COLUMN,
    cut_units,
    plan_read_tasks,
    read_units,
    uncovered,
    unit_from_dict,
    unit_rows,
)

FP = '{"model": "m"}'


def write(path, n_rows, group, start=0, text_len=40):
    """Unique texts of about text_len characters (so footers estimate their size well)."""
    texts = [f"text {start + i:08d} " + "x" * (text_len - 14) for i in range(n_rows)]
    table = pa.table({"id": list(range(start, start + n_rows)), "text": texts})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=group, use_dictionary=False)
    return str(path)


def read_all(tasks, corpus):
    """Each unit's rows as a table, its descriptor in the column _unit (as read tasks hand them on)."""
    tables = []
    for task in tasks:
        for block in read_units(task, "text", "id", corpus.id_type, FP):
            assert block.num_rows == 1  # one row: one unit, never split by Ray Data
            ((descriptor, rows),) = unit_rows(block)
            tables.append(rows.append_column(UNIT_COLUMN, pa.array([descriptor] * rows.num_rows)))
    return tables


def test_one_huge_row_group_is_cut_into_many_units_read_once(tmp_path, monkeypatch):
    write(tmp_path / "a.parquet", 2_000, 2_000)  # one row group, ~80 KB of text
    corpus = read_corpus(str(tmp_path), "text", "id")
    units = cut_units(corpus.files, {}, FP, actors=2, max_unit_bytes=8_000)
    assert len(units) >= 10 and sum(u.rows for u in units) == 2_000
    tasks = plan_read_tasks(units, corpus.files)
    assert len(tasks) == 1 and tasks[0].row_groups == ((corpus.files[0].path, 0),)  # shared: one task reads it
    reads = []
    original = pq.ParquetFile.iter_batches

    def counting(self, *args, row_groups=None, **kwargs):
        reads.extend(row_groups)
        return original(self, *args, row_groups=row_groups, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting)
    tables = read_all(tasks, corpus)
    assert reads == [0]  # the row group was read once for all its units
    ids = [i for t in tables for i in t.column("id").to_pylist()]
    assert ids == list(range(2_000))
    assert [json.loads(t.column(UNIT_COLUMN)[0].as_py())["key"] for t in tables] == [u.key for u in units]


def test_many_small_files_are_packed_into_few_units(tmp_path):
    for f in range(200):
        write(tmp_path / f"f{f:03d}.parquet", 1, 1, start=f)
    corpus = read_corpus(str(tmp_path), "text", "id")
    units = cut_units(corpus.files, {}, FP, actors=2, max_unit_bytes=4_000_000)
    assert len(units) == 1 and len(units[0].pieces) == 200  # 200 one-row files, 8 KB of text: one unit
    tables = read_all(plan_read_tasks(units, corpus.files), corpus)
    assert sorted(tables[0].column("id").to_pylist()) == list(range(200))
    assert tables[0].column("source").to_pylist() == [f.path for f in corpus.files]


def test_guided_sizes_shrink_towards_the_end_and_respect_the_bounds(tmp_path):
    write(tmp_path / "a.parquet", 40_000, 1_000)  # ~1.6 MB of text in 128-row-ish groups
    corpus = read_corpus(str(tmp_path), "text", "id")
    units = cut_units(corpus.files, {}, FP, actors=2, max_unit_bytes=300_000)
    sizes = [u.text_bytes for u in units]
    assert max(sizes) <= 300_000 * 1.01 and sizes[0] > sizes[-2] >= MIN_UNIT_BYTES * 0.99
    assert sizes == sorted(sizes, reverse=True)[: len(sizes) - 1] + sizes[-1:]  # non-increasing but the remainder
    covered = sorted((p.row_start, p.row_end) for u in units for p in u.pieces)
    assert covered[0][0] == 0 and covered[-1][1] == 40_000
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))  # no gap, no overlap


def test_covered_rows_are_never_planned_again(tmp_path):
    write(tmp_path / "a.parquet", 1_000, 100)
    corpus = read_corpus(str(tmp_path), "text", "id")
    identity = corpus.files[0].identity
    coverage = {identity: [(0, 250), (400, 420), (900, 1_000)]}
    units = cut_units(corpus.files, coverage, FP, actors=2, max_unit_bytes=5_000)
    rows = sorted(r for u in units for p in u.pieces for r in range(p.row_start, p.row_end))
    assert rows == list(range(250, 400)) + list(range(420, 900))
    tables = read_all(plan_read_tasks(units, corpus.files), corpus)
    assert sorted(i for t in tables for i in t.column("id").to_pylist()) == rows
    assert uncovered(10, [(2, 4), (3, 6), (8, 12)]) == [(0, 2), (6, 8)]


def test_keys_depend_on_pieces_and_fingerprint_only(tmp_path):
    write(tmp_path / "a.parquet", 300, 100)
    corpus = read_corpus(str(tmp_path), "text", "id")
    a = cut_units(corpus.files, {}, FP, actors=2, max_unit_bytes=3_000)
    assert [u.key for u in a] == [u.key for u in cut_units(corpus.files, {}, FP, actors=2, max_unit_bytes=3_000)]
    other = cut_units(corpus.files, {}, '{"model": "other"}', actors=2, max_unit_bytes=3_000)
    assert not {u.key for u in a} & {u.key for u in other}


def test_a_unit_whose_text_outgrows_its_estimate_is_split_while_read(tmp_path):
    texts = ["the same long text " * 20] * 1_000  # dictionary-encoded: the footer sees a fraction of it
    pq.write_table(pa.table({"id": list(range(1_000)), "text": texts}), tmp_path / "rep.parquet")
    corpus = read_corpus(str(tmp_path), "text", "id")
    assert corpus.files[0].text_bytes < len(texts[0]) * 1_000 / 10
    units = cut_units(corpus.files, {}, FP, actors=1, max_unit_bytes=4_000_000)
    assert len(units) == 1
    tables = read_all(plan_read_tasks(units, corpus.files), corpus)
    emitted = [unit_from_dict(json.loads(t.column(UNIT_COLUMN)[0].as_py())) for t in tables]
    assert len(emitted) >= 3 and all(t.num_rows == u.rows for t, u in zip(tables, emitted))
    limit = units[0].target_bytes * units_module.SPLIT_ABOVE
    assert all(u.text_bytes <= limit + len(texts[0]) for u in emitted)
    assert [p.row_start for u in emitted for p in u.pieces] == sorted(p.row_start for u in emitted for p in u.pieces)
    assert sum(u.rows for u in emitted) == 1_000


@pytest.mark.parametrize("writer", ["pyarrow", "polars"])
def test_files_written_by_other_tools_read_back_with_normalized_types(tmp_path, writer):
    import polars as pl

    frame = pl.DataFrame({"id": pl.Series([1, 2, 3], dtype=pl.Int32), "text": ["a b", None, "c"]})
    if writer == "polars":
        frame.write_parquet(tmp_path / "a.parquet")
    else:
        pq.write_table(frame.to_arrow(), tmp_path / "a.parquet")
    corpus = read_corpus(str(tmp_path), "text", "id")
    assert corpus.id_type == pa.int64()
    units = cut_units(corpus.files, {}, FP, actors=1, max_unit_bytes=1_000)
    (table,) = read_all(plan_read_tasks(units, corpus.files), corpus)
    assert table.schema.field("id").type == pa.int64() and table.schema.field("text").type == pa.large_string()
    assert table.column("text").to_pylist() == ["a b", None, "c"]
