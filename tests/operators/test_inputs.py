import pytest

from operators.errors import InputError
from operators.inputs import discover
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
