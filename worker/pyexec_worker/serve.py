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
import select
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
from .warmup import warm_up

SPARE_READY_TIMEOUT_S = 10.0
# Consecutive spares that may fail set-up before the zygote gives up.
MAX_SPARE_FAILURES = 3
# How often to retry reaping killed runs while some are still dying.
REAP_POLL_MS = 5
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
        self.ready: deque[Spare] = deque()
        self.building: dict[int, Spare] = {}  # status fd -> spare being set up
        self.asked = 0  # spares asked of the fork server, ends not yet here
        self.dying: set[int] = set()  # killed run inits not yet reaped
        self.failures = 0

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

    # --- spares ------------------------------------------------------------

    def top_up(self) -> None:
        """Keep ``cfg.spares`` spares ready or on their way.

        The fork server builds spares in its own process while we serve a
        run, so a request that follows another one at once still finds an
        isolated runner waiting instead of paying for the forks.
        """
        while len(self.ready) + len(self.building) + self.asked < self.cfg.spares:
            self.forks.ask()
            self.asked += 1

    def on_fork_server(self) -> None:
        spare = Spare(self.forks.receive())
        self.asked -= 1
        self.building[spare.status.fd] = spare

    def on_spare_status(self, spare: Spare) -> None:
        try:
            spare.poll_setup()
        except SpareError as exc:
            del self.building[spare.status.fd]
            self.retire(spare)
            self.failures += 1
            print(f"pyexec zygote: spare failed ({self.failures} in a row): {exc}", file=sys.stderr, flush=True)
            if self.failures >= MAX_SPARE_FAILURES:
                raise
            return
        if spare.is_ready:
            del self.building[spare.status.fd]
            self.ready.append(spare)
            self.failures = 0

    def retire(self, spare: Spare) -> None:
        """Kill a used or broken spare now; reap it later, off the hot path."""
        spare.kill()
        spare.close_all()
        if spare.init_pid is not None and not spare.reaped:
            self.dying.add(spare.init_pid)

    def reap_dying(self) -> None:
        for pid in list(self.dying):
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.dying.discard(pid)

    def wait(self) -> None:
        """Handle control input, fork-server replies and spare set-up."""
        poller = select.poll()
        for fd in (self.control.fileno(), self.forks.fileno(), *self.building):
            poller.register(fd, select.POLLIN)
        timeout_ms = REAP_POLL_MS if self.dying else -1
        for fd, _events in poller.poll(timeout_ms):
            if fd == self.control.fileno():
                self.on_control()
            elif fd == self.forks.fileno():
                self.on_fork_server()
            elif fd in self.building:
                self.on_spare_status(self.building[fd])
        self.reap_dying()

    def take_spare(self) -> Spare:
        while not self.ready:
            self.top_up()
            self.wait()
        return self.ready.popleft()

    # --- runs ----------------------------------------------------------------

    def serve_run(self, req: RunRequest) -> RunResult:
        """Run ``req`` on a ready spare (a second one if the first broke)."""
        for attempt in (1, 2):
            spare = self.take_spare()
            try:
                return session.run(spare, req, self.control.fileno(), self.on_control)
            except SpareError:
                if attempt == 2:
                    raise
            finally:
                self.retire(spare)
        raise AssertionError("unreachable")

    def loop(self) -> int:
        while True:
            self.top_up()
            if self.pending:
                result = self.serve_run(self.pending.popleft())
                self.send(protocol.fit_result(result, self.cfg.max_frame_bytes))
            else:
                self.wait()

    def start(self) -> None:
        """Create and verify the first spare synchronously (fail closed)."""
        spare = Spare(self.forks.request())
        try:
            spare.wait_ready(SPARE_READY_TIMEOUT_S)
        except SpareError:
            spare.discard()
            raise
        self.ready.append(spare)

    def shutdown(self) -> None:
        for spare in (*self.ready, *self.building.values()):
            spare.discard()
        self.ready.clear()
        self.building.clear()
        for pid in self.dying:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.dying.clear()
        self.forks.close()


def main(argv: list[str]) -> int:
    cfg = parse_args(argv)
    control = socket.socket(fileno=cfg.control_fd)
    control.setblocking(True)
    # SECURITY: nothing in the jail (a run that escaped its pid namespace
    # included) may ptrace the zygote or read/write /proc/<zygote>/mem.
    libc.prctl(libc.PR_SET_DUMPABLE, 0)
    # Run inits are our children (CLONE_PARENT); anything orphaned in the
    # jail is re-parented to us too, so nothing stays a zombie.
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    warm_up()
    # Everything imported so far stays shared (copy-on-write) with every fork.
    gc.collect()
    gc.freeze()
    zygote = Zygote(cfg, control)
    try:
        try:
            zygote.start()
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
