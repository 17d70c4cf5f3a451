"""The default pipeline's training job, end to end on a few EWT documents: train → ship → assemble."""

from pathlib import Path

import pytest
import spacy

EWT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ewt"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (EWT / "en_ewt-ud-train.conllu").exists(), reason="needs ../shared/data/ewt"),
]


def test_train_ship_assemble_reproduces(tmp_path):
    import json

    from jobs.train_default import doc_annotations, train
    from operators.default_model import assemble

    heads = tmp_path / "heads"
    heads.mkdir()
    (heads / "README.md").write_text("model card")  # re-training keeps the card, drops old files
    (heads / "stale.bin").write_text("old")
    result = train(str(EWT), str(heads), epochs=1, seed=0, limit_docs=4)
    assert [h["epoch"] for h in result["history"]] == [0]
    assert {"config.cfg", "meta.json", "tagger", "parser", "ner", "tok2vec", "senter", "lemmatizer"} <= {p.name for p in heads.iterdir()}
    assert (heads / "README.md").read_text() == "model card" and not (heads / "stale.bin").exists()
    assert not (heads / "transformer").exists()  # shipped without the transformer's weights
    assert 'name = "sentence-transformers/all-MiniLM-L6-v2"' in (heads / "config.cfg").read_text()  # no local path
    assert sum(f.stat().st_size for f in heads.rglob("*") if f.is_file()) < 20_000_000

    nlp = spacy.load(assemble(target=tmp_path / "assembled", heads=heads))
    assert "PER" in nlp.get_pipe("ner").labels and "NN" in nlp.get_pipe("tagger").labels
    expected = json.loads((heads / "expected.json").read_text())["probes"]
    from operators.pipeline import CappedSentenceSpans

    trf = nlp.get_pipe("transformer").model
    trf.attrs["get_spans"] = CappedSentenceSpans(trf.tokenizer, 256)  # as training and corpus-nlp do
    assert [doc_annotations(doc) for doc in nlp.pipe(p["text"] for p in expected)] == expected
