"""docs/architecture.md stays true to the tree: every file it names exists, every module of
workflows/ is in its map, and every link it makes stays inside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
TEXT = DOC.read_text(encoding="utf-8")
NAMED = set(re.findall(r"\b(?:workflows|actors)/[\w/]+\.py\b", TEXT))


def defines_something(path: Path) -> bool:
    """A package ``__init__.py`` holding only its docstring has nothing to map."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def test_every_file_the_doc_names_exists() -> None:
    assert NAMED and sorted(name for name in NAMED if not (ROOT / name).is_file()) == []


def test_every_module_of_workflows_is_in_the_map() -> None:
    modules = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "workflows").rglob("*.py")
        if path.name != "__init__.py" or defines_something(path)
    }
    assert sorted(modules - NAMED) == []


def test_every_link_stays_inside_the_repository() -> None:
    targets = [t for t in re.findall(r"\]\(([^)#\s]+)", TEXT) if not t.startswith(("http://", "https://"))]
    outside = [t for t in targets if not (DOC.parent / t).resolve().is_relative_to(ROOT)]
    missing = [t for t in targets if not (DOC.parent / t).resolve().exists()]
    assert targets and (outside, missing) == ([], [])
