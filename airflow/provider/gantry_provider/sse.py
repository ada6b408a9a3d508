"""Reading a job's Server-Sent Events: a minimal parser (the subset Gantry sends:
event, id, data, comments) and what a follower of one job keeps between events."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field


@dataclass
class SseEvent:
    event: str
    data: str
    id: str | None = None


@dataclass
class SseParser:
    """Feed it bytes as they arrive; it returns the complete events so far."""

    _buf: bytes = b""
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        self._buf += chunk
        events: list[SseEvent] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                return events
            raw, self._buf = self._buf[:nl], self._buf[nl + 1 :]
            line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
            if line == "":
                if self._data or self._event:
                    events.append(SseEvent(self._event or "message", "\n".join(self._data), self._id))
                self._event, self._data, self._id = "", [], None
                continue
            if line.startswith(":"):
                continue  # comment / heartbeat
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)
            elif name == "id":
                self._id = value
            # "retry" and unknown fields are ignored


class JobStream:
    """One follower of a job's SSE stream, in the worker (the operator) or in the
    triggerer (the trigger): logs each log line and each change of state, and
    keeps the last log seq to resume from (sent as Last-Event-ID on reconnect)."""

    def __init__(self, job_id: str, log: logging.Logger, stream_logs: bool, last_id: int | None = None):
        self.job_id = job_id
        self.log = log
        self.stream_logs = stream_logs
        self.last_id = last_id
        self._last_state: str | None = None

    def handle(self, ev: SseEvent) -> dict | None:
        """Takes one event; returns the final Job on `end`, else None."""
        if ev.event == "log":
            line = json.loads(ev.data)
            self.last_id = int(line["seq"])
            if self.stream_logs:
                self.log.info("[%s] %s", line.get("stream", "stdout"), line.get("line", ""))
        elif ev.event in ("status", "end"):
            job = json.loads(ev.data)
            if job.get("state") != self._last_state:
                self._last_state = job.get("state")
                self._log_state(job)
            if ev.event == "end":
                return job
        return None

    def _log_state(self, job: dict) -> None:
        state = job.get("state")
        if state == "queued":
            self.log.info("Gantry job %s is queued (position %s)", self.job_id, job.get("position"))
        elif state == "running":
            self.log.info("Gantry job %s is running on GPUs %s", self.job_id, job.get("gpus") or "none")
        elif state in ("succeeded", "failed", "cancelled", "timed_out"):
            self.log.info(
                "Gantry job %s ended %s (exit code %s)%s",
                self.job_id,
                state,
                job.get("exitCode"),
                f": {job['reason']}" if job.get("reason") else "",
            )
        else:
            self.log.info("Gantry job %s is %s", self.job_id, state)
