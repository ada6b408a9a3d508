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
    assert lines[0] == "[stderr] line 1" and lines[1] == "[stdout] line 2" and len(lines) == n
    assert stream.last_id == n
    assert list(stream.tail) == [f"[{'stderr' if i % 2 else 'stdout'}] line {i}" for i in range(n - 4, n + 1)]


def test_job_stream_logs_lines_before_the_change_of_state_that_follows_them(log):
    chunk = sse_job("status", job_view(state="running", gpus=["GPU-1"])) + sse_log(1, "hello") + sse_log(2, "bye")
    chunk += sse_job("end", job_view(state="failed", exitCode=3, reason="boom"))
    stream = JobStream("j1", log, stream_logs=True)
    job = stream.handle(SseParser().feed(chunk))
    assert job is not None and job["state"] == "failed" and stream.final_job is job
    assert log.records == [
        "Gantry job j1 is running on GPUs ['GPU-1']",
        "[stdout] hello\n[stdout] bye",
        "Gantry job j1 ended failed (exit code 3): boom",
    ]


def test_job_stream_without_stream_logs_keeps_the_tail_but_logs_no_lines(log):
    stream = JobStream("j1", log, stream_logs=False, tail_lines=1)
    stream.handle(SseParser().feed(sse_log(1, "a") + sse_log(2, "b")))
    assert log.records == [] and list(stream.tail) == ["[stdout] b"]


def test_job_summary_drops_the_spec_and_its_env():
    summary = job_summary(job_view(state="succeeded", result="ok"))
    assert "spec" not in summary and "hunter2-secret" not in json.dumps(summary)
    assert summary["result"] == "ok"
