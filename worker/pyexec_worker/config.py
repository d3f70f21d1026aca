"""Zygote command line (rendered by the supervisor's nsjail argv builder).

Owns: parsing and validating the flags into an immutable ``ZygoteConfig``.
Must not: read environment variables (the jail's environment is fixed and
carries no configuration).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class ZygoteConfig:
    """Per-worker limits that hold for every run of this zygote."""

    control_fd: int
    max_frame_bytes: int
    tmp_size_bytes: int
    max_processes: int
    max_open_files: int
    max_file_size_bytes: int
    # Spares kept ready or in the making. Two let back-to-back requests find
    # a runner waiting while the fork server builds the next; each costs
    # ~5 MiB (its pages are shared with the zygote until written), ~9 MiB
    # once it has walked pandas while idle (``idlewalk``).
    spares: int = 2
    # The run's seccomp filter (packed struct sock_filter), compiled by the
    # service from src/worker/seccomp_policy.rs; empty: none for this machine.
    seccomp_bpf: bytes = b""
    # "v1" or "v2": each spare gets a cgroup leaf under the worker's cgroup
    # (fds 4 and 5, see ``runcgroup``); "": none (the worker cap only).
    run_cgroup: str = ""
    # The process cap of each run's leaf.
    run_pids: int = 0


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def parse_args(argv: list[str]) -> ZygoteConfig:
    """Parse ``argv`` (without the program name); exits 64 on a bad flag."""
    parser = argparse.ArgumentParser(prog="zygote.py", allow_abbrev=False)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--max-frame-bytes", type=_positive, required=True)
    parser.add_argument("--tmp-size-bytes", type=_positive, required=True)
    parser.add_argument("--max-processes", type=_positive, required=True)
    parser.add_argument("--max-open-files", type=_positive, required=True)
    parser.add_argument("--max-file-size-bytes", type=_positive, required=True)
    parser.add_argument("--spares", type=_positive, default=2)
    parser.add_argument("--seccomp-bpf", type=bytes.fromhex, default=b"")
    parser.add_argument("--run-cgroup", choices=("v1", "v2"), default="")
    parser.add_argument("--run-pids", type=_positive, default=0)
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        raise SystemExit(64 if exc.code else 0) from None
    return ZygoteConfig(**vars(ns))
