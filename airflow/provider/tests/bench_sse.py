"""
Times SseParser on a busy log stream (short lines, as Gantry sends them):
one 256 KiB read, and 1 MiB / 16 MiB fed as 256 KiB reads.

    python tests/bench_sse.py [PROVIDER_DIR]

PROVIDER_DIR (default: this tree) is the folder holding gantry_provider, so an
older version can be measured from a checkout of it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1]))

from gantry_provider.sse import SseParser  # noqa: E402


def line(seq: int) -> bytes:
    data = json.dumps({"seq": seq, "stream": "stdout", "time": "2026-01-01T00:00:00.000Z", "line": f"step {seq} loss 0.1234"})
    return f"id: {seq}\nevent: log\ndata: {data}\n\n".encode()


def body(size: int) -> bytes:
    out, n, seq = [], 0, 0
    while n < size:
        seq += 1
        out.append(line(seq))
        n += len(out[-1])
    return b"".join(out)[:size]


def feed(data: bytes, read: int) -> float:
    parser = SseParser()
    t0 = time.perf_counter()
    for i in range(0, len(data), read):
        parser.feed(data[i : i + read])
    return (time.perf_counter() - t0) * 1000


def best(data: bytes, read: int, runs: int = 5) -> float:
    return min(feed(data, read) for _ in range(runs))


if __name__ == "__main__":
    kib = 1024
    print(f"one 256 KiB read:            {best(body(256 * kib), 256 * kib):8.1f} ms")
    print(f"1 MiB as one read:           {best(body(1024 * kib), 1024 * kib):8.1f} ms")
    print(f"1 MiB in 256 KiB reads:      {best(body(1024 * kib), 256 * kib):8.1f} ms")
    print(f"16 MiB in 256 KiB reads:     {best(body(16 * 1024 * kib), 256 * kib, runs=2):8.1f} ms")
