"""Reading only the file that was planned.

Planning notes the input file's identity (``FileIdentity``: device, inode, size, modification
time in ns) on every chunk. Before a chunk is read, ``planned_file`` opens the planned path once,
without following a symbolic link (the path was resolved when it was checked) and without
blocking on a FIFO, and compares the identity of what it opened (``fstat``) with the plan's.
The readers of the chunk (htslib, gzip) then open that same open file through
``/proc/self/fd/<n>``, never the path again, so a path swapped after the check is not read.
Once the chunk's lines are read, the identity is compared again: a file written to meanwhile
fails the chunk too. A file that is not the planned one fails its chunk with ``FileChanged``
(an input error: retrying reads the same file), naming what changed.

Size and modification time catch appends, truncation and rewrites by any ordinary means; a
rewrite that keeps both (same size, modification time set back) is what the chunk's digest of
its lines is for (``ChunkRead.digest``, kept in ``catalog.chunks``).
"""

from __future__ import annotations

import errno
import os
import stat as stat_module
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from vcfstream.errors import FileChanged, InputError
from vcfstream.model import FileIdentity

# The name under which a process reopens a file it holds open (the open file, not the path).
_FD_DIR = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def identity_of(stat: os.stat_result) -> FileIdentity:
    return FileIdentity(stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def changes(planned: FileIdentity, found: FileIdentity) -> list[str]:
    """What differs between the planned file and the one found, in words (empty: the same file)."""
    if (found.device, found.inode) != (planned.device, planned.inode):
        return [(f"it is another file now (device {found.device}, inode {found.inode}; planned: device "
                 f"{planned.device}, inode {planned.inode})")]
    found_changes = []
    if found.size != planned.size:
        grown = "grew" if found.size > planned.size else "shrank"
        found_changes.append(f"it {grown} to {found.size:,} bytes (planned: {planned.size:,})")
    if found.mtime_ns != planned.mtime_ns:
        found_changes.append(f"it was modified at {_when(found.mtime_ns)} (planned: {_when(planned.mtime_ns)})")
    return found_changes


def _when(mtime_ns: int) -> str:
    seconds, nanos = divmod(mtime_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


class PlannedFile:
    """The planned file, held open: ``name`` opens that very file (or the path, unchecked, when
    nothing was planned); ``check`` compares it with the plan again."""

    def __init__(self, path: str, identity: FileIdentity | None, what: str, fd: int | None) -> None:
        self.path, self.identity, self.what, self._fd = path, identity, what, fd
        self.name = path if fd is None else f"{_FD_DIR}/{fd}"

    def check(self, when: str) -> None:
        """Raise ``FileChanged`` if the open file is no longer as planned (``when``: e.g. "after
        reading it")."""
        if self._fd is None or self.identity is None:
            return
        stat = os.fstat(self._fd)
        found = identity_of(stat)
        if not stat_module.S_ISREG(stat.st_mode):
            raise FileChanged(self.path, f"{self.what}: it is not a regular file now")
        differences = changes(self.identity, found)
        if differences:
            raise FileChanged(self.path, f"{self.what}: the file changed since it was planned "
                                         f"({when}: {'; '.join(differences)}); ingest the file again")


@contextmanager
def planned_file(path: str, identity: FileIdentity | None, what: str = "not read") -> Iterator[PlannedFile]:
    """Open ``path`` as planned (see the module doc) and check it; ``what`` says what a change
    stops, e.g. ``chunk chr1:1-1000 not read``. Without an ``identity`` (nothing planned) the path
    is used as it is."""
    if identity is None:
        yield PlannedFile(path, None, what, None)
        return
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _open_error(path, what, exc) from None
    try:
        opened = PlannedFile(path, identity, what, fd)
        opened.check("when opened")
        yield opened
    finally:
        os.close(fd)


def _open_error(path: str, what: str, exc: OSError) -> Exception:
    if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link where the planned file was
        return FileChanged(path, f"{what}: the path is a symbolic link now (it was resolved to this "
                                 f"file when planned); ingest the file again")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return FileChanged(path, f"{what}: the file is gone since it was planned (deleted or "
                                 f"renamed)")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return InputError(path, f"{what}: not readable ({exc.strerror})")
    return exc  # an I/O fault (EIO, a stale mount): transient, the chunk task retries it
