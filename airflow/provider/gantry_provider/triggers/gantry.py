"""Triggers: GantryJobTrigger follows one Gantry job's log stream; GantryJobStateTrigger polls one job's state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import aiohttp

from airflow.triggers.base import BaseTrigger, TriggerEvent

from gantry_provider.hooks.gantry import TERMINAL_STATES, GantryApiError, GantryHook
from gantry_provider.sse import JobStream, job_summary

#: XCom key under which a deferred task's trigger records how far it has copied the log.
LOG_SEQ_XCOM_KEY = "gantry_log_seq"

#: Failures worth reconnecting after: the network, a timeout, or a transient HTTP answer.
_NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


class GantryJobTrigger(BaseTrigger):
    """
    Waits for a Gantry job to end, without a worker slot.

    It follows ``GET /v1/jobs/{id}/logs`` as Server-Sent Events: the container
    lines of each network read become one batched record of the task log
    (Airflow 3 routes a trigger's log to its task instance's log), each change
    of state is logged, and the ``end`` event fires the trigger. A dropped
    stream is resumed with ``Last-Event-ID``. Every ``checkpoint_interval``
    seconds the trigger records the last line it logged in the task's XCom
    ``gantry_log_seq``; a trigger restarted by another triggerer resumes from
    there, so at most the lines of that interval appear twice.

    Fires ``{"status": "done", "job": <Job without spec>, "log_tail": [...],
    "last_event_id": n}`` or ``{"status": "error", "job_id": ..., "message": ...}``.

    :param job_id: the Gantry job.
    :param gantry_conn_id: the connection to Gantry.
    :param stream_logs: copy the job's log lines into the task log.
    :param last_event_id: resume the log after this sequence number.
    :param reconnect_interval: seconds between reconnection attempts.
    :param max_unreachable_seconds: give up (error event) after Gantry has been
        unreachable this long; the job itself keeps running and a retry of the
        task re-attaches to it.
    :param cancel_on_kill: cancel the job when a user kills the deferred task.
    :param tail_lines: how many last lines the event carries.
    :param checkpoint_interval: seconds between records of the log position.
    :param log_lines_per_interval: the most container lines written to the task
        log per ``logging_interval`` seconds (None: no cap); the rest are counted.
    :param logging_interval: the interval of that cap, in seconds.

    Its arguments hold no secret: Airflow's REST API shows them as the task
    instance's ``trigger.kwargs`` while the task is deferred. The operator's
    ``private_env`` values are redacted by Gantry before a line reaches it.
    """

    def __init__(
        self,
        job_id: str,
        gantry_conn_id: str = "gantry",
        stream_logs: bool = True,
        last_event_id: int | None = None,
        reconnect_interval: float = 5.0,
        max_unreachable_seconds: float = 600.0,
        cancel_on_kill: bool = True,
        tail_lines: int = 20,
        checkpoint_interval: float = 5.0,
        log_lines_per_interval: int | None = None,
        logging_interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.gantry_conn_id = gantry_conn_id
        self.stream_logs = stream_logs
        self.last_event_id = last_event_id
        self.reconnect_interval = reconnect_interval
        self.max_unreachable_seconds = max_unreachable_seconds
        self.cancel_on_kill = cancel_on_kill
        self.tail_lines = tail_lines
        self.checkpoint_interval = checkpoint_interval
        self.log_lines_per_interval = log_lines_per_interval
        self.logging_interval = logging_interval

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
                "cancel_on_kill": self.cancel_on_kill,
                "tail_lines": self.tail_lines,
                "checkpoint_interval": self.checkpoint_interval,
                "log_lines_per_interval": self.log_lines_per_interval,
                "logging_interval": self.logging_interval,
            },
        )

    # -- the log position, kept in the task's XCom (only in a triggerer, where the trigger has a task instance)

    def _xcom_where(self) -> dict[str, Any] | None:
        ti = self.task_instance
        if ti is None:
            return None
        return {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id, "map_index": ti.map_index}

    async def _load_checkpoint(self) -> int | None:
        where = self._xcom_where()
        if where is None:
            return None
        from airflow.sdk.execution_time.xcom import XCom

        try:
            value = await XCom.aget_one(key=LOG_SEQ_XCOM_KEY, **where)
        except Exception as exc:  # without it the log is copied from the deferral point again
            self.log.warning("Could not read the log position of job %s: %r", self.job_id, exc)
            return None
        return int(value) if value is not None else None

    async def _save_checkpoint(self, seq: int) -> None:
        where = self._xcom_where()
        if where is None:
            return
        from airflow.sdk.execution_time.xcom import XCom

        try:
            await XCom.aset(LOG_SEQ_XCOM_KEY, seq, **where)
        except Exception as exc:  # following the job matters more than the record of how far it got
            self.log.warning("Could not record the log position of job %s: %r", self.job_id, exc)

    # -- following --------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = GantryHook(self.gantry_conn_id)
        saved = await self._load_checkpoint()
        start = max((s for s in (self.last_event_id, saved) if s is not None), default=None)
        if saved is not None:
            self.log.info("Resuming the log of Gantry job %s after line %s", self.job_id, saved)
        stream = JobStream(
            self.job_id,
            self.log,
            self.stream_logs,
            start,
            self.tail_lines,
            lines_per_interval=self.log_lines_per_interval,
            logging_interval=self.logging_interval,
        )
        checkpointed, checkpointed_at = start, time.monotonic()
        failing_since: float | None = None
        async with hook.aclient() as gantry:
            while True:
                try:
                    # aclosing: leaving the loop at `end` closes the response before the session.
                    async with aclosing(gantry.events(self.job_id, stream.last_id)) as reads:
                        async for events in reads:
                            failing_since = None
                            job = stream.handle(events)
                            if job is not None:
                                yield TriggerEvent(
                                    {
                                        "status": "done",
                                        "job": job_summary(job),
                                        "log_tail": list(stream.tail),
                                        "last_event_id": stream.last_id,
                                    }
                                )
                                return
                            now = time.monotonic()
                            if stream.last_id != checkpointed and now - checkpointed_at >= self.checkpoint_interval:
                                checkpointed, checkpointed_at = stream.last_id, now
                                await self._save_checkpoint(stream.last_id)
                    err: Exception = ConnectionError("the log stream closed before the job ended")
                except GantryApiError as exc:
                    if not exc.transient:
                        yield TriggerEvent({"status": "error", "job_id": self.job_id, "message": str(exc)})
                        return
                    err = exc
                except _NETWORK_ERRORS as exc:
                    err = exc
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > self.max_unreachable_seconds:
                    yield TriggerEvent(
                        {
                            "status": "error",
                            "job_id": self.job_id,
                            "message": f"lost Gantry for {self.max_unreachable_seconds:.0f} s while following job {self.job_id}: {err!r}",
                        }
                    )
                    return
                self.log.warning("Following job %s: %r; reconnecting in %.0f s", self.job_id, err, self.reconnect_interval)
                await asyncio.sleep(self.reconnect_interval)

    async def on_kill(self) -> None:
        """A user killed the deferred task (mark failed/success, clear): cancel the job unless told not to."""
        if not self.cancel_on_kill:
            self.log.info("Leaving Gantry job %s running (cancel_on_kill=False)", self.job_id)
            return
        try:
            async with GantryHook(self.gantry_conn_id).aclient() as gantry:
                job = await gantry.cancel_job(self.job_id)
            self.log.info("Cancelled Gantry job %s (now %s)", self.job_id, job.get("state"))
        except Exception as exc:  # the triggerer only logs it; say what failed
            self.log.error("Could not cancel Gantry job %s: %r", self.job_id, exc)


class GantryJobStateTrigger(BaseTrigger):
    """
    Polls ``GET /v1/jobs/{id}`` until the job ends, for :class:`~gantry_provider.sensors.gantry.GantryJobSensor`.

    Always ends with an event, never by raising, so the sensor decides how the
    task ends: ``{"status": "ended", "job": <Job without spec>}`` for any final
    state, ``{"status": "not_found", "job_id", "message"}`` for a 404 (an unknown
    job is a failure, not something to wait for), ``{"status": "error",
    "job_id", "message"}`` for other refusals or when Gantry stays unreachable
    for ``max_unreachable_seconds``.
    """

    def __init__(
        self,
        job_id: str,
        gantry_conn_id: str = "gantry",
        poll_interval: float = 10.0,
        max_unreachable_seconds: float = 600.0,
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.gantry_conn_id = gantry_conn_id
        self.poll_interval = poll_interval
        self.max_unreachable_seconds = max_unreachable_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "gantry_provider.triggers.gantry.GantryJobStateTrigger",
            {
                "job_id": self.job_id,
                "gantry_conn_id": self.gantry_conn_id,
                "poll_interval": self.poll_interval,
                "max_unreachable_seconds": self.max_unreachable_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        failing_since: float | None = None
        try:
            async with GantryHook(self.gantry_conn_id).aclient() as gantry:
                while True:
                    try:
                        job = await gantry.get_job(self.job_id)
                        failing_since = None
                        if job.get("state") in TERMINAL_STATES:
                            yield TriggerEvent({"status": "ended", "job": job_summary(job)})
                            return
                        err: Exception | None = None
                    except GantryApiError as exc:
                        if exc.status == 404:
                            yield TriggerEvent({"status": "not_found", "job_id": self.job_id, "message": str(exc)})
                            return
                        if not exc.transient:
                            yield TriggerEvent({"status": "error", "job_id": self.job_id, "message": str(exc)})
                            return
                        err = exc
                    except _NETWORK_ERRORS as exc:
                        err = exc
                    if err is not None:
                        now = time.monotonic()
                        failing_since = failing_since or now
                        if now - failing_since > self.max_unreachable_seconds:
                            yield TriggerEvent(
                                {
                                    "status": "error",
                                    "job_id": self.job_id,
                                    "message": f"lost Gantry for {self.max_unreachable_seconds:.0f} s while waiting for job {self.job_id}: {err!r}",
                                }
                            )
                            return
                        self.log.warning("Waiting for job %s: %r", self.job_id, err)
                    await asyncio.sleep(self.poll_interval)
        except Exception as exc:  # e.g. the connection is missing or malformed: the sensor reports it
            yield TriggerEvent({"status": "error", "job_id": self.job_id, "message": f"{type(exc).__name__}: {exc}"})
