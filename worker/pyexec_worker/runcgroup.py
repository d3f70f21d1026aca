"""Per-run cgroup leaves: each run's memory and process count, all of its processes together.

Owns: one leaf per spare under the worker's cgroup, made by the fork server
before it clones the spare (off the request path), joined by the spare's
init as its first act, capped by the zygote with the request's ``memory``
when the run starts, read for OOM kills when it ends, and removed once the
run's processes are gone. Must not: be reachable from user code.

The supervisor made the worker's cgroup (``w<pid>.<id>``: the worker cap,
root-owned) and passed its directory as fd ``MEMORY_FD`` (cgroup v1: the
memory hierarchy; v2: the unified one) and ``PIDS_FD`` (v1: the pids
hierarchy; v2: the same directory). The directory belongs to the jail uid,
so a leaf made here is the jail's, its ``memory.max``/``pids.max`` included
(cgroups(7), "Cgroups v2 delegation"); the worker cap above it is not.

Kernel facts relied on: a leaf's files belong to the uid that made it
(cgroup_kn_set_ugid); writing ``0`` to ``cgroup.procs`` moves the writer's
own thread group; v2 ``memory.events`` and v1 ``memory.oom_control`` count
``oom_kill`` for the cgroup a victim was in; a v1 or v2 memory limit set
below the leaf's usage makes the kernel reclaim or OOM-kill, so the limit is
written as usage now plus what the run may add. Not used: clone3 with
CLONE_INTO_CGROUP (v2 only, and Python has no wrapper): the init's own
one write to ``cgroup.procs`` happens while the spare is made, never while
a request waits.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
from dataclasses import dataclass

from . import libc

MEMORY_FD = 4
PIDS_FD = 5

# How many names to try when a leaf of that name exists (a reused pid).
_NAME_TRIES = 16
_counter = itertools.count(1)


class RunCgroupError(OSError):
    """A leaf could not be made, joined, capped or read."""


def _fail(what: str, exc: OSError) -> RunCgroupError:
    return RunCgroupError(exc.errno or errno.EIO, f"run cgroup: {what}: {exc.strerror or exc}")


@dataclass(frozen=True)
class Leaf:
    """One run's cgroup: ``name`` under the worker's cgroup, in ``version`` ("v1" or "v2")."""

    version: str
    name: str

    @property
    def _v2(self) -> bool:
        return self.version == "v2"

    def _dirfds(self) -> tuple[int, ...]:
        return (MEMORY_FD,) if self._v2 else (MEMORY_FD, PIDS_FD)

    def _write(self, dirfd: int, file: str, text: str) -> None:
        fd = os.open(f"{self.name}/{file}", os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC, dir_fd=dirfd)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def _read(self, dirfd: int, file: str) -> str:
        fd = os.open(f"{self.name}/{file}", os.O_RDONLY | os.O_CLOEXEC, dir_fd=dirfd)
        try:
            return os.read(fd, 4096).decode(errors="replace")
        finally:
            os.close(fd)

    # --- fork server -----------------------------------------------------

    @classmethod
    def make(cls, version: str, pids_max: int) -> Leaf:
        """Create a fresh leaf with the run's process cap (in the fork server)."""
        for _ in range(_NAME_TRIES):
            leaf = cls(version, f"run.{os.getpid()}.{next(_counter)}")
            made: list[int] = []
            try:
                for dirfd in leaf._dirfds():
                    os.mkdir(leaf.name, 0o755, dir_fd=dirfd)
                    made.append(dirfd)
            except OSError as exc:
                # Only what this call made goes: an existing leaf of that
                # name is another spare's.
                for dirfd in made:
                    with contextlib.suppress(OSError):
                        os.rmdir(leaf.name, dir_fd=dirfd)
                if isinstance(exc, FileExistsError):
                    continue
                raise _fail(f"mkdir {leaf.name}", exc) from None
            try:
                leaf._setup(pids_max)
            except OSError as exc:
                leaf.remove()
                raise _fail(f"setting up {leaf.name}", exc) from None
            return leaf
        raise RunCgroupError(errno.EEXIST, f"run cgroup: no free leaf name after {_NAME_TRIES} tries")

    def _setup(self, pids_max: int) -> None:
        # SECURITY: the run's own process cap, below the worker's: a fork
        # bomb that gets past RLIMIT_NPROC (threads share its count) stops
        # here without taking the pids of the next run or the zygote.
        self._write(PIDS_FD, "pids.max", str(pids_max))
        if self._v2:
            # SECURITY: no swap, so the memory cap written at request time
            # is a real cap.
            self._write(MEMORY_FD, "memory.swap.max", "0")

    # --- the spare's init --------------------------------------------------

    def join(self) -> None:
        """Move the calling process (the run init, before it forks) into the leaf."""
        try:
            for dirfd in self._dirfds():
                self._write(dirfd, "cgroup.procs", "0")
        except OSError as exc:
            raise _fail(f"joining {self.name}", exc) from None
        # SECURITY: a cgroup namespace rooted at the leaf (the init holds
        # CAP_SYS_ADMIN in its fresh user namespace): with nsdelegate, a
        # process of the run could not move out of its leaf even with write
        # access to a cgroup.procs, and /proc/self/cgroup shows only "/".
        libc.unshare(libc.CLONE_NEWCGROUP)

    # --- the zygote ----------------------------------------------------------

    def limit(self, memory_bytes: int) -> None:
        """Cap the run: what the leaf holds now (the idle spare) plus ``memory_bytes``."""
        try:
            if self._v2:
                current = int(self._read(MEMORY_FD, "memory.current"))
                self._write(MEMORY_FD, "memory.max", str(current + memory_bytes))
            else:
                current = int(self._read(MEMORY_FD, "memory.usage_in_bytes"))
                limit = str(current + memory_bytes)
                self._write(MEMORY_FD, "memory.limit_in_bytes", limit)
                with contextlib.suppress(FileNotFoundError):
                    # No swap either (only with swap accounting compiled in).
                    self._write(MEMORY_FD, "memory.memsw.limit_in_bytes", limit)
        except (OSError, ValueError) as exc:
            err = exc if isinstance(exc, OSError) else OSError(errno.EIO, str(exc))
            raise _fail(f"capping {self.name}", err) from None

    def oom_kills(self) -> int:
        """How many processes the kernel OOM-killed in this leaf (0 if unreadable)."""
        file = "memory.events" if self._v2 else "memory.oom_control"
        try:
            text = self._read(MEMORY_FD, file)
        except OSError:
            return 0
        return parse_oom_kills(text)

    def hit_own_limit(self) -> bool:
        """Whether a charge ran into this leaf's *own* memory limit.

        A kill in the leaf that the leaf's limit does not explain came from
        the worker's cap above. v2: the leaf's ``memory.events`` ``oom``
        (counted at the cgroup whose limit was hit). v1: the kernel here
        keeps no ``failcnt`` (it stays 0), but the peak tells: usage (or
        memory+swap usage) reached the leaf's limit. The leaf is fresh per
        spare and unlimited until the run's cap is written, so its peak
        speaks of this run alone.
        """
        try:
            if self._v2:
                return parse_counter(self._read(MEMORY_FD, "memory.events"), "oom") > 0
            for peak, limit in (
                ("memory.max_usage_in_bytes", "memory.limit_in_bytes"),
                ("memory.memsw.max_usage_in_bytes", "memory.memsw.limit_in_bytes"),
            ):
                with contextlib.suppress(FileNotFoundError):
                    if int(self._read(MEMORY_FD, peak)) >= int(self._read(MEMORY_FD, limit)):
                        return True
        except (OSError, ValueError):
            return False
        return False

    def remove(self) -> bool:
        """rmdir the leaf in each hierarchy; False while it still holds processes (EBUSY)."""
        gone = True
        for dirfd in self._dirfds():
            try:
                os.rmdir(self.name, dir_fd=dirfd)
            except FileNotFoundError:
                pass
            except OSError:
                gone = False
        return gone


def parse_oom_kills(text: str) -> int:
    """The ``oom_kill N`` counter of a v2 ``memory.events`` or v1 ``memory.oom_control``."""
    return parse_counter(text, "oom_kill")


def parse_counter(text: str, name: str) -> int:
    """The ``name N`` line of a flat-keyed cgroup file (0 when absent)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return 0


def status_field(leaf: Leaf | None) -> str:
    """The leaf as the fork server appends it to the spare's ``pid`` line."""
    return "" if leaf is None else f" cgroup {leaf.version} {leaf.name}"


def from_status(fields: list[str]) -> Leaf | None:
    """The leaf named by the rest of a ``pid`` line (``cgroup VERSION NAME``)."""
    if len(fields) == 3 and fields[0] == "cgroup" and fields[1] in ("v1", "v2") and fields[2].startswith("run."):
        return Leaf(fields[1], fields[2])
    return None
