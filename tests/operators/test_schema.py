import re
from pathlib import Path

import pyarrow as pa

from operators.schema import SCHEMA_VERSION, TABLES, table_schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"


def test_schema_doc_lists_every_column_of_every_table():
    text = DOC.read_text()
    assert f"Schema version: **{SCHEMA_VERSION}**" in text
    for table in TABLES:
        section = re.search(rf"^## `{table}`\n(.*?)(?=^## |\Z)", text, re.S | re.M)
        assert section, f"docs/schema.md has no section for {table}"
        documented = re.findall(r"^\| `(\w+)` \|", section.group(1), re.M)
        assert documented == table_schema(table, pa.string()).names, table
