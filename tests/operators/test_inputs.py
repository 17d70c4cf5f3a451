import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.errors import InputError
from operators.inputs import discover, read_corpus
from tests.conftest import write_corpus


def test_discover_file_folder_glob(tmp_path):
    a = write_corpus(tmp_path / "c" / "a.parquet", ["x"])
    b = write_corpus(tmp_path / "c" / "sub" / "b.parquet", ["y"])
    (tmp_path / "c" / "notes.txt").write_text("not parquet")
    names = lambda found: [p for p, _ in found]  # noqa: E731
    assert names(discover(str(a))) == [str(a)]
    assert names(discover(str(tmp_path / "c"))) == [str(a), str(b)]
    assert names(discover(str(tmp_path / "c" / "*.parquet"))) == [str(a)]
    assert names(discover(f"file://{tmp_path}/c/*.parquet")) == [f"file://{a}"]
    assert discover(str(a))[0][1]["size"] == a.stat().st_size


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no Parquet files found"):
        discover(str(tmp_path / "empty"))


def test_footers_give_row_groups_and_text_sizes(tmp_path):
    table = pa.table({"id": list(range(100)), "text": [f"text number {i:04d}" for i in range(100)]})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=30, use_dictionary=False)
    corpus = read_corpus(str(tmp_path), "text", "id")
    (f,) = corpus.files
    assert [g.rows for g in f.row_groups] == [30, 30, 30, 10] and f.rows == 100
    assert 30 * 16 <= f.row_groups[0].text_bytes <= 30 * 16 + 200  # 16 bytes a text, plus lengths and headers


def test_missing_column_names_the_file_and_what_was_found(tmp_path):
    path = write_corpus(tmp_path / "a.parquet", ["x"], text_column="body")
    with pytest.raises(InputError, match=r"a.parquet has no column 'text'.*'id', 'body'"):
        read_corpus(str(path), "text", "id")


def test_non_text_column_names_the_type(tmp_path):
    pq.write_table(pa.table({"id": [1], "text": [3.5]}), tmp_path / "n.parquet")
    with pytest.raises(InputError, match="has type double"):
        read_corpus(str(tmp_path / "n.parquet"), "text", "id")


def test_an_unsigned_64_bit_id_is_refused_with_what_to_do(tmp_path):
    pq.write_table(pa.table({"id": pa.array([1], pa.uint64()), "text": ["x"]}), tmp_path / "u.parquet")
    with pytest.raises(InputError, match="uint64.*Cast it"):
        read_corpus(str(tmp_path / "u.parquet"), "text", "id")


def test_ids_of_one_kind_written_differently_are_one_corpus_but_kinds_do_not_mix(tmp_path):
    write_corpus(tmp_path / "ok" / "a.parquet", ["x"], ids=[1], id_type=pa.int32())
    write_corpus(tmp_path / "ok" / "b.parquet", ["y"], ids=[2], id_type=pa.int64())
    write_corpus(tmp_path / "ok" / "c.parquet", ["y"], ids=[3], id_type=pa.uint16())
    assert read_corpus(str(tmp_path / "ok"), "text", "id").id_type == pa.int64()
    a = write_corpus(tmp_path / "bad" / "a.parquet", ["x"], ids=[1])
    write_corpus(tmp_path / "bad" / "b.parquet", ["y"], ids=["one"], id_type=pa.string())
    with pytest.raises(InputError, match=r"'id' is int64 in .*a.parquet but string in .*b.parquet"):
        read_corpus(str(a.parent), "text", "id")


def test_corrupt_file_is_listed_and_the_others_planned(tmp_path):
    good = write_corpus(tmp_path / "good.parquet", ["x", "y"])
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    corpus = read_corpus(str(tmp_path), "text", "id")
    assert [f.path for f in corpus.files] == [str(good)]
    assert list(corpus.bad_files) == [str(bad)] and "Parquet" in corpus.bad_files[str(bad)]
