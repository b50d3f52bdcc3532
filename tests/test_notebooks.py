"""Every notebook runs top to bottom on a real (toy) run, so the analysis examples cannot rot.

Cells are executed in order in one namespace from the notebooks folder, as a kernel would;
no Jupyter is needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from label_helpers import ROOT, SMOKE_PROMPTS, TOY

from workflows.label import main

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def run_notebook(path: Path) -> dict:
    namespace: dict = {"__name__": "__notebook__"}
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)
    return namespace


def test_explore_run_notebook_runs_on_a_labelled_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = ROOT / "notebooks" / "explore_run.ipynb"
    assert main(["--config", TOY, "--output", str(tmp_path), "--run-id", "nb", "--run.backend", "local"]) == 0
    monkeypatch.setenv("PARMFLOW_RUN", str(tmp_path / "nb"))
    monkeypatch.chdir(notebook.parent)
    namespace = run_notebook(notebook)
    assert len(namespace["per_search"]) == len(SMOKE_PROMPTS) * 2  # images_per_prompt in toy.yaml
    assert namespace["sheet"].width == 8 * len(SMOKE_PROMPTS) * 2  # one 8 px tile per search


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_is_valid_and_compiles(notebook: Path) -> None:
    cells = json.loads(notebook.read_text())["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert code and all(not cell["outputs"] for cell in code)  # committed without outputs
    for cell in code:
        compile("".join(cell["source"]), notebook.name, "exec")
