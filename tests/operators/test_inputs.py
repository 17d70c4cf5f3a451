import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.errors import InputError
from operators.inputs import discover, inspect_inputs
from tests.conftest import write_corpus


def test_discover_file_folder_glob(tmp_path):
    a = write_corpus(tmp_path / "c" / "a.parquet", ["x"])
    b = write_corpus(tmp_path / "c" / "sub" / "b.parquet", ["y"])
    (tmp_path / "c" / "notes.txt").write_text("not parquet")
    assert discover(str(a)) == [str(a)]
    assert discover(str(tmp_path / "c")) == [str(a), str(b)]
    assert discover(str(tmp_path / "c" / "*.parquet")) == [str(a)]
    assert discover(f"file://{tmp_path}/c/*.parquet") == [f"file://{a}"]


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no Parquet files found"):
        discover(str(tmp_path / "empty"))


def test_missing_column_names_what_was_found(tmp_path):
    path = write_corpus(tmp_path / "a.parquet", ["x"], text_column="body")
    with pytest.raises(InputError, match=r"no column 'text'.*'id', 'body'"):
        inspect_inputs(str(path), "text", "id")


def test_text_must_be_string_or_binary(tmp_path):
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"id": [1], "text": [3.5]}), path)
    with pytest.raises(InputError, match="has type double"):
        inspect_inputs(str(path), "text", "id")


def test_id_type_is_reported(tmp_path):
    path = write_corpus(tmp_path / "a.parquet", ["x"], ids=["doc-1"], id_type=pa.string())
    assert inspect_inputs(str(path), "text", "id").id_type == pa.string()
