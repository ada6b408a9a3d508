"""GantryHook: Gantry's REST API over an Airflow connection (type ``gantry``, or a plain ``http`` one)."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import requests

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException

from gantry_provider.sse import SseEvent, SseParser

ACTIVE_STATES = ("queued", "pulling", "starting", "running")
TERMINAL_STATES = ("succeeded", "failed", "cancelled", "timed_out")

#: Keys of a connection's ``extra`` that configure the client; every other key is a
#: header (the HTTP connection's convention, so an ``http`` connection works as is).
CLIENT_OPTIONS = ("verify", "verify_ssl", "proxies", "proxy", "timeout", "ui_url", "cert", "auth_type", "auth_kwargs")
#: Options an HTTP connection may carry for requests' own use; they are not headers.
IGNORED_OPTIONS = ("stream", "trust_env", "allow_redirects", "max_redirects", "check_response", "srv_lookup")

#: Gantry sends a heartbeat at least every 15 s: a read gap this long is a dead stream.
STREAM_READ_TIMEOUT = 60.0


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

    @property
    def transient(self) -> bool:
        """Worth asking again: the server or something in between is busy or failing."""
        return self.status >= 500 or self.status in (408, 429)


def _as_bool_or_path(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in ("true", "1", "yes", ""):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    return text  # a CA bundle (file or directory)


def _client_cert(conn_id: str | None, value: Any) -> str | tuple[str, str] | None:
    """The connection's ``cert`` (requests' form): a path, or a [certificate, key] pair of paths."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return (value[0], value[1])
    raise AirflowException(f"connection {conn_id}: extra 'cert' must be a path or a [certificate, key] pair of paths")


