"""`corpus-nlp evaluate` (jobs/evaluate.py) on hand-made gold: what it reads from an output, the
rows it prints, and that the held-out split stays the one the default pipeline was scored on."""

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import write_deltalake
import pytest

from jobs import evaluate as ev

EWT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ewt"

GOLD = [
    {"id": "a", "text": "Bob met Ann in Paris. Then he left.",
     "tokens": [[0, 3, "NNP"], [4, 7, "VBD"], [8, 11, "NNP"], [12, 14, "IN"], [15, 20, "NNP"], [20, 21, "."],
                [22, 26, "RB"], [27, 29, "PRP"], [30, 34, "VBD"], [34, 35, "."]],
     "ents": [[0, 3, "PER"], [8, 11, "PER"], [15, 20, "LOC"]], "sents": [[0, 21], [22, 35]]},
    {"id": "b", "text": "Acme hired Carol.", "tokens": [[0, 4, "NNP"], [5, 10, "VBD"], [11, 16, "NNP"], [16, 17, "."]],
     "ents": [[0, 4, "ORG"], [11, 16, "PER"]], "sents": [[0, 17]]},
]


def write_gold(path: Path) -> str:
    path.write_text("".join(json.dumps({**row, "tokens": [[*t, "X", "x"] for t in row["tokens"]]}) + "\n" for row in GOLD))
    return str(path)


def write_output(out: Path, tokens: list, ents: list, sent_starts: list) -> None:
    """The three tables evaluate reads, as corpus-nlp lays them out (Delta tables; only the columns
    it reads)."""
    for table, rows, names in (("tokens", tokens, ("doc_id", "start_char", "end_char", "tag")),
                               ("entities", ents, ("doc_id", "start_char", "end_char", "label")),
                               ("sentences", sent_starts, ("doc_id", "start_char"))):
        columns = list(zip(*rows)) if rows else [[] for _ in names]
        write_deltalake(str(out / table), pa.table({n: pa.array(c, pa.string() if n in ("doc_id", "tag", "label") else pa.int64())
                                                    for n, c in zip(names, columns)}))


# doc a: Ann mistagged and "Paris." one token (6 of 10 tags); Bob right, Ann as ORG, Paris on the
# wrong span; sentence starts 0, 8 and 21 (= 22, after the space). Doc b: all right but Carol's tag.
TOKENS = [("a", 0, 3, "NNP"), ("a", 4, 7, "VBD"), ("a", 8, 11, "NN"), ("a", 12, 14, "IN"), ("a", 15, 21, "NNP"),
          ("a", 22, 26, "RB"), ("a", 27, 29, "PRP"), ("a", 30, 34, "VBN"), ("a", 34, 35, "."),
          ("b", 0, 4, "NNP"), ("b", 5, 10, "VBD"), ("b", 11, 16, "NN"), ("b", 16, 17, ".")]
ENTS = [("a", 0, 3, "PERSON"), ("a", 8, 11, "ORG"), ("a", 15, 21, "GPE"), ("b", 0, 4, "ORG"), ("b", 11, 16, "PERSON")]
SENTS = [("a", 0), ("a", 8), ("a", 21), ("b", 0)]


def test_predictions_are_read_from_the_output_tables(tmp_path):
    write_output(tmp_path, TOKENS, ENTS, SENTS)
    predicted = ev.corpus_nlp_predictions(str(tmp_path))
    assert sorted(predicted) == ["a", "b"]
    assert sorted(predicted["b"].tokens) == [(0, 4, "NNP"), (5, 10, "VBD"), (11, 16, "NN"), (16, 17, ".")]
    assert sorted(predicted["a"].ents) == [(0, 3, "PERSON"), (8, 11, "ORG"), (15, 21, "GPE")]
    assert sorted(predicted["a"].sent_starts) == [0, 8, 21]


def test_evaluate_prints_the_model_and_the_baseline_on_the_same_documents(tmp_path, monkeypatch, capsys):
    """Two corpus-nlp runs (Ray replaced by hand-made outputs): the model's and the baseline's."""
    outputs = {"mine": (TOKENS, ENTS, SENTS), "theirs": (TOKENS[:9], ENTS[:1], SENTS[:3])}  # theirs: nothing for b
    runs = []

    def fake_run(config):
        texts = pq.read_table(config.input).column("text").to_pylist()
        runs.append((config.model, texts))
        write_output(Path(config.output), *outputs[config.model])
        return SimpleNamespace(errors=0, seconds=1.0)

    monkeypatch.setattr(ev, "run", fake_run)
    report = tmp_path / "report.json"
    ev.command(write_gold(tmp_path / "gold.jsonl"), model="mine", baseline="theirs", nlp_pipe=False, report=str(report))
    assert runs == [("mine", [GOLD[0]["text"], GOLD[1]["text"]]), ("theirs", [GOLD[0]["text"], GOLD[1]["text"]])]
    result = json.loads(report.read_text())
    mine, theirs = result["corpus_nlp"], result["baseline"]["corpus_nlp"]
    # mine: tags 6 + 3 of 14; entities 3 right of 5 predicted (b's two), 5 gold; sentences {0, 8, 22} + {0} of 3
    assert (mine["tag_accuracy"], mine["ent_precision"], mine["ent_recall"], mine["ent_f1"], mine["sent_f1"]) == (
        round(9 / 14, 4), 0.6, 0.6, 0.6, 0.8571)
    # theirs on the same 2 documents: b predicted nothing
    assert (theirs["tag_accuracy"], theirs["ent_precision"], theirs["ent_recall"], theirs["sent_f1"]) == (
        round(6 / 14, 4), 1.0, 0.2, 0.6667)
    assert theirs["documents"] == mine["documents"] == 2 and mine["gold_entities"] == 5
    assert mine["ent_f1_se"] > 0 and result["baseline"]["model"] == "theirs"
    printed = capsys.readouterr().out
    assert "mine" in printed and "theirs" in printed and "0.6429 ±" in printed and "0.3333 ±" in printed


def test_heldout_keeps_only_the_test_split_of_the_training_job(tmp_path):
    from jobs.train_default import DEV_SHARES
    from operators.scoring import read_gold
    from operators.training import split_of

    gold = read_gold(write_gold(tmp_path / "gold.jsonl"))
    kept = ev.heldout(gold * 200)
    assert all(split_of(d.id, DEV_SHARES) == "test" for d in kept)
    assert [d.id for d in ev.heldout(gold)] == [d.id for d in gold if split_of(d.id, DEV_SHARES) == "test"]


@pytest.mark.skipif(not (EWT / "gold_dev.jsonl").exists(), reason="needs ../shared/data/ewt")
def test_the_test_split_is_the_one_the_shipped_scores_were_measured_on():
    """124 of the 318 gold_dev documents, the same ones since the first shipped heads: a change of
    DEV_SHARES or of split_of would score the model on documents it may have trained on."""
    from operators.scoring import read_gold

    ids = sorted(d.id for d in ev.heldout(read_gold(EWT / "gold_dev.jsonl")))
    assert len(ids) == 124
    assert hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16] == TEST_SPLIT_DIGEST


TEST_SPLIT_DIGEST = "24c48d6373ba18bd"  # sha256 of the sorted ids, one a line
