"""Spare pools: the spares of one kind, built by one fork server.

Owns: for one kind of spare, the fork server that builds them (and its
standby), the spares being set up and the ready ones, keeping ``target`` of
them on the way, replacing what dies or hangs below the zygote, and counting
consecutive set-up errors. There are two kinds:

- ``plain``: forks of a copy of the zygote (numpy and pandas warm). Every
  run that does not draw gets one of these.
- ``plotting``: forks of a copy that imported matplotlib first. Forking and
  tearing down a process costs CPU per mapped page, and matplotlib adds
  ~30 MiB of heap to every fork: kept out of the plain spares, a run that
  draws nothing does not pay for it (measured: ~20% fewer trivial runs per
  second when every spare carried matplotlib).

Faults absorbed here (each logged as ``pyexec zygote: fault COMPONENT: ...``,
which the supervisor counts in ``pyexec_worker_faults_total``):

- the fork server dies, or answers nothing for ``FORK_SERVER_TIMEOUT_S``
  once it has said it serves (its ``prepare`` may take long on a busy host):
  it is killed and its standby (a pristine copy it made of itself, which
  never saw a request) takes over and is asked for a new standby;
- a standby dies: the fork server is asked for another;
- a spare dies or hangs while it is set up (``SPARE_SETUP_TIMEOUT_S``) or
  while it waits ready: it is retired and another one is forked.

Must not: run anything, or decide which kind a request needs
(``figures.may_draw`` does).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable

from .forkserver import ForkServer, ForkServerError
from .session import Spare, SpareError, log_fault

# Consecutive spares that may report a set-up *error* before the zygote gives
# up (the sandbox cannot be built; a spare killed from outside does not count).
MAX_SPARE_FAILURES = 3
# A fork server that has not answered an ask for this long is hung.
FORK_SERVER_TIMEOUT_S = 3.0
# A spare not ready this long after its ends arrived is hung.
SPARE_SETUP_TIMEOUT_S = 10.0


class SparePool:
    """Spares of one kind: ready, being set up, or asked of the fork server."""

    def __init__(self, name: str, forks: ForkServer, target: int, retire: Callable[[Spare], None]) -> None:
        self.name = name
        self.forks = forks
        self.standby: ForkServer | None = None
        self.standby_asked = False
        self.target = target
        self.retire = retire
        self.ready: deque[Spare] = deque()
        self.building: dict[int, Spare] = {}  # status fd -> spare being set up
        self.built_at: dict[int, float] = {}  # status fd -> when its ends arrived
        self.asked: deque[float] = deque()  # when each unanswered spare ask was sent
        self.failures = 0

    # --- fork servers ----------------------------------------------------

    def ensure_standby(self) -> None:
        if self.standby is None and not self.standby_asked:
            self.forks.ask_standby()
            self.standby_asked = True

    def replace_fork_server(self, why: str) -> None:
        """The fork server is dead or hung: switch to the standby.

        Raises ``ForkServerError`` when there is none yet (two faults within
        the few milliseconds a standby takes to make): the worker is lost.
        """
        log_fault("fork_server", f"{self.name} fork server pid {self.forks.pid}: {why}")
        self.forks.kill()
        self.asked.clear()
        self.standby_asked = False
        if self.standby is None:
            raise ForkServerError(f"the {self.name} fork server failed ({why}) and no standby was ready")
        self.forks, self.standby = self.standby, None
        self.ensure_standby()

    def on_standby(self) -> None:
        """The standby's socket is readable: it can only have died."""
        if self.standby is not None:
            log_fault("fork_server", f"{self.name} standby fork server pid {self.standby.pid} exited")
            self.standby.kill()
            self.standby = None
        self.ensure_standby()

    def on_fork_server(self) -> None:
        """The fork server sent something: a spare's ends, a standby, or EOF."""
        try:
            got = self.forks.receive()
        except ForkServerError as exc:
            if str(exc) == "fork server exited":
                self.replace_fork_server("it exited")
                return
            raise
        if got is None:
            # It serves now: what it was asked meanwhile is timed from here.
            now = time.monotonic()
            self.asked = deque(now for _ in self.asked)
            return
        if isinstance(got, ForkServer):
            self.standby_asked = False
            if self.standby is not None:
                got.kill()  # a surplus copy (cannot happen: one ask at a time)
            else:
                self.standby = got
            return
        if self.asked:
            self.asked.popleft()
        spare = Spare(got)
        self.building[spare.status.fd] = spare
        self.built_at[spare.status.fd] = time.monotonic()

    # --- spares ------------------------------------------------------------

    def top_up(self) -> None:
        """Keep ``target`` spares ready or on their way.

        The fork server builds spares in its own process while the zygote
        serves a run, so a request that follows another one at once still
        finds an isolated runner waiting instead of paying for the forks.
        """
        self.ensure_standby()
        while len(self.ready) + len(self.building) + len(self.asked) < self.target:
            self.forks.ask()
            self.asked.append(time.monotonic())

    def on_spare_status(self, spare: Spare) -> None:
        """A spare being set up wrote a status line; raise after too many errors."""
        try:
            spare.poll_setup()
        except SpareError as exc:
            self._drop_building(spare)
            self.retire(spare)
            if not spare.reported_error:
                log_fault("spare", f"{self.name} spare died during set-up: {exc}")
                return
            self.failures += 1
            print(
                f"pyexec zygote: {self.name} spare failed ({self.failures} in a row): {exc}",
                file=sys.stderr,
                flush=True,
            )
            if self.failures >= MAX_SPARE_FAILURES:
                raise
            return
        if spare.is_ready:
            self._drop_building(spare)
            self.ready.append(spare)
            self.failures = 0

    def on_ready_status(self, spare: Spare) -> None:
        """A ready spare wrote to (or closed) its status pipe: it died waiting."""
        alive = spare.poll_idle()
        if not alive and spare in self.ready:
            self.ready.remove(spare)
            self.retire(spare)
            log_fault("spare", f"{self.name} ready spare (init pid {spare.init_pid}) died while waiting")

    def check_hangs(self, now: float) -> None:
        """Replace a fork server or a set-up spare that stopped answering."""
        if self.forks.serving and self.asked and now - self.asked[0] > FORK_SERVER_TIMEOUT_S:
            self.replace_fork_server(f"no answer for {FORK_SERVER_TIMEOUT_S:g} s")
        for fd, since in list(self.built_at.items()):
            if now - since > SPARE_SETUP_TIMEOUT_S and fd in self.building:
                spare = self.building[fd]
                self._drop_building(spare)
                self.retire(spare)
                log_fault("spare", f"{self.name} spare not ready after {SPARE_SETUP_TIMEOUT_S:g} s")

    def next_deadline(self) -> float | None:
        """When ``check_hangs`` next has something to check (monotonic)."""
        times = [t + SPARE_SETUP_TIMEOUT_S for t in self.built_at.values()]
        if self.asked and self.forks.serving:
            times.append(self.asked[0] + FORK_SERVER_TIMEOUT_S)
        return min(times) if times else None

    def _drop_building(self, spare: Spare) -> None:
        self.building.pop(spare.status.fd, None)
        self.built_at.pop(spare.status.fd, None)

    def add_ready(self, spare: Spare) -> None:
        """A spare verified outside the pool (the first one, at start-up)."""
        self.ready.append(spare)

    def take(self) -> Spare | None:
        """The oldest ready spare, if any."""
        return self.ready.popleft() if self.ready else None

    def shutdown(self) -> None:
        """Kill every spare of the pool and stop its fork servers."""
        for spare in (*self.ready, *self.building.values()):
            spare.discard()
        self.ready.clear()
        self.building.clear()
        self.built_at.clear()
        self.forks.close()
        if self.standby is not None:
            self.standby.close()
