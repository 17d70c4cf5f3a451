import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.errors import InputError
from operators.units import plan_units, read_unit
from tests.conftest import write_corpus

FP = '{"model": "m"}'


def write_groups(path, n_rows, group):
    table = pa.table({"id": list(range(n_rows)), "text": [f"text {i}" for i in range(n_rows)]})
    pq.write_table(table, path, row_group_size=group)
    return str(path)


def test_units_pack_whole_row_groups_and_read_back_every_row_once(tmp_path):
    path = write_groups(tmp_path / "a.parquet", 100, 15)  # 7 row groups: 6 x 15 + 10
    plan = plan_units([path], "text", "id", FP, unit_rows=40)
    assert [u.row_groups for u in plan.units] == [(0, 1), (2, 3), (4, 5, 6)]  # 15+15+10 fits 40
    assert [u.n_rows for u in plan.units] == [30, 30, 40]
    assert [u.first_row for u in plan.units] == [0, 30, 60]
    ids = [i for u in plan.units for b in read_unit(u, ["id"], 7) for i in b.column("id").to_pylist()]
    assert ids == list(range(100))
    assert plan.id_type == pa.int64() and plan.text_type == pa.string()


def test_keys_are_stable_and_change_with_the_file_or_the_fingerprint(tmp_path):
    path = write_groups(tmp_path / "a.parquet", 30, 10)
    keys = [u.key for u in plan_units([path], "text", "id", FP, 10).units]
    assert keys == [u.key for u in plan_units([path], "text", "id", FP, 10).units]
    assert len(set(keys)) == 3
    assert not set(keys) & {u.key for u in plan_units([path], "text", "id", '{"model": "other"}', 10).units}
    os.utime(path, (1, 1))  # touched: identity changes
    assert not set(keys) & {u.key for u in plan_units([path], "text", "id", FP, 10).units}


def test_missing_column_names_the_file_and_what_was_found(tmp_path):
    path = write_corpus(tmp_path / "a.parquet", ["x"], text_column="body")
    with pytest.raises(InputError, match=r"a.parquet has no column 'text'.*'id', 'body'"):
        plan_units([str(path)], "text", "id", FP, 10)


def test_non_text_column_names_the_type(tmp_path):
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"id": [1], "text": [3.5]}), path)
    with pytest.raises(InputError, match="has type double"):
        plan_units([str(path)], "text", "id", FP, 10)


def test_schema_drift_between_files_names_both(tmp_path):
    a = write_corpus(tmp_path / "a.parquet", ["x"], ids=[1])
    b = write_corpus(tmp_path / "b.parquet", ["y"], ids=["one"], id_type=pa.string())
    with pytest.raises(InputError, match=r"'id' is int64 in .*a.parquet but string in .*b.parquet"):
        plan_units([str(a), str(b)], "text", "id", FP, 10)


def test_corrupt_file_is_listed_and_the_others_planned(tmp_path):
    good = write_corpus(tmp_path / "good.parquet", ["x", "y"])
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    plan = plan_units([str(bad), str(good)], "text", "id", FP, 10)
    assert [u.path for u in plan.units] == [str(good)]
    assert list(plan.bad_files) == [str(bad)] and "Parquet" in plan.bad_files[str(bad)]
