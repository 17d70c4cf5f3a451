"""EWT CoNLL-U placed on raw text, and the Examples the default pipeline is trained on."""

import pytest
import spacy

from operators.training import (
    GoldDoc,
    Token,
    align,
    chunks,
    iob2_spans,
    load_ewt,
    read_conllu,
    read_iob2,
    sentence_entities,
    split_of,
    to_example,
)

CONLLU = """# newdoc id = doc-1
# sent_id = doc-1-0001
# text = I don't know Bob Smith.
1	I	I	PRON	PRP	_	4	nsubj	_	_
2-3	don't	_	_	_	_	_	_	_	_
2	do	do	AUX	VBP	_	4	aux	_	_
3	n't	not	PART	RB	_	4	advmod	_	_
4	know	know	VERB	VB	_	0	root	_	_
5	Bob	Bob	PROPN	NNP	_	4	obj	_	_
6	Smith	Smith	PROPN	NNP	_	5	flat	_	SpaceAfter=No
7	.	.	PUNCT	.	_	4	punct	_	_

# sent_id = doc-1-0002
# text = Paris wins.
1	Paris	Paris	PROPN	NNP	_	2	nsubj	_	_
2	wins	win	VERB	VBZ	_	0	root	_	SpaceAfter=No
3	.	.	PUNCT	.	_	2	punct	_	_

"""
TEXT = "I don't know Bob Smith.\n\nParis  wins."


def gold(tmp_path) -> GoldDoc:
    path = tmp_path / "t.conllu"
    path.write_text(CONLLU)
    sentences = read_conllu(path)["doc-1"]
    return align("doc-1", TEXT, sentences)


def test_words_are_placed_on_the_raw_text(tmp_path):
    doc = gold(tmp_path)
    assert [TEXT[t.start : t.end] for t in doc.tokens] == ["I", "do", "n't", "know", "Bob", "Smith", ".", "Paris", "wins", "."]
    assert doc.sent_starts == [0, 7]
    assert [t.head for t in doc.tokens] == [3, 3, 3, 3, 3, 4, 3, 8, 8, 8]
    assert doc.tokens[3].dep == "ROOT" and doc.tokens[2].lemma == "not"


def test_example_has_whitespace_tokens_and_gold_sentences(tmp_path):
    doc = gold(tmp_path)
    example = to_example(spacy.blank("en").vocab, doc, [(13, 22, "PER"), (25, 30, "LOC")])
    predicted, reference = example.predicted, example.reference
    assert predicted.text == TEXT
    assert [t.text for t in predicted] == ["I", "do", "n't", "know", "Bob", "Smith", ".", "\n\n", "Paris", " ", "wins", "."]
    assert [t.tag_ for t in reference][7] == "_SP" and reference[7].head.i == 6  # belongs to sentence 1
    assert [t.i for t in predicted if t.is_sent_start] == [0, 8]  # the transformer's spans follow them
    assert [s.start for s in reference.sents] == [0, 8]
    assert [(e.text, e.label_) for e in reference.ents] == [("Bob Smith", "PER"), ("Paris", "LOC")]
    assert reference[0].ent_iob_ == "O"  # unannotated tokens are "outside", not missing


def test_entities_the_ner_cannot_learn_are_dropped_and_their_tokens_unknown(tmp_path):
    doc = gold(tmp_path)
    # crosses the sentence boundary (and holds a whitespace token); not on token boundaries
    example = to_example(spacy.blank("en").vocab, doc, [(17, 30, "ORG"), (14, 20, "PER")])
    assert list(example.reference.ents) == []
    # Bob (14-20 touches it) .. Paris (17-30) are missing, not "outside"; the rest is outside
    assert [t.ent_iob_ for t in example.reference] == ["O"] * 4 + [""] * 5 + ["O"] * 3


def test_chunks_rebase_offsets(tmp_path):
    doc = gold(tmp_path)
    doc.ents = [(13, 22, "PER"), (25, 30, "LOC")]
    first, second = chunks(doc, 1)
    assert first.text == "I don't know Bob Smith." and second.text == "Paris  wins."
    assert second.tokens[0] == Token(0, 5, "NNP", "Paris", 1, "nsubj")
    assert second.ents == [(0, 5, "LOC")] and first.ents == [(13, 22, "PER")]


def test_splits_are_fixed_by_document_id():
    shares = {"train": 0.5, "select": 0.15, "test": 0.35}
    names = [split_of(f"doc-{i}", shares) for i in range(2000)]
    assert names == [split_of(f"doc-{i}", shares) for i in range(2000)]
    assert abs(names.count("train") / 2000 - 0.5) < 0.05 and abs(names.count("test") / 2000 - 0.35) < 0.05


