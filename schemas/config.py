"""The job configuration: one pydantic model per recipe section, loaded from YAML plus overrides.

Every model forbids unknown keys, so a misspelt recipe field fails at load time with the
dotted path of the field instead of being silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.errors import ConfigError

StrategyName = Literal["sample", "best_of_n", "prm", "parm", "parm_pp", "beam"]
DecisionRule = Literal["threshold", "sample"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(Strict):
    """Where one model runs and how requests to it are batched."""

    replicas: int = Field(1, ge=1)
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica; fractional to co-locate")
    num_cpus: float = Field(0.0, ge=0, description="CPUs per replica; 0 for GPU actors")
    max_batch: int = Field(64, ge=1, description="most requests one replica call takes")
    batch_wait_ms: float = Field(5.0, ge=0, description="how long a partial batch waits for more")
    max_restarts: int = Field(-1, ge=-1, description="replica restarts (-1: unlimited)")
    max_task_retries: int = Field(
        3, ge=-1, description="reruns of a call whose replica died (-1: unlimited; a poisoned batch hangs)"
    )


class GeneratorSpec(Strict):
    kind: str = Field(description="registry name: showo, janus, ...")
    checkpoint: str = Field(description="local directory, hub id, or tiny:<name> for test models")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = Field("auto", description="auto: cuda when available, else cpu")
    trust_pickle: bool = Field(False, description="allow non-safetensors weights")
    options: dict[str, Any] = Field(default_factory=dict, description="model-specific settings")
    resources: Resources = Field(default_factory=Resources)


class JudgeSpec(Strict):
    kind: str = Field(description="registry name: llava, clip, ...")
    checkpoint: str
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"
    trust_pickle: bool = False
    questions: str | None = Field(None, description="YAML file of question texts; None: built-in")
    options: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)


class SearchConfig(Strict):
    """The search strategy and its knobs; each strategy reads the fields it needs."""

    strategy: StrategyName = "parm"
    n: int = Field(4, ge=1, description="paths per search (N of best-of-N)")
    images_per_prompt: int = Field(1, ge=1, description="independent searches per prompt")
    decision: DecisionRule = "threshold"
    threshold: float = Field(0.5, ge=0, le=1)
    clarity_every: int = Field(1, ge=1, description="ask clarity every k steps")
    prune: bool = Field(True, description="parm: stop paths judged without potential")
    rounds: int = Field(3, ge=0, description="parm_pp: most reflection rounds")
    remask_ratio: float = Field(0.5, ge=0, le=1, description="parm_pp: share of tokens re-masked")
    beam_width: int = Field(2, ge=1)
    beam_branch: int = Field(2, ge=1)
    step_question: Literal["process", "clarity", "potential", "outcome"] = "process"
    judge_every: int = Field(1, ge=1, description="prm/beam: judge every k steps")
    previews_in_steps: bool = Field(False, description="keep a preview thumbnail in steps rows")
    seed: int = 0


class InputConfig(Strict):
    uri: str = Field(description="JSONL, .txt or Parquet; local path or any fsspec URI")
    format: Literal["auto", "jsonl", "text", "parquet"] = "auto"
    limit: int | None = Field(None, ge=1, description="stop after this many prompts")
    strict: bool = Field(False, description="fail on the first bad row instead of recording it")
    max_prompt_chars: int = Field(8192, ge=1, description="a longer prompt is a bad row")


class OutputConfig(Strict):
    uri: str = Field(description="directory (local path or s3://bucket/prefix)")
    run_id: str | None = Field(None, description="None: a fresh id; reuse one to resume")
    shard_rows: int = Field(512, ge=1, description="most samples rows per shard")
    shard_bytes: int = Field(256 << 20, ge=1 << 16, description="most bytes buffered per shard")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="passed to fsspec")
    allow_config_change: bool = Field(False, description="resume even if the config changed")
    retry_s: float = Field(300.0, ge=0, description="seconds a failing write is retried before the run stops")


class RayConfig(Strict):
    address: str | None = Field(None, description="None: RAY_ADDRESS, else start a local Ray")
    num_cpus: int | None = None
    num_gpus: int | None = None
    start_timeout_s: float = Field(
        900.0, gt=0, description="most seconds replicas may take to be placed and load their models"
    )


class RunConfig(Strict):
    max_in_flight: int = Field(32, ge=1, description="prompts searched at once (backpressure)")
    retries: int = Field(2, ge=0, description="retries of a failed prompt before it is recorded")
    retry_failed: bool = Field(False, description="on resume, search again prompts that failed before")
    backend: Literal["ray", "local"] = "ray"


class JobConfig(Strict):
    generator: GeneratorSpec
    judge: JudgeSpec | None = None
    search: SearchConfig = Field(default_factory=SearchConfig)
    input: InputConfig
    output: OutputConfig
    ray: RayConfig = Field(default_factory=RayConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _judge_when_needed(self) -> JobConfig:
        if self.search.strategy != "sample" and self.judge is None:
            raise ValueError(f"search.strategy={self.search.strategy!r} needs a judge section")
        return self


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """Turn ``--search.n 8 --output.uri s3://b/x`` (or ``--search.n=8``) into a nested dict.

    Values are parsed as YAML scalars so ``8`` is an int, ``true`` a bool, ``null`` None.
    """
    nested: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"override {arg!r}: expected --section.field VALUE")
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(args):
                raise ConfigError(f"override --{key}: missing value")
            value = args[i + 1]
            i += 1
        i += 1
        node = nested
        parts = key.replace("-", "_").split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override --{key}: {part!r} is set to a value already")
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override --{key}: not a valid value {value!r}: {exc}") from None
    return nested


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> JobConfig:
    """Read a YAML recipe, apply overrides, validate. Errors name the file and the field path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: recipe not found") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections, got {type(raw).__name__}")
    lines = key_lines(yaml.compose(text))
    return validate_config(
        deep_merge(raw, overrides or {}), source=str(path), lines=lines, overrides=overrides
    )


