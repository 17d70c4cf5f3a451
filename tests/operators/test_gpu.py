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
    from operators.config import AnnotateConfig

    config = AnnotateConfig(input="-", output="-", model=request.getfixturevalue(fixture))
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
