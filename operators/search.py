"""Semantic search over OUTPUT's sentence vectors, streamed: memory is bounded by k and a batch.

The query is embedded by the same pipeline that produced the vectors (the one OUTPUT's manifest
names), through the same operator, so it is pooled exactly like the corpus sentences.
"""

from __future__ import annotations

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .annotate import Annotator
from .config import AnnotateConfig
from .errors import OutputError
from .manifest import OutputStore

COLUMNS = ["doc_id", "sent_idx", "start_char", "end_char", "vector"]


def output_model(output: str) -> str:
    """The pipeline name OUTPUT was annotated with (as given to --model)."""
    run = OutputStore(output).read_json(OutputStore(output).path("_manifest", "run.json"))
    if not run:
        raise OutputError(f"{output} has no _manifest/run.json: is it a corpus-nlp output? Pass --model.")
    return run.get("model_name") or run["model"].split("-")[0]


def embed_query(text: str, model: str, pooling: str = "mean") -> np.ndarray:
    """Unit-length vector of `text`: the mean of its sentence vectors, pooled as the corpus was."""
    annotator = Annotator(AnnotateConfig(input="-", output="-", model=model, pooling=pooling))
    out = annotator(pa.table({"id": [0], "text": [text]}))
    vectors = [s["vector"] for s in out.column("sentences")[0].as_py() if s["vector"] is not None]
    if not vectors:
        raise ValueError("the query has no text to embed")
    query = np.mean(np.asarray(vectors, dtype=np.float32), axis=0)
    return query / max(np.linalg.norm(query), 1e-12)


def sentence_files(output: str) -> list[str]:
    fs, path = fsspec.core.url_to_fs(f"{output.rstrip('/')}/sentences")
    files = sorted(p for p in fs.find(path) if p.endswith(".parquet"))
    return [fs.unstrip_protocol(p) if "://" in output else p for p in files]


def _batches(parquet: pq.ParquetFile, batch_rows: int):
    """One row group at a time: asking for all of them at once buffers the whole file."""
    for group in range(parquet.num_row_groups):
        yield from parquet.iter_batches(batch_size=batch_rows, row_groups=[group], columns=COLUMNS)


def nearest(output: str, query: np.ndarray, k: int = 10, batch_rows: int = 8192) -> pa.Table:
    """The k sentences with the highest cosine to `query` (unit length), best first.

    Reads the sentence files batch by batch (only the offsets and vectors) and keeps a running
    top k, so memory does not grow with the corpus.
    """
    best_scores = np.empty(0, dtype=np.float32)
    best_rows: pa.Table | None = None
    for path in sentence_files(output):
        fs, local = fsspec.core.url_to_fs(path)
        with fs.open(local, "rb") as handle:
            for batch in _batches(pq.ParquetFile(handle, pre_buffer=False), batch_rows):
                rows = pa.Table.from_batches([batch]).filter(batch.column("vector").is_valid())
                if rows.num_rows == 0:
                    continue
                width = rows.schema.field("vector").type.list_size
                matrix = rows.column("vector").combine_chunks().values.to_numpy().reshape(-1, width)
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
