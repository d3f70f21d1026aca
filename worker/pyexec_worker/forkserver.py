"""The fork server: a pristine copy of the warm zygote that forks spares.

Owns: a child of the zygote forked right after the imports, before the
zygote has read a single request, that creates every spare and passes the
zygote its pipe ends (SCM_RIGHTS); and, asked for it, a copy of itself (a
standby the zygote switches to when this one dies or hangs: the zygote
cannot fork a new pristine server once it has seen requests). Must not:
receive or hold any request, script, output or result, or the control
socket.

SECURITY: a fork copies the parent's whole heap, including freed memory
that is never zeroed. If the zygote itself forked spares, run N+1 could
scan its own memory for run N's script, output or result. The fork server
never sees such data, so there is nothing of another run to find.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable

from . import isolation, libc, runcgroup, seccomp, spare
from .config import ZygoteConfig

_MAX_ERROR = 2000


class ForkServerError(Exception):
    """The fork server could not make a spare, or is gone."""


class ForkServer:
    """Zygote-side handle: ``request()`` returns the pipe ends of a new spare."""

    def __init__(self, pid: int, sock: socket.socket, *, serving: bool) -> None:
        self.pid = pid
        self._sock = sock
        # Whether it has said it serves (a new server first runs ``prepare``,
        # e.g. imports matplotlib, which may take seconds on a busy host:
        # its asks are not timed until then).
        self.serving = serving

    @classmethod
    def start(cls, cfg: ZygoteConfig, control: socket.socket, prepare: Callable[[], None] | None = None) -> ForkServer:
        """Fork the server; in it, ``prepare`` runs first (no request seen yet)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            # SECURITY: the fork server never holds the control socket, nor
            # any other fd of the zygote. (Another fork server's socket
            # kept open here would also hide that server's EOF at shutdown.)
            control.detach()
            ours.detach()
            # The worker cgroup's directory fds stay: this server makes each
            # spare's leaf (runcgroup); every spare closes them first thing.
            spare.close_fds_except({0, 1, 2, theirs.fileno(), *_cgroup_fds(cfg)})
            code = 1
            try:
                if prepare is not None:
                    prepare()
                _serve(cfg, theirs)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        return cls(pid, ours, serving=False)

    def fileno(self) -> int:
        """The socket to poll: readable when ``receive`` has something."""
        return self._sock.fileno()

    def ask(self) -> None:
        """Ask for one more spare; its ends arrive later through ``receive``."""
        try:
            self._sock.send(b"s")
        except OSError as exc:
            raise ForkServerError(f"fork server unreachable: {exc}") from None

    def ask_standby(self) -> None:
        """Ask for a copy of this server; it arrives later through ``receive``."""
        try:
            self._sock.send(b"f")
        except OSError as exc:
            raise ForkServerError(f"fork server unreachable: {exc}") from None

    def receive(self) -> spare.ZygoteEnds | ForkServer | None:
        """Read the next answer: a spare's pipe ends, a standby server, or
        None for the server's first message (it now serves).

        Either is already our child (CLONE_PARENT), ours alone to reap.
        """
        try:
            msg, fds, _flags, _addr = socket.recv_fds(self._sock, _MAX_ERROR + 16, 5)
        except OSError as exc:
            raise ForkServerError(f"fork server unreachable: {exc}") from None
        if msg == b"s" and len(fds) == 5:
            return spare.ZygoteEnds(*fds)
        if msg == b"r" and not fds:
            self.serving = True
            return None
        if msg.startswith(b"f") and len(fds) == 1 and msg[1:].isdigit():
            return ForkServer(int(msg[1:]), socket.socket(fileno=fds[0]), serving=True)
        for fd in fds:
            os.close(fd)
        if msg.startswith(b"e"):
            raise ForkServerError(msg[1:].decode(errors="replace"))
        raise ForkServerError("fork server exited")

    def request(self) -> spare.ZygoteEnds:
        """Ask for one spare and block until its ends arrive (start-up only)."""
        self.ask()
        ends = self.receive()
        while ends is None:
            ends = self.receive()
        if not isinstance(ends, spare.ZygoteEnds):
            raise ForkServerError("fork server sent a standby where a spare was asked for")
        return ends

    def close(self) -> None:
        """Stop the fork server (EOF on its socket) and reap it."""
        self._sock.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    def kill(self) -> None:
        """Kill a dead or hung fork server at once and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.close()


def _serve(cfg: ZygoteConfig, sock: socket.socket) -> None:
    uid, gid = os.getuid(), os.getgid()
    # Put the run's seccomp filter in C memory once, here, so every spare
    # inherits it ready to install. Without one the first spare's install
    # raises and reports it.
    with contextlib.suppress(seccomp.SeccompError):
        seccomp.prepare(cfg.seccomp_bpf)
    # The native spawn, loaded once. Without it every ask is answered with
    # the error (the zygote reports it and the worker does not start).
    spawner: libc.RunSpawner | OSError
    try:
        spawner = isolation.run_spawner(sys.prefix)
    except OSError as exc:
        spawner = exc
    sock.send(b"r")  # prepared: from now on the zygote times our answers
    while True:
        command = sock.recv(16)
        if not command:
            return
        if command == b"f":
            sock = _fork_standby(cfg, sock)
            continue
        try:
            if isinstance(spawner, OSError):
                raise spawner
            _pid, ends = spare.fork_spare(cfg, spawner, uid, gid, sock)
        except OSError as exc:
            sock.send(b"e" + f"fork of a spare failed: {exc}".encode()[:_MAX_ERROR])
            continue
        try:
            socket.send_fds(sock, [b"s"], ends.as_list())
        finally:
            for fd in ends.as_list():
                os.close(fd)


def _cgroup_fds(cfg: ZygoteConfig) -> set[int]:
    return {runcgroup.MEMORY_FD, runcgroup.PIDS_FD} if cfg.run_cgroup else set()


def _fork_standby(cfg: ZygoteConfig, sock: socket.socket) -> socket.socket:
    """Clone a copy of this server (the zygote's child); return the socket to serve.

    In the parent that is ``sock`` again, in the copy a fresh socket whose
    other end went to the zygote. Both are pristine: neither ever held a
    request.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = libc.clone(libc.CLONE_PARENT)
    except OSError as exc:
        ours.close()
        theirs.close()
        sock.send(b"e" + f"fork of a standby fork server failed: {exc}".encode()[:_MAX_ERROR])
        return sock
    if pid == 0:
        # SECURITY: the copy keeps only its own socket (and 0-2), as the
        # first server did.
        sock.detach()
        theirs.detach()
        spare.close_fds_except({0, 1, 2, ours.fileno(), *_cgroup_fds(cfg)})
        return ours
    ours.close()
    try:
        socket.send_fds(sock, [b"f%d" % pid], [theirs.fileno()])
    finally:
        theirs.close()
    return sock
