from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402

from tests import pipelines  # noqa: E402

SAMPLE_TEXTS = [
    "Alice Smith works for Acme Corp in Paris. She flew to London last week.",
    "Bob visited Berlin with Carol Jones.\n\nThe company Globex hired ten engineers in Rome.",
    "A short one.",
    "We met at the station. It was raining. Nobody had an umbrella, so we ran.",
]


def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    return pipelines.build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def trf_pipeline_dir(tmp_path_factory, tiny_bert_dir):
    return str(pipelines.build_trf_pipeline(tmp_path_factory.mktemp("trf") / "pipeline", tiny_bert_dir))


@pytest.fixture(scope="session")
def tok2vec_pipeline_dir(tmp_path_factory):
    return str(pipelines.build_tok2vec_pipeline(tmp_path_factory.mktemp("t2v") / "pipeline"))


@pytest.fixture(scope="session")
def minilm_pipeline_dir(tmp_path_factory):
    return str(pipelines.build_minilm_pipeline(tmp_path_factory.mktemp("minilm") / "pipeline"))


@pytest.fixture(scope="session")
def _ray_session():
    import ray

    yield
    ray.shutdown()


@pytest.fixture
def ray_local(_ray_session):
    """One local Ray shared by the tests (starting Ray costs seconds); started again if a test
    (the multi-node ones) shut it down."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray


def write_corpus(path, texts, ids=None, *, id_type=pa.int64(), text_column="text", id_column="id"):
    ids = list(range(len(texts))) if ids is None else ids
    table = pa.table({id_column: pa.array(ids, id_type), text_column: pa.array(texts, pa.string())})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="session")
def s3_server():
    """A loopback S3 API server (moto) for the whole session."""
    from tests.s3 import S3Server

    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """The S3 server's environment set for this test, and a fresh bucket: yields s3://bucket."""
    from tests.s3 import apply_env

    apply_env(monkeypatch, s3_server)
    return f"s3://{s3_server.bucket()}"
