"""Every recipe in configs/ validates and names real models, so recipes cannot drift from the code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from actors.loading import TINY_BUILDERS, TINY_PREFIX
from actors.registry import GENERATORS, JUDGES
from schemas.config import load_config

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((ROOT / "configs").glob("*.yaml"))


def strings(node: Any) -> Iterator[str]:
    """Every string value anywhere in a parsed recipe."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def test_smoke_recipe_exists() -> None:
    assert (ROOT / "configs" / "smoke.yaml").is_file()


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_validates(path: Path) -> None:
    load_config(path)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_opens_with_the_command_that_runs_it(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("#"), f"{path.name}: line 1 must be a comment holding the command that runs it"
    words = first[1:].split()
    assert "workflows/label.py" in words, f"{path.name}:1: the command must run workflows/label.py"
    at = words.index("--config") if "--config" in words else -1
    assert at >= 0 and words[at + 1 : at + 2] == [f"configs/{path.name}"], (
        f"{path.name}:1: the command must pass --config configs/{path.name}"
    )


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_names_registered_models(path: Path) -> None:
    config = load_config(path)
    assert config.generator.kind in GENERATORS, f"{path.name}: generator.kind {config.generator.kind!r}"
    if config.judge is not None:
        assert config.judge.kind in JUDGES, f"{path.name}: judge.kind {config.judge.kind!r}"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    for value in strings(raw):
        if value.startswith(TINY_PREFIX):
            assert value[len(TINY_PREFIX) :] in TINY_BUILDERS, (
                f"{path.name}: unknown tiny checkpoint {value!r}"
            )


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_local_input_exists(path: Path) -> None:
    """A relative input path is read from the repository root, where the command runs."""
    uri = load_config(path).input.uri
    if "://" not in uri and not Path(uri).is_absolute():
        assert (ROOT / uri).exists(), f"{path.name}: input.uri {uri!r} does not exist in the repository"