def key_lines(node: yaml.Node | None, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """1-based line of every mapping key in a YAML document, by its dotted path, so an error
    can point at the line to fix."""
    lines: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, str(key.value))
            lines[path] = key.start_mark.line + 1
            lines.update(key_lines(value, path))
    return lines


def validate_config(
    raw: dict[str, Any],
    source: str = "<config>",
    lines: dict[tuple[str, ...], int] | None = None,
    overrides: dict[str, Any] | None = None,
) -> JobConfig:
    """Validate a merged recipe; each error names the field, and where it came from: the
    recipe's line, or the command-line override that set it."""
    try:
        return JobConfig.model_validate(raw)
    except ValidationError as exc:
        report = [f"{source}: invalid recipe"]
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            field = ".".join(loc) or "(top level)"
            report.append(f"  {_where(loc, source, lines or {}, overrides or {})}{field}: {err['msg']}")
        raise ConfigError("\n".join(report)) from None


def field_origin(recipe: str | Path, overrides: dict[str, Any], loc: tuple[str, ...]) -> str:
    """Where ``loc`` was set, as the prefix of an error about it: the override that set it, else
    its line in the recipe (or its section's line): for checks made after the recipe was loaded."""
    try:
        lines = key_lines(yaml.compose(Path(recipe).read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError):
        lines = {}
    return _where(loc, str(recipe), lines, overrides)


def _where(
    loc: tuple[str, ...], source: str, lines: dict[tuple[str, ...], int], overrides: dict[str, Any]
) -> str:
    node: Any = overrides
    for part in loc:
        node = node.get(part) if isinstance(node, dict) else None
    if node is not None:
        return f"(--{'.'.join(loc)}) "
    for depth in range(len(loc), 0, -1):  # the field's own line, else its section's
        if loc[:depth] in lines:
            return f"{source}:{lines[loc[:depth]]}: "
    return ""
