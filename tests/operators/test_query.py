import polars as pl
import pytest

from operators import query
from tests.fixture_output import TEXTS, write_fixture_output


@pytest.fixture
def out(tmp_path):
    return write_fixture_output(tmp_path)


def test_scan_each_table(out):
    assert query.scan(out, "documents").collect().height == 3
    assert query.scan(out, "entities").collect().height == 9
    with pytest.raises(ValueError, match="unknown table"):
        query.scan(out, "words")


def test_top_entities(out):
    top = query.top_entities(out, top=3).collect()
    # ties on mentions break on documents, then label and text
    assert top.rows() == [("LOC", "Paris", 2, 2), ("ORG", "Acme", 2, 2), ("PER", "Bob", 2, 2)]
    per = query.top_entities(out, label="PER").collect()
    assert per.select("text", "mentions", "documents").rows() == [("Bob", 2, 2), ("Alice", 2, 1), ("Carol", 1, 1)]


def test_label_distribution(out):
    labels = query.label_distribution(out).collect()
    assert labels.select("label", "count").rows() == [("PER", 5), ("LOC", 2), ("ORG", 2)]
    assert labels["share"].sum() == pytest.approx(1.0)


def test_tag_distribution(out):
    tags = query.tag_distribution(out).collect()
    assert tags.select("tag", "count").rows() == [("NNP", 3), (".", 1), ("IN", 1), ("VBD", 1)]
    assert query.tag_distribution(out, "pos").collect().rows()[0][:2] == ("PROPN", 3)


def test_cooccurrence_counts_each_sentence_once_per_pair(out):
    pairs = query.cooccurrence(out).collect()
    # d1 s0: Alice, Bob, Paris; d1 s1: Alice, Acme; d2 s0: Bob, Paris; d2 s1: Acme, Carol
    assert pairs.rows() == [
        ("LOC", "Paris", "PER", "Bob", 2),
        ("LOC", "Paris", "PER", "Alice", 1),
        ("ORG", "Acme", "PER", "Alice", 1),
        ("ORG", "Acme", "PER", "Carol", 1),
        ("PER", "Alice", "PER", "Bob", 1),
    ]


def test_documents_with_entities(out):
    docs = query.documents_with_entities(out).sort("doc_id").collect()
    assert docs["entities"].list.len().to_list() == [5, 4, 0]
    assert docs["entities"][0][0] == {"label": "PER", "text": "Alice", "start_char": 0, "end_char": 5}


def test_sentence_texts_come_from_the_source(out):
    sents = query.sentence_texts(out).sort("doc_id", "sent_idx").collect()
    assert sents["text"].to_list() == ["Alice met Bob in Paris.", "Alice works at Acme.", "Bob visited Paris.", "Acme hired Carol."]
    for row in sents.iter_rows(named=True):
        assert TEXTS[row["doc_id"]][row["start_char"] : row["end_char"]] == row["text"]
    only = query.sentence_texts(out, query.scan(out, "sentences").filter(pl.col("doc_id") == "d2")).collect()
    assert only.height == 2
