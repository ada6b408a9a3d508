"""GantryHook: Gantry's REST API over an Airflow HTTP connection."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import requests

from airflow.exceptions import AirflowException
from airflow.providers.http.hooks.http import HttpAsyncHook, HttpHook
from airflow.sdk import BaseHook

from gantry_provider.sse import SseEvent, SseParser

ACTIVE_STATES = ("queued", "pulling", "starting", "running")
TERMINAL_STATES = ("succeeded", "failed", "cancelled", "timed_out")


class GantryApiError(AirflowException):
    """A non-2xx answer from Gantry, with its problem+json document when there is one."""

    def __init__(self, method: str, path: str, status: int, body: str):
        self.status = status
        self.problem: dict[str, Any] = {}
        try:
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                self.problem = parsed
        except ValueError:
            pass
        detail = self.problem.get("detail") or self.problem.get("title") or body[:500]
        errors = self.problem.get("errors") or []
        extra = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors if isinstance(e, dict))
        super().__init__(f"Gantry answered {status} to {method} {path}: {detail}" + (f" ({extra})" if extra else ""))


class GantryHook(BaseHook):
    """
    Talks to Gantry through an Airflow **HTTP** connection (``conn_type`` ``http``).

    The connection is the same one the stock ``HttpOperator``/``HttpSensor`` use:
    host/port/schema give the base URL, and every key of ``extra`` is sent as a
    header, so ``{"Authorization": "Bearer <token>"}`` authenticates. A
    connection with only a password (no login) is also accepted: the password is
    then sent as the bearer token.

    :param gantry_conn_id: the HTTP connection to Gantry.
    :param request_timeout: seconds for ordinary (non-streaming) requests.
    """

    conn_name_attr = "gantry_conn_id"
    default_conn_name = "gantry"
    conn_type = "http"
    hook_name = "Gantry"

    def __init__(self, gantry_conn_id: str = default_conn_name, request_timeout: float = 30.0) -> None:
        super().__init__()
        self.gantry_conn_id = gantry_conn_id
        self.request_timeout = request_timeout
        self._session: requests.Session | None = None
        self.base_url = ""

    # -- synchronous API (worker side) ------------------------------------------------

    def get_conn(self) -> requests.Session:
        if self._session is None:
            http = HttpHook(method="GET", http_conn_id=self.gantry_conn_id)
            session = http.get_conn()
            self.base_url = http.base_url.rstrip("/")
            conn = self.get_connection(self.gantry_conn_id)
            if conn.password and not conn.login and "Authorization" not in session.headers:
                session.headers["Authorization"] = f"Bearer {conn.password}"
            self._session = session
        return self._session

    def url(self, path: str) -> str:
        self.get_conn()
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        timeout: float | tuple[float, float] | None = None,
    ) -> requests.Response:
        session = self.get_conn()
        data = None
        hdrs = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body)
            hdrs["Content-Type"] = "application/json"
        resp = session.request(
            method,
            self.url(path),
            data=data,
            params=params,
            headers=hdrs,
            stream=stream,
            timeout=timeout if timeout is not None else self.request_timeout,
            allow_redirects=False,
        )
        if resp.status_code >= 300:
            body = resp.text
            resp.close()
            raise GantryApiError(method, path, resp.status_code, body)
        return resp

    def submit_job(self, spec: dict[str, Any], idempotency_key: str | None = None, attempts: int = 3) -> dict:
        """POST /v1/jobs. With an idempotency key, a lost answer is safely asked again."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        tries = attempts if idempotency_key else 1
        for attempt in range(1, tries + 1):
            try:
                return self.request("POST", "v1/jobs", json_body=spec, headers=headers).json()
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == tries:
                    raise
                self.log.warning("Submitting to Gantry failed (%s); trying again with the same Idempotency-Key", exc)
                time.sleep(2 * attempt)
        raise AssertionError("unreachable")

    def get_job(self, job_id: str) -> dict:
        return self.request("GET", f"v1/jobs/{job_id}").json()

    def list_jobs(self, *, label: str | None = None, states: tuple[str, ...] | None = None, limit: int = 50) -> list[dict]:
        """Newest first; ``label`` is ``key=value``."""
        params: dict[str, Any] = {"limit": limit}
        if label:
            params["label"] = label
        if states:
            params["state"] = ",".join(states)
        return self.request("GET", "v1/jobs", params=params).json()["items"]

    def cancel_job(self, job_id: str) -> dict:
        return self.request("POST", f"v1/jobs/{job_id}/cancel").json()

    def get_logs(self, job_id: str, tail: int | None = None) -> str:
        params = {"tail": tail} if tail is not None else None
        return self.request("GET", f"v1/jobs/{job_id}/logs", params=params).text

    def stream_events(self, job_id: str, last_event_id: int | None = None) -> Iterator[SseEvent]:
        """
        One connection to the job's SSE log stream: ``log``, ``status`` and ``end`` events.

        Ends after ``end``, or when the connection drops (the caller reconnects with
        the last ``log`` id it saw).
        """
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        # Gantry sends a heartbeat at least every 15 s: a read gap of 60 s is a dead connection.
        resp = self.request("GET", f"v1/jobs/{job_id}/logs", headers=headers, stream=True, timeout=(10, 60))
        parser = SseParser()
        try:
            for chunk in resp.iter_content(chunk_size=65536):
                for event in parser.feed(chunk):
                    yield event
                    if event.event == "end":
                        return
        finally:
            resp.close()

    # -- asynchronous API (triggerer side) --------------------------------------------

    async def async_config(self) -> tuple[str, dict[str, str]]:
        """Base URL and headers (connection extra + bearer) for aiohttp, read without blocking."""
        config = await HttpAsyncHook(method="GET", http_conn_id=self.gantry_conn_id).config()
        headers = {str(k): str(v) for k, v in (config.headers or {}).items()}
        if config.auth is None and "Authorization" not in headers:
            from airflow.providers.common.compat.connection import get_async_connection

            conn = await get_async_connection(conn_id=self.gantry_conn_id, hook=self)
            if conn.password and not conn.login:
                headers["Authorization"] = f"Bearer {conn.password}"
        return config.base_url.rstrip("/"), headers
