"""The fork server: a pristine copy of the warm zygote that forks spares.

Owns: a child of the zygote forked right after the imports, before the
zygote has read a single request, that creates every spare and passes the
zygote its pipe ends (SCM_RIGHTS). Must not: receive or hold any request,
script, output or result, or the control socket.

SECURITY: a fork copies the parent's whole heap, including freed memory
that is never zeroed. If the zygote itself forked spares, run N+1 could
scan its own memory for run N's script, output or result. The fork server
never sees such data, so there is nothing of another run to find.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys

from . import spare
from .config import ZygoteConfig

_MAX_ERROR = 2000


class ForkServerError(Exception):
    """The fork server could not make a spare, or is gone."""


class ForkServer:
    """Zygote-side handle: ``request()`` returns the pipe ends of a new spare."""

    def __init__(self, cfg: ZygoteConfig, control: socket.socket) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            # SECURITY: the fork server never holds the control socket.
            control.detach()
            os.close(cfg.control_fd)
            ours.close()
            code = 1
            try:
                _serve(cfg, theirs)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        self.pid = pid
        self._sock = ours
        self._half: spare.ZygoteEnds | None = None

    def fileno(self) -> int:
        """The socket to poll: readable when ``receive`` has something."""
        return self._sock.fileno()

    def ask(self) -> None:
        """Ask for one more spare; its ends arrive later through ``receive``."""
        try:
            self._sock.send(b"s")
        except OSError as exc:
            raise ForkServerError(f"fork server unreachable: {exc}") from None

    def receive(self) -> spare.ZygoteEnds | None:
        """Read one message; return a finished spare's ends, or None.

        Each spare takes two messages: its pipe ends (SCM_RIGHTS), then
        "the intermediate is reaped", after which the run init is our child
        (and only ours to reap).
        """
        try:
            msg, fds, _flags, _addr = socket.recv_fds(self._sock, _MAX_ERROR + 16, 5)
        except OSError as exc:
            raise ForkServerError(f"fork server unreachable: {exc}") from None
        if msg == b"s" and len(fds) == 5 and self._half is None:
            self._half = spare.ZygoteEnds(*fds)
            return None
        if msg == b"r" and not fds and self._half is not None:
            ends, self._half = self._half, None
            return ends
        for fd in fds:
            os.close(fd)
        if msg.startswith(b"e"):
            raise ForkServerError(msg[1:].decode(errors="replace"))
        raise ForkServerError("fork server exited")

    def request(self) -> spare.ZygoteEnds:
        """Ask for one spare and block until its ends arrive (start-up only)."""
        self.ask()
        while True:
            ends = self.receive()
            if ends is not None:
                return ends

    def close(self) -> None:
        """Stop the fork server (EOF on its socket) and reap it."""
        if self._half is not None:
            for fd in self._half.as_list():
                os.close(fd)
            self._half = None
        self._sock.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _serve(cfg: ZygoteConfig, sock: socket.socket) -> None:
    uid, gid = os.getuid(), os.getgid()
    while True:
        if not sock.recv(16):
            return
        try:
            pid, ends = spare.fork_spare(cfg, uid, gid, sock)
        except OSError as exc:
            sock.send(b"e" + f"fork of a spare failed: {exc}".encode()[:_MAX_ERROR])
            continue
        try:
            socket.send_fds(sock, [b"s"], ends.as_list())
        finally:
            for fd in ends.as_list():
                os.close(fd)
            # The intermediate exits right after forking the run init, which
            # is then re-parented to the zygote (a subreaper): tell it so.
            os.waitpid(pid, 0)
        sock.send(b"r")
