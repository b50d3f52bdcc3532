"""Arrow schemas of the output tables. Bump SCHEMA_VERSION on any change to a column.

``image`` columns use the Hugging Face ``datasets`` Image layout, struct<bytes, path>, and
carry ``datasets`` feature metadata, so ``datasets.load_dataset("parquet", ...)`` decodes
them as images without a cast.
"""

from __future__ import annotations

import json

import pyarrow as pa

SCHEMA_VERSION = 2

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
TOKENS = pa.list_(pa.int32())


def _schema(name: str, fields: list[pa.Field], images: tuple[str, ...] = ()) -> pa.Schema:
    features = {f.name: _feature(f, images) for f in fields}
    return pa.schema(
        fields,
        metadata={
            "parmflow.table": name,
            "parmflow.schema_version": str(SCHEMA_VERSION),
            "huggingface": json.dumps({"info": {"features": features}}),
        },
    )


def _feature(f: pa.Field, images: tuple[str, ...]) -> dict:
    """The ``datasets`` feature for a column: Image for image structs, Value/List otherwise."""
    if f.name in images:
        return {"_type": "Image"}
    if pa.types.is_list(f.type):
        return {"_type": "List", "feature": {"dtype": str(f.type.value_type), "_type": "Value"}}
    dtype = {"bool": "bool", "string": "string", "binary": "binary", "double": "float64"}.get(
        str(f.type), str(f.type)
    )
    return {"dtype": dtype, "_type": "Value"}


SAMPLES = _schema(
    "samples",
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("metadata", pa.string()),  # JSON: GenEval tag, include/exclude clauses, ...
        pa.field("image_index", pa.int32(), nullable=False),  # which of images_per_prompt
        pa.field("candidate", pa.int32(), nullable=False),  # path index within its search
        pa.field("round", pa.int32(), nullable=False),  # PARM++ round (0: first generation)
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("strategy", pa.string(), nullable=False),
        pa.field("generated_prompt", pa.string()),  # prompt as extended by reflections
        pa.field("reflection", pa.string()),
        pa.field("image", IMAGE),
        pa.field("image_tokens", TOKENS),  # -1 where a pruned path had not decided a slot
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("outcome", pa.float64()),  # P(yes) of the outcome question
        pa.field("process", pa.float64()),  # P(yes) of the process question at the last judged step
        pa.field("potential", pa.float64()),  # P(yes) of the potential question
        pa.field("clarity_step", pa.int32()),  # first step judged clear
        pa.field("selected", pa.bool_(), nullable=False),
        pa.field("rank", pa.int32()),
        pa.field("pruned_at", pa.int32()),
        pa.field("generator", pa.string(), nullable=False),
        pa.field("judge", pa.string()),
        pa.field("nfe", pa.int64()),  # cost of the whole search this candidate came from
        pa.field("judge_calls", pa.int64()),
        pa.field("paths_pruned", pa.int32()),
        pa.field("steps_saved", pa.int64()),
    ],
    images=("image",),
)

STEPS = _schema(
    "steps",
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("image_index", pa.int32(), nullable=False),
        pa.field("round", pa.int32(), nullable=False),
        pa.field("candidate", pa.int32(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("p_yes", pa.float64(), nullable=False),
        pa.field("p_no", pa.float64()),
        pa.field("decision", pa.bool_(), nullable=False),
        pa.field("preview", IMAGE),  # thumbnail, only when search.previews_in_steps
        pa.field("elapsed_ms", pa.float64()),
    ],
    images=("preview",),
)

ERRORS = _schema(
    "errors",
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # "input" (bad row) or "prompt" (failed search)
        pa.field("prompt_id", pa.string()),
        pa.field("source", pa.string()),  # file the row came from
        pa.field("line", pa.int64()),  # 1-based line (or row index for Parquet)
        pa.field("field", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("attempts", pa.int32()),
        pa.field("raw", pa.string()),  # the offending row as read, truncated
    ],
)

PAIRS = _schema(
    "pairs",
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("chosen_image", IMAGE),
        pa.field("rejected_image", IMAGE),
        pa.field("chosen_tokens", TOKENS),
        pa.field("rejected_tokens", TOKENS),
        pa.field("chosen_score", pa.float64()),
        pa.field("rejected_score", pa.float64()),
        pa.field("margin", pa.float64()),
        pa.field("chosen_sample_id", pa.string(), nullable=False),
        pa.field("rejected_sample_id", pa.string(), nullable=False),
    ],
    images=("chosen_image", "rejected_image"),
)

TABLES: dict[str, pa.Schema] = {"samples": SAMPLES, "steps": STEPS, "errors": ERRORS, "pairs": PAIRS}
