import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from operators.annotate import Annotator
from operators.config import AnnotatorConfig
from operators.output import Output
from operators.schema import table_schema
from operators.search import embed_query, nearest, output_model
from operators.units import Piece, Unit
from operators.writer import UnitWriter

SENTENCES = [
    "Alice Smith works for Acme Corp in Paris.",
    "The weather was cold and grey all week.",
    "Bob visited London with Carol Jones.",
    "Prices rose sharply in October.",
    "We flew from Berlin to Rome last week.",
]


@pytest.fixture(scope="module")
def annotated_output(tmp_path_factory, trf_pipeline_dir):
    out = str(tmp_path_factory.mktemp("search") / "out")
    output = Output(out)
    output.create_tables(pa.int64())
    annotator = Annotator(AnnotatorConfig(model=trf_pipeline_dir))
    writer = UnitWriter(out, "unit", "mean")
    writer.write(annotator(pa.table({"id": [0, 1], "text": [" ".join(SENTENCES[:3]), " ".join(SENTENCES[3:])], "source": ["a", "a"]})))
    output.commit_units([(Unit("unit", (Piece("a", "{}", 0, 2),), 1), writer.finish())], "run", check=lambda: None)
    output.save_fingerprint({"model": "en_tiny_trf-0.0.1", "model_name": trf_pipeline_dir})
    return out


def test_each_sentence_finds_itself_first(annotated_output, trf_pipeline_dir):
    assert output_model(annotated_output) == trf_pipeline_dir
    found = []
    for text in SENTENCES:
        hits = nearest(annotated_output, embed_query(text, trf_pipeline_dir), k=3).to_pylist()
        assert len(hits) == 3 and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
        assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
        found.append((hits[0]["doc_id"], hits[0]["sent_idx"]))
    assert found == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]


def write_random_sentences(folder, n_rows, files=4, width=384):
    from deltalake import write_deltalake

    rng = np.random.default_rng(0)
    schema = table_schema("sentences", pa.int64())
    Output(str(folder)).create_tables(pa.int64())
    per_file = n_rows // files
    for f in range(files):
        vectors = rng.standard_normal((per_file, width), dtype=np.float32)
        table = pa.Table.from_arrays(
            [pa.array(np.arange(per_file) + f * per_file), pa.array(["a"] * per_file), pa.array(np.zeros(per_file, np.int32)),
             pa.array(np.zeros(per_file, np.int64)), pa.array(np.ones(per_file, np.int64)),
             pa.array(np.ones(per_file, np.int32)),
             pa.ListArray.from_arrays(pa.array(np.arange(per_file + 1, dtype=np.int32) * width), pa.array(vectors.ravel()))],
            schema=schema,
        )
        write_deltalake(str(folder / "sentences"), table, mode="append")
    Output(str(folder)).write_snapshot()


PEAK = """
import resource, sys, numpy as np
from operators.search import nearest
q = np.random.default_rng(1).standard_normal(384).astype(np.float32); q /= np.linalg.norm(q)
hits = nearest(sys.argv[1], q, k=10)
assert hits.num_rows == 10
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_memory_stays_bounded_when_the_corpus_grows_tenfold(tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    write_random_sentences(small, 20_000)   # 30 MB of vectors
    write_random_sentences(large, 200_000)  # 300 MB of vectors
    peak = {}
    for name, folder in (("small", small), ("large", large)):
        result = subprocess.run([sys.executable, "-c", PEAK, str(folder)], capture_output=True, text=True, check=True)
        peak[name] = int(result.stdout.strip()) / 1024  # ru_maxrss is in KiB: MiB
    print(f"search process peak RSS: 20k sentences {peak['small']:.0f} MiB, 200k sentences {peak['large']:.0f} MiB")
    # loading the large corpus's vectors would add 293 MiB; streaming adds at most a batch or two
    assert peak["large"] < peak["small"] + 32, peak
