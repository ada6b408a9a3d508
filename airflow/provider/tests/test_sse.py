"""The SSE parser and the job follower (JobStream): correctness, linear work, batched log records."""

from __future__ import annotations

import json
import logging

import pytest

from conftest import job_view, sse_job, sse_log
from gantry_provider.sse import BATCH_LINES, JobStream, SseParser, job_summary


def test_parser_reassembles_events_split_anywhere():
    stream = b": ping\n\nretry: 2000\n" + sse_job("status", {"state": "queued"}) + sse_log(1, "a") + sse_log(2, "b\u00e9")
    stream += b"event: multi\r\ndata: one\r\ndata: two\r\n\r\n" + sse_job("end", {"state": "succeeded"})
    whole = SseParser().feed(stream)
    for size in (1, 2, 3, 7, 64):
        parser, events = SseParser(), []
        for i in range(0, len(stream), size):
            events += parser.feed(stream[i : i + size])
        assert events == whole, size
    assert [e.event for e in whole] == ["status", "log", "log", "multi", "end"]
    assert whole[1].id == "1" and json.loads(whole[2].data)["line"] == "b\u00e9"
    assert whole[3].data == "one\ntwo"


def _scanned(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the bytes the parser scans (its only scan of the input is SseParser._split)."""
    counts: list[int] = []
    real = SseParser._split

    def counting(data: bytes) -> list[bytes]:
        counts.append(len(data))
        return real(data)

    monkeypatch.setattr(SseParser, "_split", staticmethod(counting))
    return counts


@pytest.mark.parametrize("total_kib", [256, 1024, 4096])
def test_parser_work_is_linear_in_the_bytes_fed(monkeypatch, total_kib):
    counts = _scanned(monkeypatch)
    one = sse_log(123456, "x" * 80)
    body = one * (total_kib * 1024 // len(one))
    parser = SseParser()
    events = 0
    for i in range(0, len(body), 256 * 1024):  # 256 KiB reads, as a busy stream delivers them
        events += len(parser.feed(body[i : i + 256 * 1024]))
    assert events == len(body) // len(one)
    assert sum(counts) == len(body)  # every byte scanned once, whatever the size


def test_one_long_line_over_many_chunks_is_not_copied_per_chunk(monkeypatch):
    counts = _scanned(monkeypatch)
    line = sse_log(1, "y" * (4 * 1024 * 1024))
    parser = SseParser()
    events = []
    for i in range(0, len(line), 4096):
        events += parser.feed(line[i : i + 4096])
    assert len(events) == 1 and len(json.loads(events[0].data)["line"]) == 4 * 1024 * 1024
    assert sum(counts) == len(line)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture()
def log():
    logger = logging.getLogger(f"gantry-test-{id(object())}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = Records()
    logger.addHandler(handler)
    logger.records = handler.messages  # type: ignore[attr-defined]
    return logger


def test_job_stream_batches_the_lines_of_one_read_into_few_records(log):
    n = 3 * BATCH_LINES + 7
    chunk = b"".join(sse_log(i, f"line {i}", "stderr" if i % 2 else "stdout") for i in range(1, n + 1))
    stream = JobStream("j1", log, stream_logs=True, tail_lines=5)
    assert stream.handle(SseParser().feed(chunk)) is None
    assert len(log.records) == 4  # three full batches and the rest, not one record per line
    lines = "\n".join(log.records).split("\n")
    # Each line in the task log keeps the time Gantry read it; the XCom tail keeps the bare line.
    assert lines[0] == "2026-01-01T00:00:00Z [stderr] line 1" and lines[1] == "2026-01-01T00:00:00Z [stdout] line 2" and len(lines) == n
    assert stream.last_id == n
    assert list(stream.tail) == [f"[{'stderr' if i % 2 else 'stdout'}] line {i}" for i in range(n - 4, n + 1)]


def test_job_stream_logs_lines_before_the_change_of_state_that_follows_them(log):
    chunk = sse_job("status", job_view(state="running", node="node-a", gpus=["GPU-1"])) + sse_log(1, "hello") + sse_log(2, "bye")
    chunk += sse_job("end", job_view(state="failed", exitCode=3, reason="boom"))
    stream = JobStream("j1", log, stream_logs=True)
    job = stream.handle(SseParser().feed(chunk))
    assert job is not None and job["state"] == "failed" and stream.final_job is job
    assert log.records == [
        "Gantry job j1: attempt 1 is running on node node-a, GPUs ['GPU-1']",
        "2026-01-01T00:00:00Z [stdout] hello\n2026-01-01T00:00:00Z [stdout] bye",
        "Gantry job j1 ended failed (exit code 3): boom",
    ]


def _attempt(n: int, cause: str | None, retried: bool, outcome: str = "failed", reason: str | None = None) -> dict:
    return {"attempt": n, "node": f"node-{n}", "outcome": outcome, "cause": cause, "retried": retried, "reason": reason, "exitCode": None}


def test_job_stream_tells_each_attempt_once_with_its_cause_and_the_requeue(log):
    preempted = _attempt(1, "preempted", True, reason="GPUs taken by job j9 (priority 10)")
    lost = _attempt(2, "node_lost", True, reason="node node-2 stopped renewing its lease")
    chunk = sse_job("status", job_view(state="running", attempt=1, node="node-1", gpus=["GPU-1"]))
    chunk += sse_job("status", job_view(state="queued", attempt=2, attempts=[preempted], position=0))
    chunk += sse_job("status", job_view(state="running", attempt=2, node="node-2", attempts=[preempted]))
    chunk += sse_job("status", job_view(state="queued", attempt=3, attempts=[preempted, lost], position=0))
    chunk += sse_job("status", job_view(state="running", attempt=3, node="node-3", attempts=[preempted, lost]))
    done = _attempt(3, None, False, outcome="succeeded")
    chunk += sse_job("end", job_view(state="succeeded", attempt=3, node="node-3", attempts=[preempted, lost, done], exitCode=0))
    JobStream("j1", log, stream_logs=True).handle(SseParser().feed(chunk))
    told = [m for m in log.records if ": attempt " in m]
    assert told == [
        "Gantry job j1: attempt 1 is running on node node-1, GPUs ['GPU-1']",
        "Gantry job j1: attempt 1 on node node-1 ended failed (cause: preempted, exit code None): GPUs taken by job j9 (priority 10); requeued as attempt 2",
        "Gantry job j1: attempt 2 is running on node node-2, GPUs none",
        "Gantry job j1: attempt 2 on node node-2 ended failed (cause: node_lost, exit code None): node node-2 stopped renewing its lease; requeued as attempt 3",
        "Gantry job j1: attempt 3 is running on node node-3, GPUs none",
        "Gantry job j1: attempt 3 on node node-3 ended succeeded (cause: none, exit code None)",
    ]


def test_job_stream_caps_the_lines_per_interval_and_counts_the_rest(log, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("gantry_provider.sse.time.monotonic", lambda: clock[0])
    stream = JobStream("j1", log, stream_logs=True, tail_lines=2, lines_per_interval=3, logging_interval=60)
    stream.handle(SseParser().feed(b"".join(sse_log(i, f"l{i}") for i in range(1, 11))))
    clock[0] += 61  # the next interval: the count is told, and lines are written again
    stream.handle(SseParser().feed(sse_log(11, "l11")))
    stream.handle(SseParser().feed(sse_job("end", job_view(state="succeeded"))))
    written = [ln for m in log.records for ln in m.split("\n") if "[stdout]" in ln]
    assert written == [f"2026-01-01T00:00:00Z [stdout] l1", f"2026-01-01T00:00:00Z [stdout] l2", f"2026-01-01T00:00:00Z [stdout] l3", f"2026-01-01T00:00:00Z [stdout] l11"]
    assert "Gantry job j1: 7 log lines not copied here (at most 3 per 60 s); the whole log is in Gantry" in log.records
    assert list(stream.tail) == ["[stdout] l10", "[stdout] l11"]  # the XCom tail keeps every last line


def test_job_stream_without_stream_logs_keeps_the_tail_but_logs_no_lines(log):
    stream = JobStream("j1", log, stream_logs=False, tail_lines=1)
    stream.handle(SseParser().feed(sse_log(1, "a") + sse_log(2, "b")))
    assert log.records == [] and list(stream.tail) == ["[stdout] b"]


def test_job_summary_drops_the_spec_and_its_env():
    summary = job_summary(job_view(state="succeeded", result="ok"))
    assert "spec" not in summary and "hunter2-secret" not in json.dumps(summary)
    assert summary["result"] == "ok"
