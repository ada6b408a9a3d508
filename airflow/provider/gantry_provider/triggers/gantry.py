"""GantryJobTrigger: follows one Gantry job in the triggerer, streaming its log lines into the task log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from airflow.triggers.base import BaseTrigger, TriggerEvent

from gantry_provider.sse import JobStream, SseParser


class _Transient(Exception):
    """A failure worth reconnecting after (5xx, 408, 429, dropped stream)."""


class GantryJobTrigger(BaseTrigger):
    """
    Waits for a Gantry job to end, without a worker slot.

    It follows ``GET /v1/jobs/{id}/logs`` as Server-Sent Events: each ``log``
    event becomes a line of the task log as it arrives (Airflow 3 routes a
    trigger's log to its task instance's log), each ``status`` event is logged
    when the state changes, and the ``end`` event fires the trigger with the
    final Job. A dropped stream is resumed with ``Last-Event-ID``, so no line is
    lost or repeated within one triggerer; if the triggerer restarts, the new
    trigger resumes from ``last_event_id`` given at deferral (lines already
    logged since may then appear twice).

    Fires ``{"status": "done", "job": <Job>, "last_event_id": n}`` or
    ``{"status": "error", "job_id": ..., "message": ...}``.

    :param job_id: the Gantry job.
    :param gantry_conn_id: the HTTP connection to Gantry.
    :param stream_logs: copy the job's log lines into the task log.
    :param last_event_id: resume the log after this sequence number.
    :param reconnect_interval: seconds between reconnection attempts.
    :param max_unreachable_seconds: give up (error event) after Gantry has been
        unreachable this long; the job itself keeps running and a retry of the
        task re-attaches to it.
    """

    def __init__(
        self,
        job_id: str,
        gantry_conn_id: str = "gantry",
        stream_logs: bool = True,
        last_event_id: int | None = None,
        reconnect_interval: float = 5.0,
        max_unreachable_seconds: float = 600.0,
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.gantry_conn_id = gantry_conn_id
        self.stream_logs = stream_logs
        self.last_event_id = last_event_id
        self.reconnect_interval = reconnect_interval
        self.max_unreachable_seconds = max_unreachable_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "gantry_provider.triggers.gantry.GantryJobTrigger",
            {
                "job_id": self.job_id,
                "gantry_conn_id": self.gantry_conn_id,
                "stream_logs": self.stream_logs,
                "last_event_id": self.last_event_id,
                "reconnect_interval": self.reconnect_interval,
                "max_unreachable_seconds": self.max_unreachable_seconds,
            },
        )

    async def _config(self) -> tuple[str, dict[str, str]]:
        from gantry_provider.hooks.gantry import GantryHook

        return await GantryHook(self.gantry_conn_id).async_config()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        base_url, headers = await self._config()
        url = f"{base_url}/v1/jobs/{self.job_id}/logs"
        stream = JobStream(self.job_id, self.log, self.stream_logs, self.last_event_id)
        failing_since: float | None = None
        # Gantry sends a heartbeat at least every 15 s; 60 s of silence is a dead connection.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    req_headers = {**headers, "Accept": "text/event-stream"}
                    if stream.last_id is not None:
                        req_headers["Last-Event-ID"] = str(stream.last_id)
                    async with session.get(url, headers=req_headers, allow_redirects=False) as resp:
                        if resp.status >= 500 or resp.status in (408, 429):
                            raise _Transient(f"HTTP {resp.status}")
                        if resp.status >= 300:
                            text = await resp.text()
                            yield TriggerEvent(
                                {
                                    "status": "error",
                                    "job_id": self.job_id,
                                    "message": f"Gantry answered {resp.status} for the log of job {self.job_id}: {text[:500]}",
                                }
                            )
                            return
                        failing_since = None
                        parser = SseParser()
                        async for chunk in resp.content.iter_any():
                            for ev in parser.feed(chunk):
                                job = stream.handle(ev)
                                if job is not None:
                                    yield TriggerEvent({"status": "done", "job": job, "last_event_id": stream.last_id})
                                    return
                        raise _Transient("the log stream closed before the job ended")
                except (aiohttp.ClientError, asyncio.TimeoutError, _Transient) as exc:
                    now = time.monotonic()
                    failing_since = failing_since or now
                    if now - failing_since > self.max_unreachable_seconds:
                        yield TriggerEvent(
                            {
                                "status": "error",
                                "job_id": self.job_id,
                                "message": f"lost Gantry for {self.max_unreachable_seconds:.0f} s while following job {self.job_id}: {exc!r}",
                            }
                        )
                        return
                    self.log.warning(
                        "Following job %s: %r; reconnecting in %.0f s", self.job_id, exc, self.reconnect_interval
                    )
                await asyncio.sleep(self.reconnect_interval)

    async def on_kill(self) -> None:
        """The user killed the deferred task (mark failed/success, clear): cancel the job, freeing its GPUs."""
        base_url, headers = await self._config()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            # No body: aiohttp would otherwise label the empty POST application/octet-stream.
            async with session.post(
                f"{base_url}/v1/jobs/{self.job_id}/cancel", headers=headers, skip_auto_headers=["Content-Type"]
            ) as resp:
                if resp.status >= 300:
                    self.log.error(
                        "Could not cancel Gantry job %s: HTTP %s %s", self.job_id, resp.status, (await resp.text())[:500]
                    )
                else:
                    job = await resp.json()
                    self.log.info("Cancelled Gantry job %s (now %s)", self.job_id, job.get("state"))
