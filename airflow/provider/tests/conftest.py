"""
Unit tests of gantry_provider without a live Gantry: a small HTTP(S) stub on
127.0.0.1 answers what a test scripts, and records every request it got.
Airflow runs in-process with a throw-away AIRFLOW_HOME; the connection is an
AIRFLOW_CONN_GANTRY environment variable pointing at the stub.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="gantry-provider-tests-"))
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Reply:
    """What a route answers: status, JSON or text, or SSE chunks written one by one."""

    def __init__(self, status: int = 200, body: object = None, chunks: list[bytes] | None = None, drop: bool = False):
        self.status, self.body, self.chunks, self.drop = status, body, chunks, drop


@dataclass
class Stub:
    url: str = ""
    routes: dict[tuple[str, str], Callable[[Seen], Reply]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def route(self, method: str, path: str, reply: Reply | Callable[[Seen], Reply]) -> None:
        self.routes[(method, path)] = reply if callable(reply) else (lambda _req, r=reply: r)

    def requests_to(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path.split("?")[0] == path]


def _handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # bodies end when the connection closes: SSE needs no chunking

        def log_message(self, *args: object) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen = Seen(self.command, self.path, {k: v for k, v in self.headers.items()}, self.rfile.read(length))
            stub.seen.append(seen)
            route = stub.routes.get((self.command, self.path.split("?")[0]))
            reply = route(seen) if route else Reply(404, {"title": "Not Found", "detail": f"no route {self.path}"})
            self.send_response(reply.status)
            if reply.chunks is not None:
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for chunk in reply.chunks:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                return
            data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            self.send_header("Content-Type", "application/json")
            if not reply.drop:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not reply.drop:
                self.wfile.write(data)

        do_GET = do_POST = _serve

    return Handler


def _serve(ctx: ssl.SSLContext | None = None):
    stub = Stub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    if ctx is not None:
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    scheme = "https" if ctx is not None else "http"
    stub.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return stub, server


def use_connection(monkeypatch: pytest.MonkeyPatch, url: str, **extra: object) -> None:
    scheme, _, hostport = url.partition("://")
    host, _, port = hostport.partition(":")
    conn = {"conn_type": "gantry", "host": host, "port": int(port), "schema": scheme, "password": "stub-token-123"}
    if extra:
        conn["extra"] = extra
    monkeypatch.setenv("AIRFLOW_CONN_GANTRY", json.dumps(conn))


@pytest.fixture()
def stub(monkeypatch: pytest.MonkeyPatch):
    s, server = _serve()
    use_connection(monkeypatch, s.url)
    yield s
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA of our own, a server certificate for 127.0.0.1 and a client certificate it signed (openssl)."""
    import subprocess

    d = tmp_path_factory.mktemp("ca")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=gantry-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=airflow")
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "client.pem", "-days", "2")
    return {
        "ca": d / "ca.pem",
        "cert": d / "server.pem",
        "key": d / "server.key",
        "client_cert": d / "client.pem",
        "client_key": d / "client.key",
    }


@pytest.fixture()
def tls_stub(private_ca: dict[str, Path]):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(private_ca["cert"], private_ca["key"])
    s, server = _serve(ctx)
    yield s
    server.shutdown()
    server.server_close()


@pytest.fixture()
def mtls_stub(private_ca: dict[str, Path]):
    """A TLS stub that takes only clients with a certificate its CA signed (mutual TLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(private_ca["cert"], private_ca["key"])
    ctx.load_verify_locations(private_ca["ca"])
    ctx.verify_mode = ssl.CERT_REQUIRED
    s, server = _serve(ctx)
    yield s
    server.shutdown()
    server.server_close()


def job_view(job_id: str = "j1", state: str = "running", **kw: object) -> dict:
    """A job view as Gantry answers it (GET /v1/jobs/{id})."""
    job = {
        "id": job_id,
        "name": None,
        "owner": "admin",
        "state": state,
        "position": None,
        "exitCode": None,
        "reason": None,
        "result": None,
        "createdAt": "2026-01-01T00:00:00Z",
        "startedAt": None,
        "finishedAt": None,
        "gpus": [],
        "node": None,
        "attempt": 1,
        "pull": None,
        "labels": {},
        "cancelRequested": False,
        "requestId": None,
        "spec": {"image": "x", "command": ["true"], "env": {"SECRET": "hunter2-secret"}},
    }
    job.update(kw)
    return job


def sse_log(seq: int, line: str, stream: str = "stdout") -> bytes:
    data = json.dumps({"seq": seq, "stream": stream, "time": "2026-01-01T00:00:00Z", "line": line})
    return f"id: {seq}\nevent: log\ndata: {data}\n\n".encode()


def sse_job(event: str, job: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(job)}\n\n".encode()
