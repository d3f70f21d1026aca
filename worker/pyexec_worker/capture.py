"""Capped, non-blocking readers for the pipes a run writes to.

Owns: keeping the first ``limit`` bytes of a stream and draining (reading
and discarding) the rest, so a 200 MB print costs time, not memory, and
never blocks the run on a full pipe. Must not: interpret the bytes.
"""

from __future__ import annotations

import os

CHUNK = 1 << 16


class CappedPipe:
    """One pipe read end; ``read_ready`` is called when poll says readable."""

    def __init__(self, fd: int, limit: int) -> None:
        self.fd = fd
        self.limit = limit
        self.data = bytearray()
        self.truncated = False
        self.eof = False
        os.set_blocking(fd, False)

    def read_ready(self) -> bool:
        """Read until the pipe would block (returns True) or hits EOF."""
        while not self.eof:
            try:
                chunk = os.read(self.fd, CHUNK)
            except BlockingIOError:
                return True
            if not chunk:
                self.eof = True
                return False
            room = self.limit - len(self.data)
            if len(chunk) > room:
                self.truncated = True
                if room > 0:
                    self.data += chunk[:room]
            else:
                self.data += chunk
        return False


class LineReader:
    """The status pipe: short text lines from the run's trusted processes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False
        self._buf = b""

    def read_lines(self) -> list[str]:
        """Whole lines available now (non-blocking after the first poll)."""
        try:
            chunk = os.read(self.fd, 4096)
        except BlockingIOError:
            return []
        if not chunk:
            self.eof = True
            rest, self._buf = self._buf, b""
            return [rest.decode(errors="replace")] if rest else []
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        return [line.decode(errors="replace") for line in lines]
