"""The KubeRay manifests in cluster/ match the v1 schema of the KubeRay v1.7.0 CRDs.

A structural check (types, required fields, unknown fields, enums) against the CRDs kept in
tests/fixtures/kuberay (see its SOURCE.md); no cluster and no kubectl needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT / "tests" / "fixtures" / "kuberay"
TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
}


def v1_schema(crd_file: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / crd_file).read_text())
    return next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]


def problems(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Where ``value`` breaks ``schema``: wrong types, missing required or unknown fields, bad enums."""
    if schema.get("x-kubernetes-int-or-string"):
        return [] if isinstance(value, int | str) else [f"{where}: expected int or string"]
    kind = schema.get("type")
    if kind and not (isinstance(value, TYPES[kind]) and not (kind != "boolean" and isinstance(value, bool))):
        return [f"{where}: expected {kind}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    found: list[str] = []
    if isinstance(value, dict):
        found += [f"{where}.{key}: required" for key in schema.get("required", []) if key not in value]
        props = schema.get("properties")
        for key, item in value.items():
            if props is not None and key in props:
                found += problems(item, props[key], f"{where}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += problems(item, schema["additionalProperties"], f"{where}.{key}")
            elif props is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                found.append(f"{where}.{key}: unknown field")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += problems(item, schema["items"], f"{where}[{i}]")
    return found


@pytest.mark.parametrize(
    ("manifest", "crd", "kind"),
    [
        ("raycluster.yaml", "ray.io_rayclusters.yaml", "RayCluster"),
        ("rayjob.yaml", "ray.io_rayjobs.yaml", "RayJob"),
    ],
)
def test_manifest_matches_the_kuberay_v1_schema(manifest: str, crd: str, kind: str) -> None:
    doc = yaml.safe_load((ROOT / "cluster" / manifest).read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == kind
    assert problems(doc["spec"], v1_schema(crd)["properties"]["spec"], "spec") == []


def test_the_checker_catches_bad_manifests() -> None:
    schema = v1_schema("ray.io_rayclusters.yaml")["properties"]["spec"]
    doc = yaml.safe_load((ROOT / "cluster" / "raycluster.yaml").read_text())["spec"]
    broken = {**doc, "headGroupSpecs": doc["headGroupSpec"], "rayVersion": 2}
    del broken["headGroupSpec"]
    assert sorted(problems(broken, schema, "spec")) == [
        "spec.headGroupSpec: required",
        "spec.headGroupSpecs: unknown field",
        "spec.rayVersion: expected string, got int",
    ]


def test_the_job_runs_a_recipe_that_exists_with_gpus_for_its_replicas() -> None:
    job = yaml.safe_load((ROOT / "cluster" / "rayjob.yaml").read_text())["spec"]
    words = job["entrypoint"].split()
    assert (
        words[:2] == ["python", "workflows/label.py"]
        and (ROOT / words[words.index("--config") + 1]).is_file()
    )
    recipe = yaml.safe_load((ROOT / words[words.index("--config") + 1]).read_text())
    gpus = sum(
        g["replicas"] * int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
        for g in job["rayClusterSpec"]["workerGroupSpecs"]
    )
    wanted = sum(
        recipe[m]["resources"]["replicas"] * recipe[m]["resources"]["num_gpus"]
        for m in ("generator", "judge")
    )
    assert gpus >= wanted
