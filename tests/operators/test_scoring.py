"""Scoring by character span (operators/scoring.py) on hand-made gold, with the numbers worked out
by hand."""

import json

import numpy as np
import pytest

from operators.scoring import GoldDoc, Predicted, bootstrap_se, predicted_from_doc, read_gold, score

# "Bob met Ann in Paris. Then he left."
A = GoldDoc(
    id="a",
    text="Bob met Ann in Paris. Then he left.",
    tokens=[(0, 3, "NNP"), (4, 7, "VBD"), (8, 11, "NNP"), (12, 14, "IN"), (15, 20, "NNP"), (20, 21, "."),
            (22, 26, "RB"), (27, 29, "PRP"), (30, 34, "VBD"), (34, 35, ".")],
    ents=[(0, 3, "PER"), (8, 11, "PER"), (15, 20, "LOC")],
    sents=[(0, 21), (22, 35)],
)
B = GoldDoc(id="b", text="Acme hired Carol.", tokens=[(0, 4, "NNP"), (5, 10, "VBD"), (11, 16, "NNP"), (16, 17, ".")],
            ents=[(0, 4, "ORG"), (11, 16, "PER")], sents=[(0, 17)])

PRED_A = Predicted(
    # Ann mistagged, "Paris." one token (so neither Paris nor its "." is found), left mistagged: 6 of 10
    tokens=[(0, 3, "NNP"), (4, 7, "VBD"), (8, 11, "NN"), (12, 14, "IN"), (15, 21, "NNP"),
            (22, 26, "RB"), (27, 29, "PRP"), (30, 34, "VBN"), (34, 35, ".")],
    # PERSON -> PER right; Ann as ORG: wrong label; GPE -> LOC on the wrong span; DATE: not scored
    ents=[(0, 3, "PERSON"), (8, 11, "ORG"), (15, 21, "GPE"), (22, 26, "DATE")],
    # 21 is the space before "Then": it counts as 22; 8 is no sentence start
    sent_starts=[0, 8, 21],
)


def test_scores_count_exact_spans_mapped_labels_and_trimmed_sentence_starts():
    s = score([A, B], {"a": PRED_A})  # b has no prediction: it counts as predicting nothing
    assert s.gold_tokens == 14 and s.gold_entities == 5 and s.documents == 2
    assert s.tag_accuracy == pytest.approx(6 / 14)
    assert (s.ent_precision, s.ent_recall) == (pytest.approx(1 / 3), pytest.approx(1 / 5))
    assert s.ent_f1 == pytest.approx(0.25)  # 2 * (1/3) * (1/5) / (1/3 + 1/5)
    assert s.sent_f1 == pytest.approx(2 / 3)  # starts {0, 8, 22} against {0, 22} and {0}
    assert s.as_dict()["tag_accuracy"] == 0.4286


def test_a_perfect_prediction_scores_one_and_an_empty_one_zero():
    perfect = {d.id: Predicted(tokens=d.tokens, ents=d.ents, sent_starts=[a for a, _ in d.sents]) for d in (A, B)}
    s = score([A, B], perfect)
    assert (s.tag_accuracy, s.ent_precision, s.ent_recall, s.ent_f1, s.sent_f1) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert s.tag_accuracy_se == 0.0 and s.ent_f1_se == 0.0  # every resample scores 1
    nothing = score([A, B], {})
    assert (nothing.tag_accuracy, nothing.ent_f1, nothing.sent_f1) == (0.0, 0.0, 0.0)


def test_standard_errors_resample_documents():
    # two documents, all right and all wrong: resamples score 1, 1/2 or 0 with chances 1/4, 1/2,
    # 1/4, so the standard error is sqrt(1/8) = 0.354
    counts = np.array([[10, 10, 3, 3, 3, 0, 0, 0], [0, 10, 0, 3, 3, 0, 0, 0]])
    se = bootstrap_se(counts)
    assert se["tag_accuracy"] == pytest.approx(np.sqrt(1 / 8), abs=0.015)
    assert se["ent_f1"] == pytest.approx(np.sqrt(1 / 8), abs=0.015)  # F1 1, 1/2, 0 the same way
    assert bootstrap_se(counts) == se  # a fixed seed: reruns agree
    assert bootstrap_se(counts[:1]) == {"tag_accuracy": 0.0, "ent_f1": 0.0}


def test_read_gold_and_predictions_from_a_spacy_doc(tmp_path):
    import spacy

    path = tmp_path / "gold.jsonl"
    row = {"id": "b", "text": B.text, "tokens": [[s, e, t, "PROPN", "x"] for s, e, t in B.tokens],
           "ents": [list(e) for e in B.ents], "sents": [list(s) for s in B.sents]}
    path.write_text(json.dumps(row) + "\n")
    (gold,) = read_gold(path)
    assert gold == B
    nlp = spacy.blank("en")
    doc = nlp(B.text)
    doc.ents = [doc.char_span(0, 4, label="ORG"), doc.char_span(11, 16, label="PERSON")]
    for token in doc:
        token.is_sent_start = token.i == 0
    for token, (_, _, tag) in zip(doc, B.tokens):
        token.tag_ = tag
    s = score([gold], {"b": predicted_from_doc(doc)})
    assert (s.tag_accuracy, s.ent_f1, s.sent_f1) == (1.0, 1.0, 1.0)


def test_predicted_entities_where_the_gold_does_not_know_are_not_scored():
    a = GoldDoc(**{**A.__dict__, "unknown_ents": [(22, 35)]})  # the second sentence's entities are unknown
    pred = Predicted(tokens=A.tokens, ents=[*A.ents, (27, 29, "PERSON")], sent_starts=[0, 22])
    assert score([a], {"a": pred}).ent_precision == 1.0
    assert score([A], {"a": pred}).ent_precision == 0.75


def test_the_ewt_dev_gold_is_built_from_the_conllu_and_iob2_files(tmp_path):
    from tests.operators.test_training import CONLLU, IOB2, TEXT

    (tmp_path / "docs.jsonl").write_text(json.dumps({"id": "doc-1", "genre": "g", "split": "dev", "text": TEXT}) + "\n")
    (tmp_path / "en_ewt-ud-dev.conllu").write_text(CONLLU)
    (tmp_path / "en_ewt-ud-dev.iob2").write_text(IOB2)
    (doc,) = read_gold(tmp_path)
    assert doc.id == "doc-1" and doc.text == TEXT
    assert doc.tokens[:3] == [(0, 1, "PRP"), (2, 4, "VBP"), (4, 7, "RB")] and len(doc.tokens) == 10
    assert doc.ents == [(13, 22, "PER"), (25, 30, "LOC")] and doc.sents == [(0, 23), (25, 37)]
    assert doc.unknown_ents == []
