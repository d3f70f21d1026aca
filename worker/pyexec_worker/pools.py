"""Spare pools: the spares of one kind, built by one fork server.

Owns: for one kind of spare, the fork server that builds them, the spares
being set up and the ready ones, keeping ``target`` of them on the way, and
counting consecutive set-up failures. There are two kinds:

- ``plain``: forks of a copy of the zygote (numpy and pandas warm). Every
  run that does not draw gets one of these.
- ``plotting``: forks of a copy that imported matplotlib first. Forking and
  tearing down a process costs CPU per mapped page, and matplotlib adds
  ~30 MiB of heap to every fork: kept out of the plain spares, a run that
  draws nothing does not pay for it (measured: ~20% fewer trivial runs per
  second when every spare carried matplotlib).

Must not: run anything, or decide which kind a request needs
(``figures.may_draw`` does).
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable

from .forkserver import ForkServer
from .session import Spare, SpareError

# Consecutive spares that may fail set-up before the zygote gives up.
MAX_SPARE_FAILURES = 3


class SparePool:
    """Spares of one kind: ready, being set up, or asked of the fork server."""

    def __init__(self, name: str, forks: ForkServer, target: int, retire: Callable[[Spare], None]) -> None:
        self.name = name
        self.forks = forks
        self.target = target
        self.retire = retire
        self.ready: deque[Spare] = deque()
        self.building: dict[int, Spare] = {}  # status fd -> spare being set up
        self.asked = 0  # spares asked of the fork server, ends not yet here
        self.failures = 0

    def top_up(self) -> None:
        """Keep ``target`` spares ready or on their way.

        The fork server builds spares in its own process while the zygote
        serves a run, so a request that follows another one at once still
        finds an isolated runner waiting instead of paying for the forks.
        """
        while len(self.ready) + len(self.building) + self.asked < self.target:
            self.forks.ask()
            self.asked += 1

    def on_fork_server(self) -> None:
        """The fork server sent the ends of a new spare: start watching it."""
        spare = Spare(self.forks.receive())
        self.asked -= 1
        self.building[spare.status.fd] = spare

    def on_spare_status(self, spare: Spare) -> None:
        """A spare being set up wrote a status line; raise after too many failures."""
        try:
            spare.poll_setup()
        except SpareError as exc:
            del self.building[spare.status.fd]
            self.retire(spare)
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
            del self.building[spare.status.fd]
            self.ready.append(spare)
            self.failures = 0

    def add_ready(self, spare: Spare) -> None:
        """A spare verified outside the pool (the first one, at start-up)."""
        self.ready.append(spare)

    def take(self) -> Spare | None:
        """The oldest ready spare, if any."""
        return self.ready.popleft() if self.ready else None

    def shutdown(self) -> None:
        """Kill every spare of the pool and stop its fork server."""
        for spare in (*self.ready, *self.building.values()):
            spare.discard()
        self.ready.clear()
        self.building.clear()
        self.forks.close()
