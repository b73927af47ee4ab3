"""A download's data on disk until it is complete and verified.

The data goes to `.<name>.part` in the file's own directory, written with
positional writes (chunks arrive in any order, from worker threads), and is
moved to its final name only when every chunk is in and the whole file
re-verified. The final name never replaces an existing file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import TypeVar

from bisc.files.names import candidate_names

T = TypeVar("T")

_O_BINARY = getattr(os, "O_BINARY", 0)
_HAS_PWRITE = hasattr(os, "pwrite")


async def run_io(executor: Executor, fn: Callable[..., T], *args: object) -> T:
    """fn(*args) in `executor`. If the caller is cancelled, wait for the thread
    to finish before passing the cancellation on: the caller may close the fd
    the thread is using, and a reused fd number must never be written to."""
    future = asyncio.get_running_loop().run_in_executor(executor, fn, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await future
        raise


def describe_os_error(exc: OSError, where: Path) -> str:
    """A sentence a user can act on."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full: no space left to store the download in {where}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"storage is not writable: {where} ({exc.strerror})"
    return f"cannot write {where}: {exc.strerror or exc}"


class PartFile:
    def __init__(self, directory: Path, name: str, size: int) -> None:
        self.directory = directory
        self.name = name  # already sanitized
        self.path = directory / f".{name}.part"
        self.size = size
        self._fd: int | None = None
        self._seek_lock = threading.Lock()  # only where there is no pwrite (Windows)

    def open(self) -> None:
        """Create or reopen the part file at its full size (sparse). Raises OSError."""
        if self._fd is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _O_BINARY, 0o644)
        try:
            if os.fstat(fd).st_size != self.size:
                os.ftruncate(fd, self.size)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise OSError(errno.EBADF, "part file is not open")
        return self._fd

    def write_at(self, offset: int, data: bytes) -> None:
        """Write all of `data` at `offset` (from any thread). Raises OSError."""
        fd = self.fd
        view = memoryview(data)
        while view:
            if _HAS_PWRITE:
                written = os.pwrite(fd, view, offset)
            else:
                with self._seek_lock:
                    os.lseek(fd, offset, os.SEEK_SET)
                    written = os.write(fd, view)
            view = view[written:]
            offset += written

    def read_at(self, offset: int, length: int) -> bytes:
        if hasattr(os, "pread"):
            return os.pread(self.fd, length, offset)
        with self._seek_lock:
            os.lseek(self.fd, offset, os.SEEK_SET)
            return os.read(self.fd, length)

    def sync(self) -> None:
        """Flush written data to disk (before recording chunks as verified)."""
        if self._fd is not None:
            getattr(os, "fdatasync", os.fsync)(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def remove(self) -> None:
        """Delete the partial data (and the file's directory if that leaves it empty)."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            self.directory.rmdir()

    def finalize(self) -> Path:
        """fsync, then move into place under the first free name. Raises OSError."""
        self.open()
        os.fsync(self.fd)
        self.close()
        for candidate in candidate_names(self.name):
            dest = self.directory / candidate
            try:
                os.link(self.path, dest)  # fails if dest exists: never overwrites, even in a race
            except FileExistsError:
                continue
            except OSError:  # no hard links here (e.g. FAT): check, then rename
                if dest.exists():
                    continue
                os.replace(self.path, dest)
            else:
                self.path.unlink()
            _sync_directory(self.directory)
            return dest
        raise AssertionError("unreachable: candidate_names never ends")


def _sync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX; not possible on Windows)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
