"""Reading a job's Server-Sent Events: a minimal parser (the subset Gantry sends:
event, id, data, comments) and what a follower of one job keeps between events."""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

#: A batch of container lines becomes one log record of at most this many lines ...
BATCH_LINES = 500
#: ... or this many characters, so that a burst costs the (shared) triggerer a few
#: log writes rather than one per line, and no single record grows without bound.
BATCH_CHARS = 256 * 1024


@dataclass
class SseEvent:
    event: str
    data: str
    id: str | None = None


@dataclass
class SseParser:
    """
    Feed it bytes as they arrive; it returns the complete events so far.

    Linear in the bytes fed: each chunk is split once, and an unfinished line is
    kept as a list of pieces joined once, when its newline arrives, so neither a
    large chunk of short lines nor one long line spread over many chunks is
    copied again per line or per chunk.
    """

    _partial: list[bytes] = field(default_factory=list)
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    @staticmethod
    def _split(data: bytes) -> list[bytes]:
        """The only scan of the input: one pass over each chunk."""
        return data.split(b"\n")

    def feed(self, chunk: bytes) -> list[SseEvent]:
        lines = self._split(chunk)
        if len(lines) == 1:
            if chunk:
                self._partial.append(chunk)
            return []
        if self._partial:
            self._partial.append(lines[0])
            lines[0] = b"".join(self._partial)
            self._partial = []
        rest = lines.pop()
        if rest:
            self._partial.append(rest)
        events: list[SseEvent] = []
        for raw in lines:
            self._line(raw, events)
        return events

    def _line(self, raw: bytes, events: list[SseEvent]) -> None:
        line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
        if line == "":
            if self._data or self._event:
                events.append(SseEvent(self._event or "message", "\n".join(self._data), self._id))
            self._event, self._data, self._id = "", [], None
            return
        if line.startswith(":"):
            return  # comment / heartbeat
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


def job_summary(job: dict) -> dict:
    """The job view without its spec: the spec carries env values, which must not
    reach XCom, trigger events or logs (all stored in Airflow's database)."""
    return {k: v for k, v in job.items() if k != "spec"}


class JobStream:
    """
    One follower of a job's SSE stream, in the worker (the operator) or in the
    triggerer (the trigger).

    It takes the events of one network read at a time (:meth:`handle`) and
    writes their container lines as a few batched log records (``<time>
    [stdout] …`` / ``<time> [stderr] …``, the time Gantry read the line, one
    per line of the record), logs each change of state and each attempt that
    ended with its cause (a requeue after a preemption or a lost node is told
    so), keeps the last log seq to resume from (sent as ``Last-Event-ID`` on
    reconnect), the last ``tail_lines`` lines for the task's XCom (without
    the time), and the final job once ``end`` arrives.

    With ``lines_per_interval``, at most that many container lines are
    written per ``logging_interval`` seconds; the others are counted and the
    count is logged (the whole log stays in Gantry), so one chatty job cannot
    flood the log writes of a shared triggerer.
    """

    def __init__(
        self,
        job_id: str,
        log: logging.Logger,
        stream_logs: bool,
        last_id: int | None = None,
        tail_lines: int = 20,
        lines_per_interval: int | None = None,
        logging_interval: float = 60.0,
    ):
        self.job_id = job_id
        self.log = log
        self.stream_logs = stream_logs
        self.last_id = last_id
        self.tail: deque[str] = deque(maxlen=max(0, tail_lines))
        self.final_job: dict | None = None
        self._last_state: str | None = None
        self._pending: list[str] = []
        self._pending_chars = 0
        self._told_attempts: set[int] = set()
        self.lines_per_interval = lines_per_interval
        self.logging_interval = logging_interval
        self._window_start = time.monotonic()
        self._window_lines = 0
        self._skipped = 0

    def handle(self, events: Iterable[SseEvent]) -> dict | None:
        """Takes the events of one read; returns the final Job on `end`, else None."""
        try:
            for ev in events:
                if ev.event == "log":
                    line = json.loads(ev.data)
                    self.last_id = int(line["seq"])
                    text = f"[{line.get('stream', 'stdout')}] {line.get('line', '')}"
                    self.tail.append(text)
                    if self.stream_logs and self._within_cap():
                        stamped = f"{line['time']} {text}" if line.get("time") else text
                        self._pending.append(stamped)
                        self._pending_chars += len(stamped) + 1
                        if len(self._pending) >= BATCH_LINES or self._pending_chars >= BATCH_CHARS:
                            self.flush()
                elif ev.event in ("status", "end"):
                    self.flush()  # lines before a change of state are logged before it
                    job = json.loads(ev.data)
                    self._tell_attempts(job)
                    if job.get("state") != self._last_state:
                        self._last_state = job.get("state")
                        self._log_state(job)
                    if ev.event == "end":
                        self.tell_skipped()
                        self.final_job = job
                        return job
            return None
        finally:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.log.info("%s", "\n".join(self._pending))
            self._pending = []
            self._pending_chars = 0

    def _within_cap(self) -> bool:
        """Whether the next line is written: the cap of the current interval is not reached."""
        if self.lines_per_interval is None:
            return True
        now = time.monotonic()
        if now - self._window_start >= self.logging_interval:
            self.tell_skipped()
            self._window_start, self._window_lines = now, 0
        if self._window_lines < self.lines_per_interval:
            self._window_lines += 1
            return True
        self._skipped += 1
        return False

    def tell_skipped(self) -> None:
        """Logs how many lines the cap kept out of the task log since it last said so."""
        if self._skipped:
            self.flush()
            self.log.warning(
                "Gantry job %s: %d log lines not copied here (at most %d per %.0f s); the whole log is in Gantry",
                self.job_id,
                self._skipped,
                self.lines_per_interval,
                self.logging_interval,
            )
            self._skipped = 0

    def _tell_attempts(self, job: dict) -> None:
        """Each attempt that ended, once: how, why (its cause), and whether Gantry runs the job again."""
        for a in job.get("attempts") or []:
            n = a.get("attempt")
            if n in self._told_attempts:
                continue
            self._told_attempts.add(n)
            self.log.info(
                "Gantry job %s: attempt %s on node %s ended %s (cause: %s, exit code %s)%s%s",
                self.job_id,
                n,
                a.get("node"),
                a.get("outcome"),
                a.get("cause") or "none",
                a.get("exitCode"),
                f": {a['reason']}" if a.get("reason") else "",
                f"; requeued as attempt {n + 1}" if a.get("retried") else "",
            )

    def _log_state(self, job: dict) -> None:
        state = job.get("state")
        if state == "queued":
            self.log.info("Gantry job %s is queued (position %s)", self.job_id, job.get("position"))
        elif state == "running":
            self.log.info(
                "Gantry job %s: attempt %s is running on node %s, GPUs %s",
                self.job_id,
                job.get("attempt", 1),
                job.get("node"),
                job.get("gpus") or "none",
            )
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
