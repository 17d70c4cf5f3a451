"""The shipped default pipeline: heads from the repo + all-MiniLM-L6-v2 from its package.

- assembled offline into a complete spaCy pipeline folder that plain `spacy.load` reads;
- reproduces, exactly, what the pipeline produced in memory at the end of training
  (operators/default_model/corpus_nlp_minilm/expected.json);
- its sentence vectors are all-MiniLM-L6-v2's own embeddings (sentence-transformers' encode).
"""

import json

import numpy as np
import pyarrow as pa
import pytest
import spacy

from operators.annotate import Annotator
from operators.config import DEFAULT_MODEL, AnnotatorConfig
from operators.default_model import NAME, assemble, heads_dir, minilm_dir

EXPECTED = json.loads((heads_dir() / "expected.json").read_text())


@pytest.fixture(scope="module")
def assembled():
    return assemble()


def test_it_is_the_default():
    assert DEFAULT_MODEL == NAME
    assert not (heads_dir() / "transformer").exists()  # the 90 MB of weights are not in the repo
    assert 'name = "sentence-transformers/all-MiniLM-L6-v2"' in (heads_dir() / "config.cfg").read_text()


def test_assembled_pipeline_loads_with_plain_spacy(assembled):
    nlp = spacy.load(assembled)
    assert nlp.pipe_names == ["senter", "transformer", "tok2vec", "tagger", "parser", "ner", "attribute_ruler", "lemmatizer"]
    assert set(nlp.get_pipe("ner").labels) == {"PER", "ORG", "LOC"}
    assert nlp.get_pipe_meta("ner").factory == "corpus_nlp_span_ner"
    assert assemble() == assembled  # cached: a second call builds nothing


def test_plain_spacy_finds_the_entity_recognizer_through_its_entry_point(assembled):
    """In a fresh interpreter that never imports corpus-nlp, spacy.load resolves the ner's factory
    and model from the installed package's entry points."""
    import subprocess
    import sys

    script = (
        "import sys, spacy\n"
        f"nlp = spacy.load({str(assembled)!r})\n"
        "doc = nlp('Alice Johnson moved from Chicago to work for Google.')\n"
        "print(nlp.get_pipe_meta('ner').factory, 'operators.span_ner' in sys.modules, len(doc.ents) > 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.split() == ["corpus_nlp_span_ner", "True", "True"]


def test_transformer_weights_are_the_packages(assembled):
    from safetensors.numpy import load_file

    nlp = spacy.load(assembled)
    torch_model = nlp.get_pipe("transformer").model.transformer
    package = load_file(f"{minilm_dir()}/model.safetensors")
    ours = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    shared = [k for k in package if k.removeprefix("bert.") in ours or k in ours]
    assert len(shared) >= 100
    for key in shared:
        mine = ours.get(key, ours.get(key.removeprefix("bert.")))
        np.testing.assert_array_equal(mine, package[key], err_msg=key)


def test_assembled_pipeline_reproduces_the_trained_one(assembled):
    from jobs.train_default import doc_annotations
    from operators.pipeline import load_pipeline

    nlp = load_pipeline(DEFAULT_MODEL, use_gpu=False, max_wordpieces=256).nlp
    for probe, doc in zip(EXPECTED["probes"], nlp.pipe(p["text"] for p in EXPECTED["probes"])):
        assert doc_annotations(doc) == probe, probe["text"]


def test_sentence_vectors_are_minilm_embeddings(assembled):
    from sentence_transformers import SentenceTransformer

    annotator = Annotator(AnnotatorConfig())
    texts = [probe["text"] for probe in EXPECTED["probes"]]
    out = annotator(pa.table({"id": list(range(len(texts))), "text": texts}))
    pairs = [
        (texts[i][s["start_char"] : s["end_char"]], np.asarray(s["vector"], dtype=np.float32))
        for i in range(len(texts))
        for s in out.column("sentences")[i].as_py()
    ]
    assert len(pairs) >= len(texts)
    reference = SentenceTransformer(minilm_dir(), device="cpu").encode([t for t, _ in pairs], convert_to_numpy=True)
    for (text, ours), ref in zip(pairs, reference):
        cosine = float(ours @ ref / np.linalg.norm(ours) / np.linalg.norm(ref))
        assert cosine >= 0.999, (text, cosine)
