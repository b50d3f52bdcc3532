"""A local S3 server a test can stop, restart and make fail: moto, behind a fault-injecting layer.

moto keeps its buckets in process-wide backends, not in the server, so stopping this server's
HTTP listener and starting a new one on the same port brings back the same buckets, as a real
S3 endpoint that restarts would. ``stop`` closes the listening socket too (moto's own only stops
serving, and a client would then hang on a connection no one answers): until ``start``, every
connection is refused. While ``fail_share`` is above 0, that share of requests (drawn from a
seeded stream) is answered with one of ``FAULTS`` instead of reaching moto.

Because the backends are shared, this server and the session's (``conftest.s3_server``) see the
same buckets; tests use buckets of their own.
"""

from __future__ import annotations

import random
import socket
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

FAULTS = (
    ("500 Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
    ("503 Service Unavailable", "ServiceUnavailable", "Service is unable to handle request."),
    ("503 Slow Down", "SlowDown", "Please reduce your request rate."),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FaultyS3(ThreadedMotoServer):
    def __init__(self, port: int | None = None, seed: int = 0):
        super().__init__(ip_address="127.0.0.1", port=port or free_port(), verbose=False)
        self.fail_share = 0.0
        self.faults: Counter[str] = Counter()
        """Faults answered so far, by S3 error code."""
        self.requests = 0
        self.seen: list[tuple[str, str]] = []
        """(method, path) of every request moto served."""
        self.watch: Callable[[str, str], None] = lambda method, path: None
        """Called with (method, path) after moto served a request: a test's trigger."""
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._moto = DomainDispatcherApplication(create_backend_app)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def _server_entry(self) -> None:
        self._server = make_server(self._ip_address, self._port, self._app, True)
        self._server_ready_event.set()
        self._server.serve_forever()

    def stop(self) -> None:
        super().stop()
        if self._server is not None:
            self._server.server_close()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self._lock:
            self.requests += 1
            fault = FAULTS[self._rng.randrange(len(FAULTS))] if self._rng.random() < self.fail_share else None
        if fault is None:
            response = self._moto(environ, start_response)
            method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
            self.seen.append((method, path))
            self.watch(method, path)
            return response
        status, code, message = fault
        self.faults[code] += 1
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:  # the request's body, so the connection stays usable for the next one
            environ["wsgi.input"].read(length)
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            "<RequestId>fault</RequestId></Error>"
        ).encode()
        if environ["REQUEST_METHOD"] == "HEAD":
            body = b""
        start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [body]
