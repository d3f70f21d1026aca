"""Per-run cgroup leaves: names, caps, counters and clean-up, on a directory tree.

The kernel side (the leaf really capping a run) is tested against the real
service in tests/run_cgroup.rs (cgroup v1) and the VM driver (v2).
"""

import os

import pytest

from pyexec_worker import runcgroup, verdict
from pyexec_worker.runcgroup import Leaf, RunCgroupError


@pytest.fixture
def hierarchies(tmp_path, monkeypatch):
    """Two directories standing in for the worker cgroup's memory and pids fds."""
    memory, pids = tmp_path / "memory", tmp_path / "pids"
    memory.mkdir()
    pids.mkdir()
    fds = os.open(memory, os.O_RDONLY | os.O_DIRECTORY), os.open(pids, os.O_RDONLY | os.O_DIRECTORY)
    monkeypatch.setattr(runcgroup, "MEMORY_FD", fds[0])
    monkeypatch.setattr(runcgroup, "PIDS_FD", fds[1])
    yield memory, pids
    for fd in fds:
        os.close(fd)


def test_oom_counters_of_v1_and_v2():
    assert runcgroup.parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n") == 3
    assert runcgroup.parse_oom_kills("low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\noom_group_kill 0\n") == 2
    assert runcgroup.parse_oom_kills("oom_kill_disable 0\n") == 0
    assert runcgroup.parse_oom_kills("oom_kill x\n") == 0


def test_the_pid_line_names_the_leaf_and_nothing_else():
    leaf = Leaf("v2", "run.7.1")
    line = f"pid 42{runcgroup.status_field(leaf)}"
    assert line == "pid 42 cgroup v2 run.7.1"
    assert runcgroup.from_status(line.split()[2:]) == leaf
    assert runcgroup.status_field(None) == ""
    assert runcgroup.from_status([]) is None
    for junk in (["cgroup", "v3", "run.1.1"], ["cgroup", "v2", "../w1.1"], ["cgroup", "v2"]):
        assert runcgroup.from_status(junk) is None, junk


def test_a_leaf_that_cannot_be_set_up_leaves_nothing_behind(hierarchies):
    memory, pids = hierarchies
    # A plain directory has no pids.max: the set-up fails as on a kernel
    # without the pids controller, and both half-made leaves go.
    with pytest.raises(RunCgroupError, match="setting up run"):
        Leaf.make("v1", 40)
    assert list(memory.iterdir()) == [] and list(pids.iterdir()) == []


def test_an_existing_name_is_skipped_not_removed(hierarchies, monkeypatch):
    memory, pids = hierarchies
    taken = f"run.{os.getpid()}.1"
    (memory / taken).mkdir()
    monkeypatch.setattr(runcgroup, "_counter", iter(range(1, 100)))
    monkeypatch.setattr(Leaf, "_setup", lambda self, pids_max: None)
    leaf = Leaf.make("v1", 40)
    assert leaf.name == f"run.{os.getpid()}.2"
    assert (memory / taken).is_dir(), "another spare's leaf stays"
    assert not (pids / taken).exists(), "the half-made twin went"
    assert leaf.remove() and not (memory / leaf.name).exists() and not (pids / leaf.name).exists()


def test_v2_limit_is_usage_plus_the_run_memory(hierarchies):
    memory, _pids = hierarchies
    leaf_dir = memory / "run.1.1"
    leaf_dir.mkdir()
    (leaf_dir / "memory.current").write_text("4096000\n")
    (leaf_dir / "memory.max").write_text("max\n")
    Leaf("v2", "run.1.1").limit(64 << 20)
    assert (leaf_dir / "memory.max").read_text() == str(4096000 + (64 << 20))


def test_v1_limit_without_swap_accounting(hierarchies):
    memory, _pids = hierarchies
    leaf_dir = memory / "run.1.1"
    leaf_dir.mkdir()
    (leaf_dir / "memory.usage_in_bytes").write_text("1000\n")
    (leaf_dir / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    Leaf("v1", "run.1.1").limit(1 << 20)
    assert (leaf_dir / "memory.limit_in_bytes").read_text() == str(1000 + (1 << 20))
    (leaf_dir / "memory.usage_in_bytes").write_text("garbage\n")
    with pytest.raises(RunCgroupError, match=r"capping run\.1\.1"):
        Leaf("v1", "run.1.1").limit(1 << 20)


def test_oom_kills_and_a_busy_leaf(hierarchies):
    memory, pids = hierarchies
    for parent in (memory, pids):
        (parent / "run.1.1").mkdir()
    (memory / "run.1.1" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 4\n")
    leaf = Leaf("v1", "run.1.1")
    assert leaf.oom_kills() == 4
    # rmdir refuses a non-empty directory as cgroupfs refuses a populated leaf.
    assert not leaf.remove()
    (memory / "run.1.1" / "memory.oom_control").unlink()
    assert leaf.oom_kills() == 0, "an unreadable counter counts nothing"
    assert leaf.remove() and list(memory.iterdir()) == [] and list(pids.iterdir()) == []


@pytest.mark.parametrize(
    ("outcome", "kills", "want"),
    [
        ("ok", 1, "memory_limit"),
        ("killed", 2, "memory_limit"),
        ("worker_lost", 1, "memory_limit"),
        ("ok", 0, "ok"),
        ("timeout", 3, "timeout"),
        ("runtime_error", 1, "runtime_error"),
        ("memory_limit", 1, "memory_limit"),
    ],
)
def test_an_oom_kill_in_the_leaf_is_the_run_going_past_its_memory(outcome, kills, want):
    got, error, changed = verdict.after_oom(outcome, "before", kills, True, 64 << 20)
    assert got == want
    assert changed == (want != outcome)
    if changed:
        assert error == f"the run's processes together exceeded its memory limit of 64 MiB; {kills} of them were killed"
    else:
        assert error == "before"


@pytest.mark.parametrize("outcome", ["ok", "killed", "worker_lost"])
def test_an_oom_kill_the_leaf_limit_does_not_explain_is_the_workers_fault(outcome):
    # The victim was in the run's leaf, but the charge ran into the worker's
    # cap above it: the run kept within its own memory.
    got, error, changed = verdict.after_oom(outcome, "before", 2, False, 64 << 20)
    assert (got, changed) == ("worker_lost", outcome != "worker_lost" or error != "before")
    assert error.startswith("the worker ran out of memory outside this run's own limit")


def test_own_limit_hit_is_the_leafs_peak_at_its_limit_on_v1_and_its_oom_events_on_v2(hierarchies):
    memory, _pids = hierarchies
    leaf_dir = memory / "run.1.1"
    leaf_dir.mkdir()
    (leaf_dir / "memory.limit_in_bytes").write_text("1000\n")
    (leaf_dir / "memory.max_usage_in_bytes").write_text("999\n")
    v1 = Leaf("v1", "run.1.1")
    assert not v1.hit_own_limit(), "below its limit: a kill here came from the worker's cap"
    (leaf_dir / "memory.memsw.limit_in_bytes").write_text("1000\n")
    (leaf_dir / "memory.memsw.max_usage_in_bytes").write_text("1000\n")
    assert v1.hit_own_limit(), "memory+swap reached the limit"
    (leaf_dir / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 0\noom_kill 1\n")
    assert not Leaf("v2", "run.1.1").hit_own_limit()
    (leaf_dir / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    assert Leaf("v2", "run.1.1").hit_own_limit()