@dataclass(frozen=True)
class GantrySettings:
    """
    What a client needs from the connection, the same for the worker (requests)
    and the triggerer (aiohttp), so a job followed after deferral reaches Gantry
    exactly as the worker did: base URL, headers (bearer token included), TLS
    verification (``verify``: true, false, or a CA bundle path), a client
    certificate (``cert``), a proxy and the
    request timeout; and where a browser finds Gantry's operator page
    (``ui_url``, default ``<base URL>/ui/``) for the task's link.
    """

    base_url: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # holds the token
    verify: bool | str = True
    proxies: dict[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    ui_url: str = ""
    #: A client certificate for mTLS: a PEM holding certificate and key, or (certificate, key).
    cert: str | tuple[str, str] | None = None

    @classmethod
    def from_connection(cls, conn: Any, default_timeout: float = 30.0) -> GantrySettings:
        host = (conn.host or "").strip()
        if "://" in host:
            base_url = host
        else:
            scheme = conn.schema if conn.schema in ("http", "https") else "http"
            base_url = f"{scheme}://{host}"
        if conn.port:
            base_url += f":{conn.port}"
        extra = dict(conn.extra_dejson or {})
        options = {k: extra.pop(k) for k in CLIENT_OPTIONS if k in extra}
        for k in IGNORED_OPTIONS:
            extra.pop(k, None)
        headers = {str(k): str(v) for k, v in extra.items() if v is not None}
        if conn.password and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {conn.password}"
        verify = _as_bool_or_path(options.get("verify", options.get("verify_ssl", True)))
        proxies = options.get("proxies", options.get("proxy"))
        if isinstance(proxies, str):
            proxies = {"http": proxies, "https": proxies} if proxies else {}
        if proxies is not None and not isinstance(proxies, dict):
            raise AirflowException(f"connection {conn.conn_id}: extra 'proxies' must be a URL or a {{scheme: URL}} map")
        if options.get("auth_type"):
            raise AirflowException(
                f"connection {conn.conn_id}: auth_type {options['auth_type']!r} is not supported: Gantry takes a bearer "
                "token (the password field, or an Authorization header in extra)"
            )
        timeout = options.get("timeout")
        base_url = base_url.rstrip("/")
        return cls(
            base_url=base_url,
            headers=headers,
            verify=verify,
            proxies={str(k): str(v) for k, v in (proxies or {}).items()},
            timeout=float(timeout) if timeout not in (None, "") else default_timeout,
            ui_url=str(options.get("ui_url") or f"{base_url}/ui/"),
            cert=_client_cert(conn.conn_id, options.get("cert")),
        )

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def proxy_for_aiohttp(self) -> str | None:
        """aiohttp takes one proxy per request: the one for Gantry's scheme."""
        return self.proxies.get(urlsplit(self.base_url).scheme) or None

    def ssl_for_aiohttp(self) -> ssl.SSLContext | bool:
        """
        aiohttp's ``ssl=``: False (no verification) or a context that verifies,
        with the system CAs or the connection's CA bundle. Always a context when
        verifying: aiohttp 3.9.0 (the declared floor) takes ``ssl=True`` as *no* verification.
        """
        if self.verify is False and self.cert is None:
            return False
        if isinstance(self.verify, bool):
            ctx = ssl.create_default_context()
        elif os.path.isdir(self.verify):
            ctx = ssl.create_default_context(capath=self.verify)
        else:
            ctx = ssl.create_default_context(cafile=self.verify)
        if self.verify is False:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert is not None:
            certfile, keyfile = (self.cert, None) if isinstance(self.cert, str) else self.cert
            ctx.load_cert_chain(certfile, keyfile)
        return ctx


class AsyncGantry:
    """Gantry over one aiohttp session (triggerer side); made by :meth:`GantryHook.aclient`."""

    def __init__(self, settings: GantrySettings, session: aiohttp.ClientSession, ssl_arg: ssl.SSLContext | bool):
        self.settings = settings
        self.session = session
        self._request_kwargs: dict[str, Any] = {"ssl": ssl_arg, "proxy": settings.proxy_for_aiohttp(), "allow_redirects": False}

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        """A JSON request; a non-2xx answer raises :class:`GantryApiError`."""
        headers = {**self.settings.headers, **kw.pop("headers", {})}
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        async with self.session.request(
            method, self.settings.url(path), headers=headers, timeout=timeout, **self._request_kwargs, **kw
        ) as resp:
            text = await resp.text()
            if resp.status >= 300:
                raise GantryApiError(method, path, resp.status, text)
            return json.loads(text)

    async def get_job(self, job_id: str) -> dict:
        return await self.request("GET", f"v1/jobs/{job_id}")

    async def cancel_job(self, job_id: str) -> dict:
        # No body: aiohttp would otherwise label the empty POST application/octet-stream.
        return await self.request("POST", f"v1/jobs/{job_id}/cancel", skip_auto_headers=["Content-Type"])

    async def events(self, job_id: str, last_event_id: int | None) -> AsyncIterator[list[SseEvent]]:
        """
        One connection to the job's SSE log stream, as the events of each network
        read (``log``, ``status``, ``end``); ends after ``end`` or when the stream
        closes. A non-2xx answer raises :class:`GantryApiError`.
        """
        path = f"v1/jobs/{job_id}/logs"
        headers = {**self.settings.headers, "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.settings.timeout, sock_read=STREAM_READ_TIMEOUT)
        async with self.session.get(
            self.settings.url(path), headers=headers, timeout=timeout, **self._request_kwargs
        ) as resp:
            if resp.status >= 300:
                raise GantryApiError("GET", path, resp.status, (await resp.text())[:2000])
            parser = SseParser()
            async for chunk in resp.content.iter_any():
                events = parser.feed(chunk)
                if events:
                    yield events
                    if any(ev.event == "end" for ev in events):
                        return


class GantryHook(BaseHook):
    """
    Talks to Gantry's REST API.

    The connection (type ``gantry``; a plain ``http`` connection works the same)
    gives the base URL (host, port, schema ``http``/``https``, or a whole URL in
    host) and the **token** (password field), sent as ``Authorization: Bearer``.
    Its ``extra`` may hold ``verify`` (true, false, or a CA bundle path),
    ``cert`` (a client certificate for mTLS: a PEM path, or a [certificate,
    key] pair), ``proxies`` (a URL or ``{scheme: URL}``), ``timeout``
    (seconds), ``ui_url`` (the operator page as a browser reaches it); every
    other key of ``extra`` is sent as a header, except the HTTP connection's
    client options (``auth_type`` is refused: Gantry takes a bearer token). The worker and the triggerer read the
    connection the same way (:class:`GantrySettings`).

    :param gantry_conn_id: the connection to Gantry.
    :param request_timeout: seconds for ordinary (non-streaming) requests, unless
        the connection's ``timeout`` says otherwise.
    """

    conn_name_attr = "gantry_conn_id"
    default_conn_name = "gantry"
    conn_type = "gantry"
    hook_name = "Gantry"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        from gantry_provider import get_provider_info

        return get_provider_info()["connection-types"][0]["ui-field-behaviour"]

    def __init__(self, gantry_conn_id: str = default_conn_name, request_timeout: float = 30.0) -> None:
        super().__init__()
        self.gantry_conn_id = gantry_conn_id
        self.request_timeout = request_timeout
        self._session: requests.Session | None = None
        self._settings: GantrySettings | None = None

    # -- synchronous API (worker side) ------------------------------------------------

    @property
    def settings(self) -> GantrySettings:
        if self._settings is None:
            conn = self.get_connection(self.gantry_conn_id)
            self._settings = GantrySettings.from_connection(conn, self.request_timeout)
        return self._settings

    def get_conn(self) -> requests.Session:
        if self._session is None:
            s = self.settings
            session = requests.Session()
            session.headers.update(s.headers)
            session.verify = s.verify
            session.cert = s.cert
            session.proxies.update(s.proxies)
            self._session = session
        return self._session

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
            self.settings.url(path),
            data=data,
            params=params,
            headers=hdrs,
            stream=stream,
            timeout=timeout if timeout is not None else self.settings.timeout,
            # Per request: requests lets REQUESTS_CA_BUNDLE override a session's verify.
            verify=self.settings.verify,
            cert=self.settings.cert,
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

    def stream_events(self, job_id: str, last_event_id: int | None = None) -> Iterator[list[SseEvent]]:
        """
        One connection to the job's SSE log stream, as the events of each network
        read (``log``, ``status``, ``end``).

        Ends after ``end``, or when the connection drops (the caller reconnects with
        the last ``log`` id it saw).
        """
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        resp = self.request(
            "GET", f"v1/jobs/{job_id}/logs", headers=headers, stream=True, timeout=(self.settings.timeout, STREAM_READ_TIMEOUT)
        )
        parser = SseParser()
        try:
            for chunk in resp.iter_content(chunk_size=65536):
                events = parser.feed(chunk)
                if events:
                    yield events
                    if any(ev.event == "end" for ev in events):
                        return
        finally:
            resp.close()

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: lists one job, which needs both a reachable Gantry and a valid token."""
        try:
            self.request("GET", "v1/jobs", params={"limit": 1})
        except Exception as exc:
            return False, str(exc)
        return True, f"Connected to Gantry at {self.settings.base_url}"

    # -- asynchronous API (triggerer side) --------------------------------------------

    async def asettings(self) -> GantrySettings:
        """The connection's settings, read without blocking the event loop."""
        if self._settings is None:
            conn = await self.aget_connection(self.gantry_conn_id)
            self._settings = GantrySettings.from_connection(conn, self.request_timeout)
        return self._settings

    @asynccontextmanager
    async def aclient(self) -> AsyncIterator[AsyncGantry]:
        """An :class:`AsyncGantry` on a fresh aiohttp session, closed on exit."""
        settings = await self.asettings()
        ssl_arg = await asyncio.to_thread(settings.ssl_for_aiohttp)  # reads a CA bundle from disk
        async with aiohttp.ClientSession() as session:
            yield AsyncGantry(settings, session, ssl_arg)
