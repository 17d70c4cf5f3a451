"""Every ```python block of docs/queries.md runs, in order, against a small output."""

import re
from pathlib import Path

from tests.fixture_output import write_fixture_output

DOC = Path(__file__).resolve().parents[1] / "docs" / "queries.md"


def test_query_recipes_run_as_written(tmp_path):
    out = write_fixture_output(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 8
    namespace: dict = {}
    for block in blocks:
        exec(block.replace('OUTPUT = "out/demo"', f"OUTPUT = {out!r}"), namespace)
    assert namespace["failed"]["doc_id"].to_list() == ["d3"]
    assert namespace["orgs"]["text"].to_list() == ["Acme"]
    assert namespace["pairs"].height > 0 and namespace["top"]["text"].to_list() == ["Acme"]
    assert sorted(namespace["sentences"]["sentence"].to_list())[0] == "Acme hired Carol."
    assert str(namespace["vectors"].schema["vector"]) == "Array(Float32, shape=(4,))"
    assert namespace["changed"].height == 3 and set(namespace["changed"]["change"]) == {"added"}  # everything since version 0
    assert namespace["before"].height == 0
    assert dict(namespace["labels"].iter_rows()) == {"PER": 5, "LOC": 2, "ORG": 2}


ROOT = DOC.parents[1]
REPO_DIRS = ("bench", "data", "deploy", "docs", "jobs", "models", "operators", "tests")
NOT_TRACKED: set[str] = set()  # paths a page may name that git does not track


def _markdown_files() -> list[Path]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "models").glob("*/README.md"))]
    return pages + [ROOT / d / "README.md" for d in REPO_DIRS if (ROOT / d / "README.md").exists()]


def test_links_and_paths_in_the_docs_exist():
    """Every relative Markdown link resolves, and every path into the repository a page names exists."""
    missing = []
    for page in _markdown_files():
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor
            if not (page.parent / target.split("#")[0]).exists():
                missing.append(f"{page.relative_to(ROOT)}: link {target}")
        dirs = "|".join(REPO_DIRS)
        paths = re.findall(r"`((?:%s)/[^`\s*{}<>]*)`" % dirs, text)  # `bench/README.md`, `deploy/kuberay/`
        # in running text: bench/PERFLOG.md, not a git revision's d391b17:bench/PERFLOG.md
        paths += re.findall(r"(?<![\w/.:-])((?:%s)/[\w./-]*\w\.(?:md|py|sh|ya?ml|json|parquet))\b" % dirs, text)
        for path in paths:
            path = path.rstrip("/.,")
            if path not in NOT_TRACKED and not (ROOT / path).exists():
                missing.append(f"{page.relative_to(ROOT)}: path {path}")
    assert not missing, "\n".join(missing)
