"""Session-wide services: one local Ray cluster and one local S3 server for the whole run.

Starting Ray costs seconds, so tests that need it share one cluster (fake GPUs schedule
like real ones; torch still sees no CUDA). Tiny model checkpoints are built once per
session into a temporary cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


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
