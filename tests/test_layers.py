"""The layering of docs/architecture.md, checked: what each package may import, and that the
driver side stays free of torch (it would cost every driver and writer process seconds and
hundreds of MiB for nothing)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAY_NOT_IMPORT = {
    "schemas": {"actors", "workflows", "torch", "ray", "transformers"},
    "actors": {"workflows"},
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(MAY_NOT_IMPORT))
def test_packages_import_only_what_their_layer_allows(package: str) -> None:
    offences = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & MAY_NOT_IMPORT[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offences.items() if v} == {}


def test_the_driver_and_the_writer_do_not_load_torch() -> None:
    code = (
        "import sys, workflows.label, workflows.output.sink, workflows.driver.driver; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
