"""Every ```python block of docs/queries.md runs, in order, against a small output."""

import re
from pathlib import Path

from operators.manifest import OutputStore
from tests.fixture_output import write_fixture_output

DOC = Path(__file__).resolve().parents[1] / "docs" / "queries.md"


def test_query_recipes_run_as_written(tmp_path):
    out = write_fixture_output(tmp_path)
    OutputStore(out).commit({"key": "fixture", "path": "in", "identity": "{}",
                             "files": {t: f"{t}/part-fixture.parquet" for t in ("documents", "tokens", "entities", "sentences")}})
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 8
    namespace: dict = {}
    for block in blocks:
        exec(block.replace('OUTPUT = "out/demo"', f"OUTPUT = {out!r}"), namespace)
    assert namespace["failed"]["doc_id"].to_list() == ["d3"]
    assert namespace["orgs"]["text"].to_list() == ["Acme"]
    assert namespace["pairs"].height > 0 and namespace["top"]["text"].to_list() == ["Acme"]
    assert sorted(namespace["sentences"]["sentence"].to_list())[0] == "Acme hired Carol."
    assert namespace["committed_tokens"].height == 6
