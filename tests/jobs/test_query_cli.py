import json

from typer.testing import CliRunner

from jobs.cli import app
from tests.fixture_output import write_fixture_output


def test_query_entities_as_json_csv_and_table(tmp_path):
    out = write_fixture_output(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["query", out, "entities", "--label", "PER", "--top", "2", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {"label": "PER", "text": "Bob", "mentions": 2, "documents": 2},
        {"label": "PER", "text": "Alice", "mentions": 2, "documents": 1},
    ]
    csv = runner.invoke(app, ["query", out, "labels", "--format", "csv"])
    assert csv.output.splitlines()[:2] == ["label,count,share", "PER,5,0.5555555555555556"]
    table = runner.invoke(app, ["query", out, "documents"])
    assert table.exit_code == 0 and "d1" in table.output and "text is null" in table.output
