"""On a CUDA machine: the same annotations and vectors on the GPU as on the CPU.

Skipped where no GPU is visible (CI); run with `python -m pytest -m gpu` on a GPU machine.
"""

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import SAMPLE_TEXTS

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("fixture", ["trf_pipeline_dir", "tok2vec_pipeline_dir"])
def test_gpu_annotations_equal_cpu(request, fixture):
    from operators.annotate import Annotator
    from operators.config import AnnotatorConfig

    config = AnnotatorConfig(model=request.getfixturevalue(fixture))
    table = pa.table({"id": list(range(len(SAMPLE_TEXTS))), "text": SAMPLE_TEXTS})
    gpu = Annotator(config, use_gpu=True)(table)
    import spacy

    spacy.require_cpu()
    cpu = Annotator(config, use_gpu=False)(table)
    for column in ("tokens", "entities"):
        assert gpu.column(column).to_pylist() == cpu.column(column).to_pylist()
    for g, c in zip(gpu.column("sentences").to_pylist(), cpu.column("sentences").to_pylist()):
        for gs, cs in zip(g, c):
            np.testing.assert_allclose(gs["vector"], cs["vector"], rtol=1e-3, atol=1e-4)


def test_gpu_bf16_default_pipeline_agrees_with_fp32():
    """bf16 autocast on CUDA: tags and entities nearly all equal, sentence vectors cosine >= 0.99."""
    from pathlib import Path

    import pyarrow.parquet as pq

    from operators.annotate import Annotator
    from operators.config import AnnotatorConfig

    texts = pq.read_table(Path(__file__).parents[2] / "data" / "ewt_sample.parquet").column("text").to_pylist()
    table = pa.table({"id": list(range(len(texts))), "text": texts})
    out = {p: Annotator(AnnotatorConfig(precision=p), use_gpu=True)(table) for p in ("fp32", "bf16")}
    tags = {p: [t["tag"] for d in o.column("tokens").to_pylist() for t in d] for p, o in out.items()}
    assert len(tags["fp32"]) == len(tags["bf16"])
    assert np.mean(np.array(tags["fp32"]) == np.array(tags["bf16"])) >= 0.99
    vecs = {p: np.array([s["vector"] for d in o.column("sentences").to_pylist() for s in d]) for p, o in out.items()}
    cos = np.sum(vecs["fp32"] * vecs["bf16"], 1) / np.linalg.norm(vecs["fp32"], axis=1) / np.linalg.norm(vecs["bf16"], axis=1)
    assert cos.min() >= 0.99
