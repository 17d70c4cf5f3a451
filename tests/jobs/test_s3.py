"""Input and OUTPUT on s3:// against a loopback S3 API server (moto): annotate with the driver killed
-9 at its first output object, resume, a nightly with one file changed and one added, query and
search; every document exactly once."""

import json
import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest

from jobs.annotate import run
from operators import query
from operators.config import RunConfig
from operators.search import embed_query, nearest
from tests.conftest import SAMPLE_TEXTS
from tests.jobs.helpers import assert_each_document_once, unique_texts

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def write(url, ids, texts):
    pl.DataFrame({"id": ids, "text": texts}).write_parquet(url)  # polars' defaults, straight to S3


def test_the_nightly_cycle_on_s3_with_the_driver_killed_at_its_first_output_object(s3, s3_server, tok2vec_pipeline_dir):
    import ray

    ray.shutdown()  # each run starts its own Ray, in this environment (the S3 endpoint)
    bucket = s3.removeprefix("s3://")
    ids = {f: [f"f{f}-{i}" for i in range(12)] for f in range(4)}
    texts = {f: unique_texts(SAMPLE_TEXTS, 12, f"{f}-") for f in range(4)}
    for f in range(4):
        write(f"{s3}/in/f{f}.parquet", ids[f], texts[f])

    command = [sys.executable, "-m", "jobs.annotate", f"{s3}/in", f"{s3}/out", "--model", tok2vec_pipeline_dir,
               "--unit-mb", "0.0003", "--actors", "2", "--commit-interval", "0"]
    env = {**os.environ, "CORPUS_NLP_FAULTS": json.dumps({"delay_s": 0.5})}
    driver = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not any("/part-" in key for key in s3_server.keys(bucket, "out/")):  # an actor wrote a data file
            assert driver.poll() is None and time.time() < deadline, "the run wrote no output object"
            time.sleep(0.05)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
        driver.wait()
    assert any(key.startswith("out/_corpus_nlp/lock") for key in s3_server.keys(bucket, "out/"))  # it died holding it

    resumed = run(RunConfig(input=f"{s3}/in", output=f"{s3}/out", model=tok2vec_pipeline_dir, actors=2, resume=True,
                            unit_mb=0.0003))
    assert resumed.status == "ok"
    first_night = query.versions(f"{s3}/out")
    assert_each_document_once(f"{s3}/out", [i for f in range(4) for i in ids[f]])

    texts[1] = [texts[1][0] + " Changed tonight."] + texts[1][1:]
    write(f"{s3}/in/f1.parquet", ids[1], texts[1])
    ids[4], texts[4] = [f"f4-{i}" for i in range(7)], unique_texts(SAMPLE_TEXTS, 7, "4-")
    write(f"{s3}/in/f4.parquet", ids[4], texts[4])
    night = run(RunConfig(input=f"{s3}/in", output=f"{s3}/out", model=tok2vec_pipeline_dir, actors=2, resume=True))
    assert night.files == {"new": [f"{s3}/in/f4.parquet"], "changed": [f"{s3}/in/f1.parquet"], "removed": []}
    everything = [i for f in range(5) for i in ids[f]]
    assert_each_document_once(f"{s3}/out", everything)
    then = query.scan(f"{s3}/out", "documents", version=first_night["documents"]).collect()
    assert then.height == 48 and then.filter(pl.col("doc_id") == "f1-0")["n_chars"].item() == len(texts[1][0]) - len(" Changed tonight.")
    assert all(n <= 3 for n in query.Output(f"{s3}/out").file_counts().values())

    hits = nearest(f"{s3}/out", embed_query(texts[4][2], tok2vec_pipeline_dir), k=1).to_pylist()
    assert hits[0]["doc_id"] == "f4-2" and hits[0]["source"] == f"{s3}/in/f4.parquet"
    with_text = query.sentence_texts(f"{s3}/out").filter(pl.col("doc_id") == "f4-2").collect()
    assert with_text["text"].to_list()[0] in texts[4][2]
