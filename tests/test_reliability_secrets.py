"""Credentials never reach an output, and code or pickles from a checkpoint never run unasked.

The end-to-end test gives a label run on Ray a known fake secret three ways (the environment,
``output.storage_options``, a failing prompt whose error quotes it) and greps everything the run
left: its stdout and stderr, every object under the run in S3, and the Ray session's log files.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from label_helpers import ROOT, TOY, committed_samples, prompt_ids

from workflows.label import main
from workflows.output import secrets
from workflows.output.secrets import HIDDEN, redact, redacted, remember_secrets

ENV_SECRET = "env-secret-4f1d0c9a7b2e"
TOKEN_SECRET = "session-token-9c3b5e71d2aa"
OPTION_SECRET = "option-secret-7e21ab04c6d8"
OPTION_KEY = "AKIAOPTIONKEY1234567"
SECRETS = (ENV_SECRET, TOKEN_SECRET, OPTION_SECRET, OPTION_KEY)


def test_redact_hides_known_credentials_wherever_they_appear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_remembered", set())
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)
    monkeypatch.setenv("MY_API_TOKEN", TOKEN_SECRET)
    region = "us-east-1-long-enough"
    monkeypatch.setenv("AWS_REGION", region)  # not a credential: kept
    remember_secrets(
        {"client_kwargs": {"aws_secret_access_key": OPTION_SECRET}, "key": OPTION_KEY, "anon": "no"}
    )
    text = f"put failed: key={OPTION_KEY} sig({ENV_SECRET}) token {TOKEN_SECRET} s={OPTION_SECRET} {region}"
    assert redact(text) == f"put failed: key={HIDDEN} sig({HIDDEN}) token {HIDDEN} s={HIDDEN} {region}"
    assert redact("s3://ada:pa55word@bucket/x and https://u:p@host/y") == (
        f"s3://ada:{HIDDEN}@bucket/x and https://u:{HIDDEN}@host/y"
    )
    assert redacted({"a": [f"x {ENV_SECRET}", 3], "b": {"c": OPTION_KEY}}) == {
        "a": [f"x {HIDDEN}", 3],
        "b": {"c": HIDDEN},
    }
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")  # too short to be a credential: kept
    assert redact("testing the testing") == "testing the testing"


@pytest.mark.ray
@pytest.mark.s3
def test_a_run_given_credentials_writes_them_nowhere(
    ray_cluster: None,
    s3_server: dict[str, str],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    uninterrupted_toy: dict[str, tuple],
) -> None:
    import boto3
    import ray

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)  # moto accepts any key
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN_SECRET)
    boto3.client("s3").create_bucket(Bucket="secret-run")
    options = {"key": OPTION_KEY, "secret": OPTION_SECRET, "client_kwargs": {"region_name": "us-east-1"}}
    # a prompt that fails, with a message that quotes a credential, as a careless client might
    failing = json.dumps([f"kite {ENV_SECRET}"])
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        (ROOT / "configs/prompts/smoke.jsonl")
        .read_text()
        .replace("a photo of a kite", f"a photo of a kite {ENV_SECRET}")
    )
    args = [
        "--config",
        TOY,
        "--output",
        "s3://secret-run/out",
        "--run-id",
        "sec",
        "--input.uri",
        str(prompts),
    ]
    args += ["--generator.resources.replicas", "1", "--judge.resources.replicas", "1", "--run.retries", "0"]
    args += ["--output.storage_options", json.dumps(options), "--generator.options.fail_prompts", failing]
    assert main(args) == 2  # the kite prompt failed; every other prompt was labelled
    assert main([*args, "--print-config"]) == 0
    out, err = capfd.readouterr()
    failure = next(line for line in err.splitlines() if "failed after 1 attempts" in line)
    assert failure.endswith(
        f"RuntimeError: toy generator: prompt 'a photo of a kite {HIDDEN}' is set to fail"
    )

    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="secret-run", Prefix="out/sec/")["Contents"]]
    assert "out/sec/run.json" in keys and any(k.startswith("out/sec/errors/") for k in keys)
    objects = {key: s3.get_object(Bucket="secret-run", Key=key)["Body"].read() for key in keys}
    assert any(b"kite" in body for key, body in objects.items() if "errors/" in key)  # ... and recorded
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    log_files = [p for p in logs.rglob("*") if p.is_file()]
    assert log_files
    texts = {"stdout": out.encode(), "stderr": err.encode(), **objects}
    texts.update({str(p): p.read_bytes() for p in log_files})
    for secret in SECRETS:  # ... yet no credential, in any output, in any form
        leaks = [where for where, body in texts.items() if secret.encode() in body]
        assert leaks == [], f"{secret} found in {leaks}"

    # the prompt ids written are exactly the uninterrupted run's, but the kite's
    s3_options = {"key": OPTION_KEY, "secret": OPTION_SECRET}
    written = prompt_ids(committed_samples("s3://secret-run/out/sec", s3_options))
    kite = {p for p in prompt_ids(uninterrupted_toy)} - written
    assert len(kite) == 1 and written < prompt_ids(uninterrupted_toy)


def _calls(path: Path) -> list[ast.Call]:
    return [
        node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.Call)
    ]


def test_remote_code_is_never_trusted_implicitly() -> None:
    """No call anywhere passes ``trust_remote_code`` other than a literal False, and no
    ``from_pretrained`` takes ``**kwargs``, through which a recipe's options could pass it."""
    offences = []
    sources = [
        p for package in ("actors", "workflows", "schemas", "bench") for p in (ROOT / package).rglob("*.py")
    ]
    for path in sources:
        for call in _calls(path):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            for keyword in call.keywords:
                if keyword.arg == "trust_remote_code" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    offences.append(f"{where}: trust_remote_code={ast.unparse(keyword.value)}")
                name = (
                    call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
                )
                if keyword.arg is None and name == "from_pretrained":
                    offences.append(f"{where}: from_pretrained(**{ast.unparse(keyword.value)})")
    assert len(sources) > 50 and offences == []
    assert "trust_remote_code" not in (ROOT / "schemas" / "config.py").read_text()  # no recipe switch for it