IOB2 = """# newdoc id = doc-1
# sent_id = doc-1-0001
# text = I don't know Bob Smith.
1	I	O	-	-
2	do	O	-	-
3	n't	O	-	-
4	know	O	-	-
5	Bob	B-PER	-	x
6	Smith	I-PER	-	x
7	.	B-O	-	x

# sent_id = doc-1-0002
# text = Paris wins.
1	Paris	B-LOC	-	x
2	wins	O	-	-
3	.	O	-	-

"""


def test_iob2_spans_keep_the_scored_labels_and_repair_stray_inside_tags():
    tags = ["B-PER", "I-PER", "O", "B-OTH", "I-OTH", "B-O", "I-ORG", "I-ORG", "B-LOC", "B-LOC", "I-PER"]
    assert iob2_spans(tags) == [(0, 2, "PER"), (6, 8, "ORG"), (8, 9, "LOC"), (9, 10, "LOC"), (10, 11, "PER")]
    assert iob2_spans([]) == [] and iob2_spans(["O", "B-O"]) == []


def test_train_entities_align_by_sentence_id_and_differing_words_stay_unknown(tmp_path):
    doc = gold(tmp_path)
    iob2 = tmp_path / "t.iob2"
    iob2.write_text(IOB2)
    gold_words = read_iob2(iob2)
    assert list(gold_words) == ["doc-1-0001", "doc-1-0002"]
    sentences = read_conllu(tmp_path / "t.conllu")["doc-1"]
    assert [s.sent_id for s in sentences] == ["doc-1-0001", "doc-1-0002"]
    first = sentence_entities(doc.tokens, 0, sentences[0], gold_words["doc-1-0001"])
    assert first == [(13, 22, "PER")]  # the stray B-O on "." is no entity
    assert sentence_entities(doc.tokens, 7, sentences[1], gold_words["doc-1-0002"]) == [(25, 30, "LOC")]
    changed = [("Paris", "B-LOC"), ("won", "O"), (".", "O")]
    assert sentence_entities(doc.tokens, 7, sentences[1], changed) is None  # words differ
    assert sentence_entities(doc.tokens, 7, sentences[1], None) is None  # no entry


def test_unknown_sentences_are_missing_not_outside(tmp_path):
    doc = gold(tmp_path)
    doc.ents, doc.unknown_ents = [(13, 22, "PER")], [(25, 37)]  # second sentence: entities unknown
    example = to_example(spacy.blank("en").vocab, doc, doc.ents)
    # (spaCy's aligned view shows a whitespace token as outside whatever the reference says)
    assert example.get_aligned_ner() == ["O", "O", "O", "O", "B-PER", "L-PER", "O", "O", None, "O", None, None]
    assert [t.ent_iob_ for t in example.reference][8:] == ["", "", "", ""]
    second = list(chunks(doc, 1))[1]
    assert second.unknown_ents == [(0, 12)] and second.ents == []


@pytest.mark.parametrize("split", ["train", "dev"])
def test_load_ewt_reads_gold_entities_from_the_iob2_file(tmp_path, split):
    import json

    (tmp_path / "docs.jsonl").write_text(json.dumps({"id": "doc-1", "genre": "g", "split": split, "text": TEXT}) + "\n")
    (tmp_path / f"en_ewt-ud-{split}.conllu").write_text(CONLLU)
    (tmp_path / f"en_ewt-ud-{split}.iob2").write_text(IOB2.replace("2\twins", "2\twinz"))
    (doc,) = load_ewt(tmp_path, split)
    assert doc.ents == [(13, 22, "PER")]  # the second sentence's words differ: its entities are unknown
    assert doc.unknown_ents == [(25, 37)]


def test_the_adapted_tokenizer_cuts_text_as_ewt_does_and_keeps_it_when_saved(tmp_path):
    from operators.training import adapt_tokenizer

    nlp = spacy.blank("en")
    text = "Wow!! really?! ok.? <<hi>> e-mail Non-profit well-known and/or 713-853-3989. at 7:30PM, 10-15"
    before = [t.text for t in nlp.make_doc(text)]
    adapt_tokenizer(nlp)
    expected = ["Wow", "!!", "really", "?!", "ok", ".?", "<<", "hi", ">>", "e-mail", "Non-profit", "well", "-", "known",
                "and", "/", "or", "713-853-3989", ".", "at", "7:30", "PM", ",", "10", "-", "15"]
    assert [t.text for t in nlp.make_doc(text)] == expected != before
    nlp.to_disk(tmp_path / "p")
    assert [t.text for t in spacy.load(tmp_path / "p").make_doc(text)] == expected
