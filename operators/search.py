"""Semantic search over OUTPUT's sentence vectors, streamed: memory is bounded by k and a batch.

The query is embedded by the same pipeline that produced the vectors (the one OUTPUT's
configuration names), through the same operator, so it is pooled exactly like the corpus sentences.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .annotate import Annotator
from .config import AnnotatorConfig
from .errors import OutputError
from .output import Output
from .query import versions

COLUMNS = ["doc_id", "source", "sent_idx", "start_char", "end_char", "vector"]


def output_model(output: str) -> str:
    """The pipeline name OUTPUT was annotated with (as given to --model)."""
    run = Output(output).fingerprint()
    if not run:
        raise OutputError(f"{output} has no _corpus_nlp/run.json: is it a corpus-nlp output? Pass --model.")
    return run.get("model_name") or run["model"].split("-")[0]


def embed_query(text: str, model: str, pooling: str = "mean") -> np.ndarray:
    """Unit-length vector of `text`: the mean of its sentence vectors, pooled as the corpus was."""
    annotator = Annotator(AnnotatorConfig(model=model, pooling=pooling))
    out = annotator(pa.table({"id": [0], "text": [text]}))
    vectors = [s["vector"] for s in out.column("sentences")[0].as_py() if s["vector"] is not None]
    if not vectors:
        raise ValueError("the query has no text to embed")
    query = np.mean(np.asarray(vectors, dtype=np.float32), axis=0)
    return query / max(np.linalg.norm(query), 1e-12)


def _batches(output: str, batch_rows: int):
    """The sentences table at OUTPUT's snapshot, a batch at a time (only the columns searched)."""
    version = (versions(output) or {}).get("sentences")
    dataset = Output(output).table("sentences", version=version).to_pyarrow_dataset()
    yield from dataset.to_batches(columns=COLUMNS, batch_size=batch_rows)


def nearest(output: str, query: np.ndarray, k: int = 10, batch_rows: int = 8192) -> pa.Table:
    """The k sentences with the highest cosine to `query` (unit length), best first.

    Reads the sentences table batch by batch (only the keys, offsets and vectors) and keeps a
    running top k, so memory does not grow with the corpus.
    """
    best_scores = np.empty(0, dtype=np.float32)
    best_rows: pa.Table | None = None
    for batch in _batches(output, batch_rows):
        rows = pa.Table.from_batches([batch]).filter(pc.is_valid(batch.column("vector")))
        if rows.num_rows == 0:
            continue
        vectors = rows.column("vector").combine_chunks()
        matrix = pc.list_flatten(vectors).to_numpy().reshape(len(vectors), -1)
        norms = np.linalg.norm(matrix, axis=1)
        scores = (matrix @ query) / np.maximum(norms, 1e-12)
        keep = np.argsort(-scores, kind="stable")[:k]
        candidates = rows.take(pa.array(keep)).drop_columns(["vector"])
        merged_scores = np.concatenate([best_scores, scores[keep].astype(np.float32)])
        merged = candidates if best_rows is None else pa.concat_tables([best_rows, candidates])
        order = np.argsort(-merged_scores, kind="stable")[:k]
        best_scores, best_rows = merged_scores[order], merged.take(pa.array(order))
    if best_rows is None:
        return pa.table({c: [] for c in COLUMNS[:-1]}).append_column("score", pa.array([], pa.float32()))
    return best_rows.append_column("score", pa.array(best_scores, pa.float32()))
