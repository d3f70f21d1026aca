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
import dataclasses
import gc
import os
import platform
import select
import socket
import sys
import time
from collections import deque

import numpy
import pandas

from . import figures, libc, notebook, protocol, runcgroup, session, verdict
from .config import ZygoteConfig, parse_args
from .forkserver import ForkServer, ForkServerError
from .notebook import Notebook, NotebookError
from .pools import SparePool
from .protocol import CellRequest, FrameReader, Ping, ProtocolError, RunRequest, RunResult, SessionOpen
from .session import Spare, SpareError, log_fault
from .warmup import warm_up

SPARE_READY_TIMEOUT_S = 10.0
# Spares one request may try when each dies or hangs before its user code
# starts (killed, stopped); then the request is answered ``worker_lost``.
RUN_ATTEMPTS = 3
# Spares with matplotlib warm each worker keeps (runs that may draw).
PLOTTING_SPARES = 1
# How often to retry reaping killed runs while some are still dying.
REAP_POLL_MS = 5
# How long a retired run's leaf may stay busy (its pid namespace dying)
# before the zygote leaves it to the supervisor.
LEAF_REMOVE_GIVE_UP_S = 60.0
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
        self.pending: deque[RunRequest | SessionOpen | CellRequest] = deque()
        self.notebook: Notebook | None = None  # this worker's session, if it hosts one
        self.session_open: SessionOpen | None = None  # what opened it (its memory, for the verdict)
        self.dying: set[int] = set()  # killed run inits not yet reaped
        self.leaves: list[runcgroup.Leaf] = []  # cgroups of retired runs, to remove
        self.leaf_busy_since: dict[str, float] = {}  # leaf name -> first refused rmdir
        self.plain = SparePool("plain", ForkServer.start(cfg, control), cfg.spares, self.retire)
        self.plotting: SparePool | None = None
        if figures.available():
            forks = ForkServer.start(cfg, control, prepare=figures.prepare_plotting_fork_server)
            self.plotting = SparePool("plotting", forks, PLOTTING_SPARES, self.retire)
        self.pools = [pool for pool in (self.plain, self.plotting) if pool is not None]

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

    def next_request(self) -> RunRequest | SessionOpen | CellRequest:
        while not self.pending:
            self.on_control()
        return self.pending.popleft()

    # --- spares ------------------------------------------------------------

    def top_up(self) -> None:
        for pool in self.pools:
            pool.top_up()

    def retire(self, spare: Spare) -> None:
        """Kill a used or broken spare now; reap it later, off the hot path."""
        spare.kill()
        spare.close_all()
        if spare.init_pid is not None and not spare.reaped:
            self.dying.add(spare.init_pid)
        if spare.leaf is not None:
            self.leaves.append(spare.leaf)

    def reap_dying(self) -> None:
        for pid in list(self.dying):
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.dying.discard(pid)
        if self.leaves:
            self.remove_leaves()

    def remove_leaves(self) -> None:
        """rmdir the leaves of retired runs; one whose processes are still
        dying (EBUSY) is tried again at the next poll, for up to
        ``LEAF_REMOVE_GIVE_UP_S`` (then the supervisor removes it with the
        worker's cgroup)."""
        now = time.monotonic()
        left = []
        for leaf in self.leaves:
            if not leaf.remove():
                since = self.leaf_busy_since.setdefault(leaf.name, now)
                if now - since < LEAF_REMOVE_GIVE_UP_S:
                    left.append(leaf)
                    continue
                log_fault("spare", f"the run cgroup {leaf.name} stays busy; left for the supervisor")
            self.leaf_busy_since.pop(leaf.name, None)
        self.leaves = left

    def wait(self) -> None:
        """Handle control input, fork-server replies, spare set-up and faults.

        Ready spares and standby fork servers are watched too: one that dies
        while it waits is replaced now, not found dead by the next request.
        """
        poller = select.poll()
        poller.register(self.control.fileno(), select.POLLIN)
        fork_servers = {pool.forks.fileno(): pool for pool in self.pools}
        standbys = {pool.standby.fileno(): pool for pool in self.pools if pool.standby is not None}
        building = {fd: pool for pool in self.pools for fd in pool.building}
        ready = {spare.status.fd: (pool, spare) for pool in self.pools for spare in pool.ready}
        for fd in (*fork_servers, *standbys, *building, *ready):
            poller.register(fd, select.POLLIN)
        deadlines = [d for pool in self.pools if (d := pool.next_deadline()) is not None]
        timeout_ms = -1.0
        if deadlines:
            timeout_ms = max(0.0, (min(deadlines) - time.monotonic()) * 1000) + 1
        if self.dying or self.leaves:
            timeout_ms = REAP_POLL_MS if timeout_ms < 0 else min(timeout_ms, REAP_POLL_MS)
        for fd, _events in poller.poll(timeout_ms):
            if fd == self.control.fileno():
                self.on_control()
            elif fd in fork_servers:
                fork_servers[fd].on_fork_server()
            elif fd in standbys:
                standbys[fd].on_standby()
            elif fd in building and fd in building[fd].building:
                building[fd].on_spare_status(building[fd].building[fd])
            elif fd in ready:
                ready[fd][0].on_ready_status(ready[fd][1])
        now = time.monotonic()
        for pool in self.pools:
            pool.check_hangs(now)
        self.reap_dying()

    def pool_for(self, req: RunRequest) -> SparePool:
        """The plotting pool for a script that may draw, else the plain one."""
        if self.plotting is not None and figures.may_draw(req.script):
            return self.plotting
        return self.plain

    def take_spare(self, pool: SparePool) -> Spare:
        while (spare := pool.take()) is None:
            self.top_up()
            self.wait()
        return spare

    # --- runs ----------------------------------------------------------------

    def serve_run(self, req: RunRequest) -> RunResult:
        """Run ``req`` on a ready spare; another one if it fails before user code.

        A spare that dies or hangs before its runner says ``start`` ran no
        user code, so the request silently moves to the next spare. After
        ``RUN_ATTEMPTS`` such failures the answer is ``worker_lost`` (the
        supervisor retries on another worker).
        """
        if not self.pools:
            return session.lost_result(req, "this worker hosts a session and serves no run")
        pool = self.pool_for(req)
        why = ""
        for _attempt in range(RUN_ATTEMPTS):
            spare = self.take_spare(pool)
            try:
                self.cap_run(spare, req)
                return self.after_run(spare, req, session.run(spare, req, self.control.fileno(), self.on_control))
            except SpareError as exc:
                why = str(exc)
                log_fault("spare", f"{pool.name} spare lost before its run started, retrying: {why}")
            finally:
                self.retire(spare)
        return session.lost_result(req, f"the service lost {RUN_ATTEMPTS} sandboxes before the run started: {why}")

    def cap_run(self, spare: Spare, req: RunRequest | SessionOpen) -> None:
        """Write the request's memory into the spare's leaf (one read, one write).

        The leaf may hold the run's ``memory`` plus one ``/tmp`` of files
        (tmpfs pages are charged to the run that writes them), on top of
        what the idle spare holds already: the same allowance the worker
        cap makes per run. ``RLIMIT_AS`` stays the first line (a clean
        ``MemoryError`` in the one process that overdraws).
        """
        if spare.leaf is None:
            return
        try:
            spare.leaf.limit(req.memory_bytes + self.cfg.tmp_size_bytes)
        except runcgroup.RunCgroupError as exc:
            # No user code ran; an uncapped run must not start.
            raise SpareError(str(exc)) from None

    def after_run(self, spare: Spare, req: RunRequest | SessionOpen, result: RunResult) -> RunResult:
        """``memory_limit`` when the run's own leaf hit its limit and counted an
        OOM kill; ``worker_lost`` when the kill came from the worker's cap."""
        if spare.leaf is None:
            return result
        outcome, error, changed = verdict.after_oom(
            result.outcome, result.error, spare.leaf.oom_kills(), spare.leaf.hit_own_limit(), req.memory_bytes
        )
        if not changed:
            return result
        return dataclasses.replace(result, outcome=outcome, error=error, result=None, traceback=None, figures=[])

    def serve_notebook(self, req: SessionOpen | CellRequest) -> RunResult:
        """Open this worker's session on a spare, or run its next cell."""
        if isinstance(req, CellRequest):
            book = self.notebook
            if book is None or not book.alive:
                return notebook.ended_result(req.id, "this worker hosts no live session")
            result = book.cell(req, self.control.fileno(), self.on_control)
            if not book.alive and self.session_open is not None:
                # The session's leaf, capped once with its memory, judges an
                # OOM kill as for a run.
                result = self.after_run(book.spare, self.session_open, result)
            if not book.alive:
                self.retire(book.spare)
                self.notebook = None
            return result
        if not self.pools:
            return notebook.lost_result(req.id, "this worker hosted a session already; it opens no other")
        # A plain spare: it is ready as soon as the worker is (the plotting
        # pool may still be importing matplotlib), and an idle session does
        # not carry matplotlib's pages; a cell that draws imports it once.
        pool = self.plain
        why = ""
        for _attempt in range(RUN_ATTEMPTS):
            spare = self.take_spare(pool)
            book = Notebook(spare)
            try:
                # SECURITY: the whole session (every cell's processes) stays
                # within its memory, as a run does; no leaf cap, no session.
                self.cap_run(spare, req)
                result = book.open(req, self.control.fileno(), self.on_control)
            except SpareError as exc:
                why = str(exc)
                log_fault("spare", f"{pool.name} spare could not be capped for a session, retrying: {why}")
                self.retire(spare)
                continue
            except NotebookError as exc:
                why = str(exc)
                log_fault("spare", f"{pool.name} spare lost before its session started, retrying: {why}")
                self.retire(spare)
                continue
            if not book.alive:
                self.retire(spare)
                return result
            self.notebook = book  # the loop closes the pools once it answered
            self.session_open = req
            return result
        why = f"the service lost {RUN_ATTEMPTS} sandboxes before the session started: {why}"
        return notebook.lost_result(req.id, why)

    def close_pools(self) -> None:
        """A session's worker serves nothing else (the service stops it when
        the session ends): its other spares and its fork servers go, and
        their memory with them (two thirds of an idle worker's)."""
        for pool in self.pools:
            for spare in (*pool.ready, *pool.building.values()):
                self.retire(spare)
            pool.ready.clear()
            pool.building.clear()
            pool.built_at.clear()
            pool.asked.clear()
            pool.forks.kill()
            if pool.standby is not None:
                pool.standby.kill()
                pool.standby = None
        self.pools = []

    def loop(self) -> int:
        while True:
            self.top_up()
            if self.pending:
                request = self.pending.popleft()
                run = isinstance(request, RunRequest)
                result = self.serve_run(request) if run else self.serve_notebook(request)
                self.send(protocol.fit_result(result, self.cfg.max_frame_bytes))
                if self.notebook is not None and self.pools:
                    self.close_pools()  # after the answer: off the create's path
            else:
                self.wait()

    def start(self) -> None:
        """Create and verify the first plain spare synchronously (fail closed).

        The plotting pool fills in the background: its fork server imports
        matplotlib first, which must not delay the worker's start.
        """
        spare = Spare(self.plain.forks.request())
        try:
            spare.wait_ready(SPARE_READY_TIMEOUT_S)
        except SpareError:
            spare.discard()
            raise
        self.plain.add_ready(spare)

    def shutdown(self) -> None:
        if self.notebook is not None:
            self.notebook.spare.discard()
            self.notebook = None
        for pool in self.pools:
            self.leaves.extend(s.leaf for s in (*pool.ready, *pool.building.values()) if s.leaf is not None)
            pool.shutdown()
        for pid in self.dying:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.dying.clear()
        # Every run process is reaped: their leaves are empty (what stays
        # busy, the supervisor removes with the worker's cgroup).
        for leaf in self.leaves:
            leaf.remove()
        self.leaves.clear()


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
    # Before any thread exists, so that every run inherits it: the run's
    # `memory` then pays for memory, not for per-thread arena reservations.
    libc.limit_malloc_arenas(1)
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
