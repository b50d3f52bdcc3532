"""docs/reliability.md stays true: every test it names exists, and every fault test is named there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def test_every_test_the_doc_names_exists() -> None:
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", DOC)
    missing = [
        f"{module}::{name}" for module, name in named if name not in defined_tests(ROOT / "tests" / module)
    ]
    assert len(named) > 40 and missing == []


def test_every_fault_test_is_in_the_doc() -> None:
    unlisted = [
        f"{path.name}::{name}"
        for path in sorted((ROOT / "tests").glob("test_reliability_*.py"))
        if path.name != "test_reliability_doc.py"
        for name in sorted(defined_tests(path))
        if f"`{path.name}::{name}`" not in DOC and name != "test_the_corpus_and_its_table_agree"
    ]
    assert unlisted == []
