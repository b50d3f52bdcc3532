"""Recipes: YAML plus overrides, validated; every mistake names the file and the field path."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.config import JobConfig, load_config, parse_overrides
from schemas.errors import ConfigError


def recipe(**sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "generator": {"kind": "toy", "checkpoint": "toy", "resources": {"replicas": 2, "max_batch": 16}},
        "judge": {"kind": "toy", "checkpoint": "toy"},
        "search": {"strategy": "parm", "n": 4},
        "input": {"uri": "prompts.jsonl"},
        "output": {"uri": "out"},
    }
    base.update(sections)
    return base


def write_recipe(tmp_path: Path, raw: dict[str, Any] | str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw), encoding="utf-8")
    return path


def load_error(tmp_path: Path, edit: Callable[[dict[str, Any]], object]) -> tuple[Path, str]:
    """Write ``recipe()`` changed by ``edit`` and return its path and the ConfigError message."""
    raw = recipe()
    edit(raw)
    path = write_recipe(tmp_path, raw)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return path, str(info.value)


def test_load_config_reads_a_recipe(tmp_path: Path) -> None:
    config = load_config(write_recipe(tmp_path, recipe()))

    assert isinstance(config, JobConfig)
    assert config.generator.resources.replicas == 2 and config.generator.resources.max_batch == 16
    assert config.judge is not None and config.judge.kind == "toy"
    assert config.search.strategy == "parm" and config.search.n == 4
    assert config.search.threshold == 0.5  # a default fills what the recipe leaves out
    assert config.run.backend == "ray"


def test_parse_overrides_nests_and_coerces() -> None:
    parsed = parse_overrides(
        ["--search.n", "8", "--output.uri=s3://b/x", "--search.prune", "false", "--run.max-in-flight", "3"]
    )
    assert parsed == {
        "search": {"n": 8, "prune": False},
        "output": {"uri": "s3://b/x"},
        "run": {"max_in_flight": 3},
    }
    assert parse_overrides(["--output.run_id", "null", "--search.threshold=0.25"]) == {
        "output": {"run_id": None},
        "search": {"threshold": 0.25},
    }


def test_overrides_are_merged_over_the_recipe(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, recipe())
    config = load_config(path, parse_overrides(["--search.n", "8", "--output.uri=s3://b/x"]))

    assert config.search.n == 8
    assert config.search.strategy == "parm"  # siblings of an overridden field are kept
    assert config.output.uri == "s3://b/x"
    assert config.generator.resources.replicas == 2


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--x"], "--x: missing value"),
        (["--search.n", "8", "--search.seed"], "--search.seed: missing value"),
        (["search.n", "8"], "expected --section.field VALUE"),
        (["--"], "expected --section.field VALUE"),
        (["--search", "3", "--search.n", "8"], "'search' is set to a value already"),
        (["--search.n", "[1,"], "--search.n: not a valid value"),
    ],
)
def test_bad_overrides_are_clear(args: list[str], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_overrides(args)
    assert words in str(info.value)


def test_an_override_of_the_wrong_type_names_the_field(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, recipe())
    with pytest.raises(ConfigError) as info:
        load_config(path, parse_overrides(["--search.n", "many"]))
    assert str(path) in str(info.value) and "(--search.n) search.n:" in str(info.value)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda r: r.update(serach={"n": 3}), "serach"),
        (lambda r: r["search"].update(nn=3), "search.nn"),
        (lambda r: r["generator"]["resources"].update(gpus=1), "generator.resources.gpus"),
        (lambda r: r["judge"].update(questoins="q.yaml"), "judge.questoins"),
    ],
)
def test_unknown_key_names_the_dotted_path_and_the_file(tmp_path: Path, edit: Any, field: str) -> None:
    path, message = load_error(tmp_path, edit)
    assert_names_line(path, message, field)
    assert f"{field}: Extra inputs are not permitted" in message


def assert_names_line(path: Path, message: str, field: str) -> None:
    """The message points at ``file:line`` of the field's key (its section's, if it is missing)."""
    found = re.search(rf"\n  {re.escape(str(path))}:(\d+): {re.escape(field)}: ", message)
    assert found, message
    line = path.read_text().splitlines()[int(found.group(1)) - 1]
    assert line.strip().startswith(f"{field.split('.')[-1]}:"), line


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda r: r["search"].update(n="eight"), "search.n"),
        (lambda r: r["search"].update(strategy="best_of_m"), "search.strategy"),
        (lambda r: r["generator"]["resources"].update(replicas=0), "generator.resources.replicas"),
        (lambda r: r["input"].update(format="csv"), "input.format"),
        (lambda r: r.update(output="out"), "output"),
        (lambda r: r.pop("generator"), "generator"),
    ],
)
def test_wrong_type_or_value_names_the_field(tmp_path: Path, edit: Any, field: str) -> None:
    path, message = load_error(tmp_path, edit)
    assert str(path) in message
    if field == "generator":  # a missing section has no line to point at
        assert f"\n  {field}: Field required" in message
    else:
        assert_names_line(path, message, field)


def test_missing_recipe_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: recipe not found"):
        load_config(missing)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, "generator:\n  kind: toy\n  checkpoint: [toy\ninput:\n  uri: p.jsonl\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}:4: not valid YAML" in str(info.value)


def test_a_recipe_must_be_a_mapping(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, "- generator\n- judge\n")
    with pytest.raises(ConfigError, match="a recipe is a mapping of sections, got list"):
        load_config(path)


def test_judging_strategies_need_a_judge(tmp_path: Path) -> None:
    path, message = load_error(tmp_path, lambda r: r.pop("judge"))
    assert str(path) in message and "search.strategy='parm' needs a judge section" in message

    plain = load_config(path, parse_overrides(["--search.strategy", "sample"]))
    assert plain.judge is None and plain.search.strategy == "sample"
