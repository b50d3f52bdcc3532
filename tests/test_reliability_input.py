"""Bad input at every door: broken prompt files (``fixtures/bad_prompts``) and broken recipes.

A bad row of a prompt file is the row's problem: it becomes an ``errors`` row naming file, line
and field, and every good row is labelled (exit 2). A source or recipe no run can work with is
the run's problem: refused with a message naming the file and line (or the override) and the
field, exit 1, before any model loads; only what a model must load to know (a tokenizer that
splits yes/no) is refused when it loads, still before any prompt is searched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from label_helpers import ROOT, committed_samples, prompt_ids
from s3_faults import free_port

from schemas.prompts import PromptRecord, read_prompts
from workflows.label import main
from workflows.serving import backends

CORPUS = ROOT / "tests" / "fixtures" / "bad_prompts"

ROW_ERRORS: dict[str, tuple[int, list[tuple[int, str | None, str]]]] = {
    # file: (good rows, [(line, field, words of the reason)])
    "truncated.jsonl": (3, [(4, None, "malformed JSON")]),
    "invalid_utf8.jsonl": (2, [(2, None, "invalid UTF-8")]),
    "huge_prompt.jsonl.gz": (2, [(2, "prompt", "more than the 8192 allowed (input.max_prompt_chars)")]),
    "wrong_types.jsonl": (
        2,
        [
            (2, "prompt", "expected a string, got int"),
            (3, "id", "expected a string or an integer, got a list"),
            (4, "metadata", "expected an object, got a string"),
            (5, "include", "expected a list of objects, got a string"),
            (6, None, "expected a JSON object, got a list"),
        ],
    ),
    "duplicate_ids.jsonl": (2, [(3, "id", "duplicate id 'a' (first on line 1)")]),
    "cut_short.jsonl.gz": (6, [(7, None, "the file is cut short or corrupt: EOFError")]),
}

RUN_ERRORS: dict[str, tuple[str | None, str]] = {
    # file: (field, words of the message)
    "empty.jsonl": (None, "no prompts: the source is empty"),
    "blank_lines.txt": (None, "no prompts: the source is empty"),
    "prompt_not_string.parquet": ("prompt", "column 'prompt' has type int64; expected string"),
    "no_prompt_column.parquet": ("prompt", "no 'prompt' column"),
    "not_parquet.parquet": (None, "not a readable Parquet file"),
}


def test_the_corpus_and_its_table_agree() -> None:
    files = {p.name for p in CORPUS.iterdir() if p.name != "README.md"}
    assert files == set(ROW_ERRORS) | set(RUN_ERRORS)
    readme = (CORPUS / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in files)


@pytest.fixture
def models_loaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every model the run builds, by kind (the in-process backend builds them in this process)."""
    loaded: list[str] = []

    def recording(build):
        def run(spec):
            loaded.append(spec.kind)
            return build(spec)

        return run

    monkeypatch.setattr(backends, "build_generator", recording(backends.build_generator))
    monkeypatch.setattr(backends, "build_judge", recording(backends.build_judge))
    return loaded


def toy_recipe(tmp_path: Path, **sections: dict) -> Path:
    """configs/toy.yaml with ``sections`` merged in, run in-process, written where a test can
    point at its lines."""
    recipe = yaml.safe_load((ROOT / "configs" / "toy.yaml").read_text())
    recipe["run"]["backend"] = "local"
    recipe["input"]["uri"] = str(ROOT / "configs" / "prompts" / "smoke.jsonl")
    recipe["output"]["uri"] = str(tmp_path / "out")
    for name, values in sections.items():
        recipe[name] = {**recipe.get(name, {}), **values}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def line_of(recipe: Path, key: str, section: str) -> int:
    """1-based line of ``key`` inside ``section`` of a recipe written by ``toy_recipe``."""
    lines = recipe.read_text().splitlines()
    start = lines.index(f"{section}:")
    return next(i for i in range(start, len(lines)) if lines[i].lstrip().startswith(f"{key}:")) + 1


