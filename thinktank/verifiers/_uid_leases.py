"""Sandbox uids that no other run in flight has, in this process or any other.

A uid is leased by holding an exclusive `flock` on its own file in a lease directory that only this user can
write. flock locks belong to the open file, so two leases of one uid conflict even inside one process, and the
kernel drops a lease when its holder dies: a SIGKILLed thinktank leaves nothing to clean up. Leases are probed
from the lowest uid up, so there are never more lease files than runs were ever in flight at once. (Deriving the
range from the pid, as before, gave two processes whose pids agree modulo 65536 the same uids.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from thinktank.exceptions import VerificationError

__all__ = ["DEFAULT_SPAN", "UidLeases"]

DEFAULT_SPAN = 4096  # uids per range: more runs in flight at once than any host here can hold


class UidLeases:
    """Leases uids from ``[base, base + span)``."""

    def __init__(self, base: int, span: int = DEFAULT_SPAN, directory: Path | None = None) -> None:
        self.base, self.span = base, span
        self.directory = directory or Path(tempfile.gettempdir()) / f"thinktank-sandbox-uids-{os.geteuid()}"

    def _checked_directory(self) -> Path:
        """The lease directory, refused if someone else could plant or remove lease files in it."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(self.directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise VerificationError(
                f"the sandbox's uid lease directory {self.directory} is not a directory owned and writable only by "
                f"uid {os.geteuid()}; remove it or pass another one"
            )
        return self.directory

    @contextlib.contextmanager
    def lease(self) -> Iterator[int]:
        """Hold the lowest free uid for the block's duration."""
        directory = self._checked_directory()
        for uid in range(self.base, self.base + self.span):
            fd = os.open(directory / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield uid
            finally:
                os.close(fd)  # releases the lock; the file stays for the next lease
            return
        raise VerificationError(f"all {self.span} sandbox uids from {self.base} are in use: more runs at once than that")
