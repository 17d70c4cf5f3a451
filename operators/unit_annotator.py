"""The pipeline actor's work: annotate whole units and write their data files.

Ray Data hands each actor one unit at a time, as the one-row table a read task made
(operators/units.py: the unit's descriptor, and its ids, texts and sources as lists). The actor annotates a unit's rows batch by batch,
writes the unit's four data files (operators/writer.py) and returns one stats row per unit, which
the driver commits. A unit whose files cannot be written comes back with status "failed" and no
files; documents that fail inside a unit are written with status=error as usual.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time

import pyarrow as pa

from . import schema
from .annotate import Annotator, describe
from .config import AnnotatorConfig
from .units import SOURCE_COLUMN, unit_rows
from .writer import UnitWriter

log = logging.getLogger(__name__)

_EMPTY_STATS = {"documents": 0, "errors": 0, "tokens": 0, "words": 0, "sentences": 0, "entities": 0,
                "first_error": None, "vector_width": 0, "forward_seconds": 0.0, "host_seconds": 0.0}


class UnitAnnotator:
    """`UnitAnnotator(annotator config, output)(block) -> one stats row per unit in the block`."""

    def __init__(self, config: AnnotatorConfig, output: str, use_gpu: bool = False):
        self.annotator = Annotator(config, use_gpu=use_gpu)
        self.config = config
        self.output = output
        self.worker = json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "raylet_pid": os.environ.get("RAY_RAYLET_PID"),  # one raylet per node
                "node_id": os.environ.get("RAY_NODE_ID"),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "device": "gpu" if use_gpu else "cpu",
            }
        )

    def __call__(self, block: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self.process(unit, rows) for unit, rows in unit_rows(block)], schema=schema.UNIT_STATS_SCHEMA)

    def process(self, unit: str, rows: pa.Table) -> dict:
        start, started = time.perf_counter(), time.time()
        key = json.loads(unit)["key"]
        forward, host = self.annotator.forward_seconds(), self.annotator.host_seconds()
        writer = UnitWriter(self.output, key, self.config.pooling, self.config.precision)
        batch = self.config.batch_size
        columns = [self.config.id_column, self.config.text_column, SOURCE_COLUMN]
        try:
            for offset in range(0, rows.num_rows, batch):
                writer.write(self.annotator(rows.select(columns).slice(offset, batch)))
            files = writer.finish()
        except (OSError, pa.ArrowException) as exc:  # unwritable output: reported per unit, retried next run
            writer.abort()
            log.warning("unit %s failed: %s", key, describe(exc))
            return {**_EMPTY_STATS, "unit": unit, "status": "failed", "error": describe(exc), "files": "[]",
                    "seconds": time.perf_counter() - start, "started": started, "worker": self.worker}
        return {"unit": unit, "status": "ok", "error": None, "files": json.dumps([f.to_dict() for f in files]),
                **writer.stats, "first_error": writer.first_error, "vector_width": writer.vector_width,
                "forward_seconds": self.annotator.forward_seconds() - forward, "host_seconds": self.annotator.host_seconds() - host,
                "seconds": time.perf_counter() - start, "started": started, "worker": self.worker}