@pytest.mark.parametrize("name", sorted(ROW_ERRORS))
def test_a_bad_row_becomes_an_errors_row_and_the_good_rows_are_labelled(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = str(CORPUS / name)
    recipe = toy_recipe(tmp_path, input={"uri": source})
    assert main(["--config", str(recipe), "--run-id", "r"]) == 2
    good, expected = ROW_ERRORS[name]
    errors = pq.read_table(tmp_path / "out" / "r" / "errors").to_pylist()
    assert [(e["kind"], e["source"], e["line"], e["field"]) for e in errors] == [
        ("input", source, line, field) for line, field, _ in expected
    ]
    assert all(words in e["reason"] for e, (_, _, words) in zip(errors, expected, strict=True))
    labelled = prompt_ids(committed_samples(str(tmp_path / "out" / "r")))
    records = [r for r in read_prompts(source) if isinstance(r, PromptRecord)]
    assert labelled == {r.prompt_id for r in records} and len(labelled) == good
    err = capsys.readouterr().err
    assert all(f"bad input row {source}:{line}: " in err for line, _, _ in expected)


@pytest.mark.parametrize("name", sorted(RUN_ERRORS))
def test_a_source_no_run_can_read_is_refused_before_any_model_loads(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], models_loaded: list[str]
) -> None:
    source = str(CORPUS / name)
    recipe = toy_recipe(tmp_path, input={"uri": source})
    assert main(["--config", str(recipe), "--run-id", "r"]) == 1
    field, words = RUN_ERRORS[name]
    err = capsys.readouterr().err
    assert err.startswith(f"parmflow-label: {source}: ") and words in err
    assert field is None or f"field {field!r}" in err
    assert models_loaded == [] and not (tmp_path / "out" / "r" / "_commits").exists()


def pickled_checkpoint(tmp_path: Path) -> str:
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(b"a pickle would run code when loaded")
    return str(folder)


RECIPE_ERRORS = {
    # case: (sections merged into the toy recipe, (section, key) the message must point at, words)
    "unknown_key": ({"search": {"nn": 3}}, ("search", "nn"), "Extra inputs are not permitted"),
    "negative_n": ({"search": {"n": -2}}, ("search", "n"), "greater than or equal to 1"),
    "missing_checkpoint": (
        {"generator": {"checkpoint": "./no/such/checkpoint"}},
        ("generator", "checkpoint"),
        "./no/such/checkpoint: no such checkpoint directory",
    ),
    "unknown_tiny_checkpoint": (
        {"judge": {"checkpoint": "tiny:nope"}},
        ("judge", "checkpoint"),
        "unknown tiny checkpoint 'tiny:nope'",
    ),
    "unknown_mini_checkpoint": (
        {"generator": {"checkpoint": "mini:nope"}},
        ("generator", "checkpoint"),
        "unknown mini checkpoint 'mini:nope'",
    ),
    "pickled_checkpoint_without_opt_in": (
        {"generator": {"checkpoint": "PICKLED"}},
        ("generator", "checkpoint"),
        "only pickled weights found (pytorch_model.bin); loading them can run arbitrary code",
    ),
    "missing_questions_file": (
        {"judge": {"questions": "./no/questions.yaml"}},
        ("judge", "questions"),
        "./no/questions.yaml: No such file or directory",
    ),
}


@pytest.mark.parametrize("case", sorted(RECIPE_ERRORS))
def test_a_broken_recipe_is_refused_naming_line_and_field_before_any_model_loads(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], models_loaded: list[str]
) -> None:
    sections, (section, key), words = RECIPE_ERRORS[case]
    sections = json.loads(json.dumps(sections).replace("PICKLED", pickled_checkpoint(tmp_path)))
    recipe = toy_recipe(tmp_path, **sections)
    assert main(["--config", str(recipe), "--run-id", "r"]) == 1
    err = capsys.readouterr().err
    assert f"{recipe}:{line_of(recipe, key, section)}: {section}.{key}: " in err and words in err
    assert models_loaded == []


def test_pickled_weights_load_once_opted_in(tmp_path: Path, models_loaded: list[str]) -> None:
    """The refusal above is the default, not a dead end: ``trust_pickle`` lets the check pass."""
    generator = {"checkpoint": pickled_checkpoint(tmp_path), "trust_pickle": True}
    recipe = toy_recipe(tmp_path, generator=generator, input={"limit": 1})
    assert main(["--config", str(recipe), "--run-id", "r"]) == 0
    assert models_loaded == ["toy", "toy"]


def test_a_changed_config_is_refused_on_resume_before_any_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], models_loaded: list[str]
) -> None:
    recipe = toy_recipe(tmp_path, input={"limit": 1})
    assert main(["--config", str(recipe), "--run-id", "r"]) == 0
    models_loaded.clear()
    assert main(["--config", str(recipe), "--run-id", "r", "--search.n", "3"]) == 1
    assert "was started with another config" in capsys.readouterr().err and models_loaded == []


