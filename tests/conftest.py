"""Session-wide services: one local Ray cluster and one local S3 server for the whole run.

Starting Ray costs seconds, so tests that need it share one cluster (fake GPUs schedule
like real ones; torch still sees no CUDA). Tiny model checkpoints are built once per
session into a temporary cache.

A test that starts Ray is marked ``ray``, one that needs the S3 server ``s3``, so that the fast
lane (``-m "not ray and not s3"``) starts neither; the two hooks below hold every test to that.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

SERVICES = {"ray_cluster": "ray", "ray_head": "ray", "s3_server": "s3"}
"""Fixture -> the marker of every test that uses it."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        used = {marker for fixture, marker in SERVICES.items() if fixture in fixtures}
        unmarked = sorted(marker for marker in used if not item.get_closest_marker(marker))
        if unmarked:
            raise pytest.UsageError(f"{item.nodeid} starts {', '.join(unmarked)}: mark it so")


@pytest.fixture(autouse=True)
def ray_only_when_marked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that is not marked ``ray`` but starts a Ray anyway (a label run without
    ``--run.backend local``, say) fails at once."""
    if request.node.get_closest_marker("ray") is None:
        import ray

        def refuse(*args: object, **kwargs: object) -> None:
            raise RuntimeError(f"{request.node.nodeid} starts Ray: mark it @pytest.mark.ray")

        monkeypatch.setattr(ray, "init", refuse)


@pytest.fixture(scope="session", autouse=True)
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Tiny checkpoints (``tiny:<name>``) are built once into a session cache directory."""
    path = os.environ.get("PARMFLOW_TEST_CACHE") or str(tmp_path_factory.mktemp("parmflow-cache"))
    old = os.environ.get("PARMFLOW_CACHE")
    os.environ["PARMFLOW_CACHE"] = path
    yield path
    if old is None:
        os.environ.pop("PARMFLOW_CACHE", None)
    else:
        os.environ["PARMFLOW_CACHE"] = old


@pytest.fixture(scope="session")
def uninterrupted_toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """The committed samples of a toy run that met no fault (in-process): what every fault test
    compares its own output with, sample by sample (``label_helpers.committed_samples``)."""
    from label_helpers import TOY, committed_samples

    from workflows.label import main

    out = tmp_path_factory.mktemp("uninterrupted-toy")
    assert main(["--config", TOY, "--output", str(out), "--run-id", "u", "--run.backend", "local"]) == 0
    return committed_samples(str(out / "u"))


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """A local Ray with 2 CPUs and 4 fake GPUs, shared by every test that asks for it."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=2,
            num_gpus=4,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PARMFLOW_CACHE": os.environ["PARMFLOW_CACHE"]}},
        )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, str]]:
    """A real HTTP S3 endpoint on 127.0.0.1 (moto), with credentials in the environment.

    Yields the environment a client needs; s3fs and boto3 read AWS_ENDPOINT_URL, pyarrow's
    S3FileSystem needs it passed as ``endpoint_override``.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``ray start --head`` node with a dashboard (the jobs API); yields its dashboard URL.

    Separate from ``ray_cluster`` (its own ports and temp dir). It runs with ``--block`` in its own
    process group, so the teardown stops exactly the processes this fixture started.
    """
    import signal
    import socket
    import subprocess
    import time
    import urllib.request

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    port, dashboard = free_port(), free_port()
    temp = tmp_path_factory.mktemp("ray-head")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    start = [
        "ray", "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--num-gpus=4",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
        f"--temp-dir={temp}", "--disable-usage-stats",
        # every other port too: the defaults are taken when the ray_cluster node runs on this machine
        f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
        f"--ray-client-server-port={free_port()}", f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
    ]  # fmt: skip
    head = subprocess.Popen(
        start, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/version", timeout=2).read()
                break
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ray start --head did not come up (exit {head.poll()})") from None
                time.sleep(1)
        yield url
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
