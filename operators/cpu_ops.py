"""thinc's CPU backend with its matrix products done by the BLAS that numpy ships.

thinc's `NumpyOps` multiplies matrices with blis; the OpenBLAS inside numpy's wheels is about three
times as fast on one thread for the heads' shapes (Maxout layers of a few hundred inputs over
thousands of rows), and those products are most of the heads' host work. thinc-apple-ops makes the
same substitution with Apple's Accelerate. Every other operation is NumpyOps' own, and the parser's
and entity recognizer's per-step products (`cblas()`, called from C) stay blis's.

A product summed in another order can differ in its last bits; the four tables are the same with
either backend (tests/operators/test_bulk_rules.py compares them on the EWT dev documents).
OpenBLAS takes its thread count from OMP_NUM_THREADS, which Ray sets to an actor's CPUs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from thinc.api import NumpyOps
from thinc.api import registry

NAME = "corpus_nlp_numpy_blas"


@registry.ops(NAME)
class NumpyBlasOps(NumpyOps):
    name = NAME

    def gemm(self, x: Any, y: Any, out: Any = None, trans1: bool = False, trans2: bool = False) -> Any:
        a = x.T if trans1 else x
        b = y.T if trans2 else y
        if out is None:
            return np.matmul(a, b)
        np.matmul(a, b, out=out)
        return out
