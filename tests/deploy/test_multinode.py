"""Two worker nodes that each declare one GPU (run on CPU): one pipeline actor per declared GPU,
actors on both nodes, and complete output."""

import pytest

from jobs.annotate import run
from operators.config import RunConfig
from tests.conftest import SAMPLE_TEXTS
from tests.jobs.helpers import assert_each_document_once, make_file, unique_texts

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_one_pipeline_per_declared_gpu_on_both_nodes(tmp_path, tok2vec_pipeline_dir):
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    ids = []
    for f in range(3):
        ids += make_file(tmp_path / "in", f"f{f}.parquet", unique_texts(SAMPLE_TEXTS, 4, f"{f}-"), f"f{f}")
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=2, num_gpus=1) for _ in range(2)]
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        report = run(RunConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out"), model=tok2vec_pipeline_dir,
                               unit_mb=0.0001, force_cpu=True))
        worker_raylets = {str(n.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid) for n in workers}
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert (report.actors, report.gpus_per_actor) == (2, 1.0)  # one actor per declared GPU
    assert report.units["processed"] >= 6
    placed = {(unit["node"], unit["actor"]) for unit in report.busy}
    assert {raylet for raylet, _ in placed} == worker_raylets  # actors on both worker nodes, none on the head
    assert len(placed) == 2  # one pipeline per node, each loaded once
    assert {unit["cuda_visible_devices"] for unit in report.busy} == {"0"}  # Ray gave each its node's GPU
    assert_each_document_once(tmp_path / "out", ids)