@pytest.mark.s3
def test_an_output_that_cannot_be_reached_is_refused_before_any_model_loads(
    s3_server: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], models_loaded: list[str]
) -> None:
    """No server listens on the endpoint's port; the URI comes from an override, which the message names."""
    options = {"endpoint_url": f"http://127.0.0.1:{free_port()}"}
    recipe = toy_recipe(tmp_path, output={"storage_options": options})
    args = ["--config", str(recipe), "--run-id", "r", "--output", "s3://parmflow-unreachable/out"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "(--output.uri) output.uri: cannot write to s3://parmflow-unreachable/out: " in err
    assert "Could not connect" in err or "connect" in err.lower()
    assert models_loaded == []


@pytest.mark.s3
def test_credentials_the_store_refuses_are_refused_before_any_model_loads(
    s3_server: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    models_loaded: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moto checks keys against its IAM users once authentication is on; this key is no user's."""
    import boto3
    from moto import settings
    from moto.core import authorization

    boto3.client("s3").create_bucket(Bucket="refused-keys")
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setattr(authorization.ActionAuthenticatorMixin, "request_count", 0)
    options = {"key": "AKIAREFUSEDKEY000000", "secret": "refused-secret-value-0123456789"}
    recipe = toy_recipe(tmp_path, output={"uri": "s3://refused-keys/out", "storage_options": options})
    assert main(["--config", str(recipe), "--run-id", "r"]) == 1
    err = capsys.readouterr().err
    assert (
        f"{recipe}:{line_of(recipe, 'uri', 'output')}: output.uri: cannot write to s3://refused-keys/out"
        in err
    )
    assert "PermissionError" in err and models_loaded == []
    assert options["secret"] not in err and options["key"] not in err


def test_a_judge_whose_tokenizer_splits_yes_is_refused_when_it_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], models_loaded: list[str]
) -> None:
    """Only loading the tokenizer tells; that happens before any prompt is searched."""
    from test_judge_llava import char_level_tokenizer

    from actors.loading import resolve_checkpoint

    broken = tmp_path / "split-yes"
    shutil.copytree(resolve_checkpoint("tiny:llava"), broken)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (broken / name).unlink()
    char_level_tokenizer().save_pretrained(broken)
    recipe = toy_recipe(tmp_path, judge={"kind": "llava", "checkpoint": str(broken)})
    assert main(["--config", str(recipe), "--run-id", "r"]) == 1
    err = capsys.readouterr().err
    assert f"{recipe}:{line_of(recipe, 'judge', 'judge')}: judge: llava {broken} could not be loaded: " in err
    assert "'yes' must be a single token" in err
    assert models_loaded == ["toy", "llava"] and not (tmp_path / "out" / "r" / "_commits").exists()


@pytest.mark.ray
def test_replicas_the_cluster_cannot_place_are_refused_before_any_prompt(
    ray_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The session's Ray has 4 GPUs; five replicas of one GPU each never all start."""
    import ray

    generator = {"resources": {"replicas": 5, "num_gpus": 1}}
    recipe = toy_recipe(tmp_path, generator=generator, run={"backend": "ray"}, ray={"start_timeout_s": 3})
    assert main(["--config", str(recipe), "--run-id", "placed"]) == 1
    err = capsys.readouterr().err
    line = line_of(recipe, "replicas", "generator")
    assert f"{recipe}:{line}: generator.resources.replicas: " in err and "of 5 replicas" in err
    assert "not started after 3 s; the cluster has" in err
    assert not (tmp_path / "out" / "placed" / "_commits").exists()
    assert not [n for n in ray.util.list_named_actors() if n.startswith("parmflow-placed-")]  # none left


def test_a_local_ray_too_small_for_the_recipe_is_refused_at_once(tmp_path: Path) -> None:
    """A local Ray cannot grow: no waiting for the start timeout there."""
    from schemas.config import load_config
    from schemas.errors import ConfigError

    cfg = load_config(toy_recipe(tmp_path, generator={"resources": {"replicas": 5, "num_gpus": 1}}))
    asks = r"needs 6 GPUs \(generator 5 x 1, judge 2 x 0\.5\) but this machine"
    with pytest.raises(ConfigError, match=asks):
        backends.check_local_resources(cfg, {"GPU": 4.0, "CPU": 2.0})
    backends.check_local_resources(cfg, {"GPU": 6.0, "CPU": 2.0})
