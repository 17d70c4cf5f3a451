"""Small spaCy pipelines built offline, for tests (and the CPU smoke benchmark).

- a tiny BERT (random weights, the real all-MiniLM-L6-v2 tokenizer) saved with save_pretrained
- a spacy-transformers pipeline on it: Transformer + tagger + ner through listeners
- a Tok2Vec CNN pipeline: tok2vec + tagger + parser + ner through listeners
Both heads are trained a few steps on a handful of sentences so they predict real labels.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import spacy
from spacy.training import Example

from jobs.bench import SHAPED_CONFIG, SHAPES, build_random_bert
from operators.default_model import minilm_dir

TRAIN = [
    ("Alice Smith works for Acme Corp in Paris.", ["NNP", "NNP", "VBZ", "IN", "NNP", "NNP", "IN", "NNP", "."],
     [(0, 11, "PER"), (22, 31, "ORG"), (35, 40, "LOC")]),
    ("Bob visited London with Carol Jones.", ["NNP", "VBD", "NNP", "IN", "NNP", "NNP", "."],
     [(0, 3, "PER"), (12, 18, "LOC"), (24, 35, "PER")]),
    ("The company Globex hired ten engineers.", ["DT", "NN", "NNP", "VBD", "CD", "NNS", "."],
     [(12, 18, "ORG")]),
    ("We flew from Berlin to Rome last week.", ["PRP", "VBD", "IN", "NNP", "TO", "NNP", "JJ", "NN", "."],
     [(13, 19, "LOC"), (23, 27, "LOC")]),
]
# heads for the parser: a flat tree where every token attaches to the verb (index given per text)
ROOTS = [2, 1, 3, 1]


def build_tiny_bert(path: Path) -> Path:
    """A random-weight 2-layer, 32-wide BERT with MiniLM's tokenizer: real wordpieces, tiny and fast."""
    return build_random_bert(path, **SHAPES["tiny"])


def _config(name: str, components: list[str]):
    """The benchmark's transformer pipeline config with only `components`."""
    from thinc.api import Config

    config = Config().from_str(SHAPED_CONFIG.format(name=name, pipeline=json.dumps(components)))
    for head in ("tagger", "parser", "ner"):
        if head not in components:
            del config["components"][head]
    return config


def _examples(nlp, with_deps: bool) -> list[Example]:
    examples = []
    for (text, tags, ents), root in zip(TRAIN, ROOTS):
        doc = nlp.make_doc(text)
        annotations = {"tags": tags, "entities": ents}
        if with_deps:
            annotations["heads"] = [root] * len(doc)
            annotations["deps"] = ["ROOT" if i == root else "attach" for i in range(len(doc))]
        examples.append(Example.from_dict(doc, annotations))
    return examples


def _train(nlp, examples: list[Example], steps: int) -> None:
    random.seed(0)
    spacy.util.fix_random_seed(0)
    # spaCy 3.8.18's transition parsers here do not take labels from the initialize examples
    # (training then fails with E1031): add them explicitly, as a labels file would
    for name, proc in nlp.pipeline:
        if name in ("parser", "ner"):
            for label in proc.moves.get_actions(examples=examples).get(2, {}) | proc.moves.get_actions(examples=examples).get(3, {}):
                if label and label not in ("dep", "-"):
                    proc.add_label(label)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01  # a handful of sentences: learn them fast
    for _ in range(steps):
        random.shuffle(examples)
        nlp.update(examples, sgd=optimizer, drop=0.0)


def build_trf_pipeline(path: Path, bert_dir: Path, steps: int = 40) -> Path:
    config = _config(str(bert_dir), ["transformer", "tagger", "ner"])
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    nlp.meta["name"] = "tiny_trf"
    nlp.meta["version"] = "0.0.1"
    # nlp.update runs no sentencizer, so train on whole-doc spans (each example is one sentence);
    # the saved config keeps sent_spans, and corpus-nlp must add the sentencizer itself
    from spacy_transformers.span_getters import get_doc_spans

    trf_model = nlp.get_pipe("transformer").model
    sent_spans = trf_model.attrs["get_spans"]
    trf_model.attrs["get_spans"] = get_doc_spans
    _train(nlp, _examples(nlp, with_deps=False), steps)
    trf_model.attrs["get_spans"] = sent_spans
    nlp.to_disk(path)
    return path


def build_tok2vec_pipeline(path: Path, steps: int = 60) -> Path:
    nlp = spacy.blank("en")
    nlp.meta["name"] = "tiny_tok2vec"
    nlp.meta["version"] = "0.0.1"
    nlp.add_pipe(
        "tok2vec",
        config={
            "model": {
                "@architectures": "spacy.Tok2Vec.v2",
                "embed": {
                    "@architectures": "spacy.MultiHashEmbed.v2",
                    "width": 32,
                    "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"],
                    "rows": [500, 100, 100, 50],
                    "include_static_vectors": False,
                },
                "encode": {
                    "@architectures": "spacy.MaxoutWindowEncoder.v2",
                    "width": 32,
                    "depth": 2,
                    "window_size": 1,
                    "maxout_pieces": 2,
                },
            }
        },
    )
    listener = {"@architectures": "spacy.Tok2VecListener.v1", "width": 32}
    nlp.add_pipe("tagger", config={"model": {"@architectures": "spacy.Tagger.v2", "tok2vec": listener}})
    parser_model = {
        "@architectures": "spacy.TransitionBasedParser.v2",
        "hidden_width": 32,
        "maxout_pieces": 2,
        "use_upper": True,
        "tok2vec": listener,
    }
    nlp.add_pipe("parser", config={"model": {**parser_model, "state_type": "parser"}})
    nlp.add_pipe("ner", config={"model": {**parser_model, "state_type": "ner"}})
    _train(nlp, _examples(nlp, with_deps=True), steps)
    nlp.to_disk(path)
    return path


def build_minilm_pipeline(path: Path) -> Path:
    """all-MiniLM-L6-v2 from its PyPI package as a spacy-transformers pipeline (transformer only)."""
    config = _config(minilm_dir(), ["transformer"])
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    nlp.meta["name"] = "minilm"
    nlp.meta["version"] = "0.0.1"
    nlp.initialize()
    nlp.to_disk(path)
    return path
