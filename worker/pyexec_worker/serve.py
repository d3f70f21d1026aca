"""The zygote: warm interpreter, control socket, one run at a time.

Owns: start-up (imports numpy and pandas, freezes the GC heap, becomes
non-dumpable, starts the fork server, proves per-run namespaces work with
a first spare, then says ``ready``), the control loop (``ping``/``run``,
EOF = shut down) and sending results. Must not: run user code, fork a run
itself (only the fork server does), or let a run's misbehaviour raise out
of the loop.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import socket
import sys
from collections import deque

import numpy
import pandas

from . import libc, protocol, session
from .config import ZygoteConfig, parse_args
from .forkserver import ForkServer, ForkServerError
from .protocol import FrameReader, Ping, ProtocolError, RunRequest, RunResult
from .session import Spare, SpareError

SPARE_READY_TIMEOUT_S = 10.0
EXIT_PROTOCOL = 2
EXIT_FATAL = 1


class Shutdown(Exception):
    """The supervisor closed the control socket."""


class Zygote:
    """The control loop and the current spare."""

    def __init__(self, cfg: ZygoteConfig, control: socket.socket) -> None:
        self.cfg = cfg
        self.control = control
        self.reader = FrameReader(cfg.max_frame_bytes)
        self.pending: deque[RunRequest | Ping] = deque()
        self.forks = ForkServer(cfg, control)
        self.spare: Spare | None = None

    # --- control socket --------------------------------------------------

    def send(self, message: dict) -> None:
        try:
            self.control.sendall(protocol.encode_frame(message))
        except OSError:
            raise Shutdown from None

    def on_control(self) -> None:
        """Read what the socket has; answer pings now, queue runs."""
        try:
            data = self.control.recv(1 << 16)
        except OSError:
            data = b""  # a reset counts as closed
        if not data:
            raise Shutdown
        for msg in self.reader.feed(data):
            request = protocol.parse_request(msg)
            if isinstance(request, Ping):
                self.send(protocol.pong_message(request.id))
            else:
                self.pending.append(request)

    def next_request(self) -> RunRequest:
        while not self.pending:
            self.on_control()
        return self.pending.popleft()

    # --- spares and runs ---------------------------------------------------

    def new_spare(self, used: Spare | None = None) -> Spare:
        """Fork a spare and wait until its runner is ready.

        ``used`` (the run just answered) is reaped while the fork server
        forks: its teardown and the new spare's setup overlap.
        """
        ends = self.forks.request()
        if used is not None:
            used.discard()
        spare = Spare(ends)
        try:
            spare.wait_ready(SPARE_READY_TIMEOUT_S)
        except SpareError:
            spare.discard()
            raise
        return spare

    def serve_run(self, req: RunRequest) -> tuple[RunResult, Spare]:
        """Run ``req``; returns the result and the used spare (to discard)."""
        for attempt in (1, 2):
            spare = self.spare if self.spare is not None else self.new_spare()
            self.spare = None
            try:
                return session.run(spare, req, self.control.fileno(), self.on_control), spare
            except SpareError:
                spare.discard()
                if attempt == 2:
                    raise
            except BaseException:
                spare.discard()
                raise
        raise AssertionError("unreachable")

    def loop(self) -> int:
        while True:
            req = self.next_request()
            result, used = self.serve_run(req)
            self.send(protocol.fit_result(result, self.cfg.max_frame_bytes))
            self.spare = self.new_spare(used)

    def shutdown(self) -> None:
        if self.spare is not None:
            self.spare.discard()
            self.spare = None
        self.forks.close()


def main(argv: list[str]) -> int:
    cfg = parse_args(argv)
    control = socket.socket(fileno=cfg.control_fd)
    control.setblocking(True)
    # SECURITY: nothing in the jail (a run that escaped its pid namespace
    # included) may ptrace the zygote or read/write /proc/<zygote>/mem.
    libc.prctl(libc.PR_SET_DUMPABLE, 0)
    # Each run init is re-parented to us when its intermediate parent exits.
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    # Everything imported so far stays shared (copy-on-write) with every fork.
    gc.collect()
    gc.freeze()
    zygote = Zygote(cfg, control)
    try:
        try:
            zygote.spare = zygote.new_spare()
        except (SpareError, ForkServerError) as exc:
            zygote.send(protocol.fatal_message(f"cannot create a per-run sandbox: {exc}"))
            return EXIT_FATAL
        versions = (platform.python_version(), numpy.__version__, pandas.__version__)
        zygote.send(protocol.ready_message(os.getpid(), *versions))
        return zygote.loop()
    except Shutdown:
        return 0
    except ProtocolError as exc:
        _try_send(zygote, protocol.fatal_message(f"protocol error: {exc}"))
        return EXIT_PROTOCOL
    except (SpareError, ForkServerError) as exc:
        _try_send(zygote, protocol.fatal_message(f"cannot create a per-run sandbox: {exc}"))
        return EXIT_FATAL
    finally:
        zygote.shutdown()
        sys.stdout.flush()


def _try_send(zygote: Zygote, message: dict) -> None:
    with contextlib.suppress(Shutdown):
        zygote.send(message)
