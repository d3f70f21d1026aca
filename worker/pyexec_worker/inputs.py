"""The request's input files, written into the run's /tmp by the runner.

Owns: re-checking each name (the supervisor validated it already) and
creating the file with O_EXCL|O_NOFOLLOW, mode 0644, before the script is
compiled. Must not: write anywhere but the directory given (the run's own
tmpfs /tmp, its working directory), or follow a symlink.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

NAME_MAX = 255


class InputFileError(Exception):
    """A file could not be placed (a bad name, or /tmp refused it)."""


def check_name(name: str) -> None:
    """Raise ``InputFileError`` unless ``name`` is one plain path component."""
    if not name or "/" in name or "\0" in name or name in (".", "..") or len(name.encode()) > NAME_MAX:
        raise InputFileError(f"invalid input file name {name!r}")


# The run's working directory: its private tmpfs, where its files go.
RUN_DIR = "/tmp"


def place(files: Iterable[tuple[str, bytes]], directory: str = RUN_DIR) -> None:
    """Create every file in ``directory``; the first failure raises."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name, data in files:
            check_name(name)
            # SECURITY: O_EXCL|O_NOFOLLOW and a dir fd: a name can only
            # create a new regular file directly in the run's /tmp.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
            except OSError as exc:
                raise InputFileError(f"cannot create input file {name!r} in {directory}: {exc.strerror}") from None
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            except OSError as exc:
                raise InputFileError(f"cannot write input file {name!r} in {directory}: {exc.strerror}") from None
            finally:
                os.close(fd)
    finally:
        os.close(dir_fd)
