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
    # a folder an earlier train-default wrote: re-training keeps the card, drops old files
    (heads / "meta.json").write_text(json.dumps({"name": "corpus_nlp_minilm", "version": "0.1.0"}))
    (heads / "training.json").write_text("{}")
    (heads / "README.md").write_text("model card")
    (heads / "stale.bin").write_text("old")
    result = train(str(EWT), str(heads), epochs=2, seed=0, limit_docs=4, final_learn_rate=2e-4)
    assert [h["epoch"] for h in result["history"]] == [0, 1]
    assert [h["learn_rate"] for h in result["history"]] == pytest.approx([1e-3, 2e-4])  # the config's, decayed to the last
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


@pytest.mark.parametrize("holds", [{"notes.txt": "mine"}, {"meta.json": '{"name": "my_model"}', "training.json": "{}"},
                                   {"meta.json": '{"name": "corpus_nlp_minilm"}'}])
def test_train_default_refuses_a_folder_it_did_not_write(tmp_path, holds):
    from jobs.train_default import check_output, train
    from operators.errors import ConfigError

    for name, text in holds.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match="will not write into .*Pass another --output"):
        train(str(EWT), str(tmp_path), epochs=1, seed=0, limit_docs=1)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == holds  # untouched
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="it is a file"):
        check_output(str(tmp_path / "file"))
    for fine in (tmp_path / "new", tmp_path / "empty"):
        check_output(str(fine))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("card only")
    check_output(str(tmp_path / "empty"))


def test_train_default_needs_the_optimizers_averages(tmp_path, monkeypatch):
    """Each epoch is scored and kept with the optimizer's averaged weights; without them it stops."""
    import jobs.train_default as train_default
    from operators.errors import ConfigError

    config = tmp_path / "no_averages.cfg"
    text = train_default.TRAIN_CONFIG.read_text()
    assert "use_averages = true" in text
    config.write_text(text.replace("use_averages = true", "use_averages = false"))
    monkeypatch.setattr(train_default, "TRAIN_CONFIG", config)
    with pytest.raises(ConfigError, match="use_averages = true under \\[training.optimizer\\]"):
        train_default.train(str(EWT), str(tmp_path / "heads"), epochs=1, seed=0, limit_docs=1)
