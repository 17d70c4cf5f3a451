"""EWT CoNLL-U placed on raw text, and the Examples the default pipeline is trained on."""

import spacy

from operators.training import GoldDoc, Token, align, chunks, read_conllu, split_of, to_example

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


def test_entities_the_ner_cannot_learn_are_dropped(tmp_path):
    doc = gold(tmp_path)
    # crosses the sentence boundary (and holds a whitespace token); not on token boundaries
    example = to_example(spacy.blank("en").vocab, doc, [(17, 30, "ORG"), (14, 20, "PER")])
    assert list(example.reference.ents) == []
    assert {t.ent_iob_ for t in example.reference} == {"O"}


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


def test_silver_entities_need_a_gold_proper_noun_and_lose_a_leading_determiner(tmp_path):
    from operators.training import silver_entities

    doc = gold(tmp_path)
    doc.tokens[1].tag = "DT"  # pretend "do" were a determiner starting an entity
    nlp = spacy.blank("en")

    def fake_ner(d):
        from spacy.tokens import Span

        d.ents = [Span(d, 1, 3, "ORG"), Span(d, 4, 6, "PERSON"), Span(d, 8, 9, "GPE"), Span(d, 10, 11, "DATE")]
        return d

    fake_ner.vocab = nlp.vocab
    # "do n't": no proper noun → dropped; Bob Smith → PER; Paris → LOC; wins (DATE) → not mapped
    assert silver_entities(fake_ner, nlp.vocab, doc) == [(13, 22, "PER"), (25, 30, "LOC")]


def test_silver_entity_keeps_proper_noun_without_determiner(tmp_path):
    from operators.training import silver_entities

    doc = gold(tmp_path)
    doc.tokens[3].tag = "DT"  # "know" as a determiner before "Bob Smith"
    nlp = spacy.blank("en")

    def fake_ner(d):
        from spacy.tokens import Span

        d.ents = [Span(d, 3, 6, "ORG")]
        return d

    fake_ner.vocab = nlp.vocab
    assert silver_entities(fake_ner, nlp.vocab, doc) == [(13, 22, "ORG")]


def test_silver_example_leaves_unlabelled_proper_nouns_missing(tmp_path):
    doc = gold(tmp_path)
    vocab = spacy.blank("en").vocab
    # silver found Bob Smith only: Paris (a proper noun) is unknown, not "outside"
    silver = to_example(vocab, doc, [(13, 22, "PER")], unsure_proper_nouns=True)
    assert silver.get_aligned_ner() == ["O", "O", "O", "O", "B-PER", "L-PER", "O", "O", None, "O", "O", "O"]
    # gold entities: every token is known
    full = to_example(vocab, doc, [(13, 22, "PER")])
    assert full.get_aligned_ner()[8] == "O"
