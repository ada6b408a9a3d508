"""A minimal Server-Sent Events parser (the subset Gantry sends: event, id, data, comments)."""

from __future__ import annotations

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
