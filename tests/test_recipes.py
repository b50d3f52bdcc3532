"""Every recipe in configs/ validates and names real models, so recipes cannot drift from the code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from actors.janus.generator import parse_options
from actors.judges.common import parse_options as parse_judge_options
from actors.judges.llava import LlavaOptions
from actors.loading import TINY_BUILDERS, TINY_PREFIX
from actors.registry import GENERATORS, JUDGES
from actors.showo.config import ShowoOptions
from schemas.config import JudgeSpec, load_config

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


def test_showo_paper_recipe_is_the_papers_setup() -> None:
    """The values of the paper's PARM run (Image-Generation-CoT main.py defaults and parm.py),
    parsed by the same option parsers the loaders use."""
    config = load_config(ROOT / "configs" / "showo_parm.yaml")
    search = config.search
    assert (search.strategy, search.n, search.images_per_prompt) == ("parm", 20, 4)
    assert (search.decision, search.clarity_every) == ("sample", 1)
    options = ShowoOptions.parse(config.generator.options)
    assert (options.num_steps, options.guidance_scale, options.temperature) == (18, 1.75, 1.0)
    assert options.temperature_schedule == "reference" and config.generator.dtype == "float32"
    assert (options.head_dtype, options.vq_dtype) == (None, None)
    assert config.generator.checkpoint == "showlab/show-o"
    assert_reads_the_judge_as_the_paper(config.judge)


def test_janus_paper_recipe_reads_the_judge_as_the_paper() -> None:
    config = load_config(ROOT / "configs" / "janus_parm.yaml")
    search = config.search
    assert (search.strategy, search.n, search.images_per_prompt, search.decision) == ("parm", 20, 4, "sample")
    assert parse_options(config.generator.options).num_steps == 12
    assert config.generator.checkpoint == "deepseek-community/Janus-Pro-7B"
    assert_reads_the_judge_as_the_paper(config.judge)


def assert_reads_the_judge_as_the_paper(judge: JudgeSpec | None) -> None:
    """fp16 (LLaVA-NeXT's loader default), scores after the sampling processors, one padded view."""
    assert judge is not None and judge.dtype == "float16"
    options = parse_judge_options(judge.options, LlavaOptions, "llava")
    assert (options.score, options.image_layout) == ("generate", "pad")
