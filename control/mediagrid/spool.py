"""A temporary upload file that hashes, counts and writes behind the receiving thread.

Receiving (socket reads) holds the GIL; hashing and writing release it. So hashing and
writing run in a writer thread while the request thread keeps reading, and the kernel is
told to start write-back every few MiB (``sync_file_range``), so the final fsync only
waits for the tail instead of the whole file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import queue
import secrets
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from .errors import APIError

TMP_DIR = ".tmp"  # upload temporaries, under the group volume's root
_SYNC_FILE_RANGE_WRITE = 2
_WRITEBACK_EVERY = 8 << 20
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range back now (best effort, never blocks long)."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


class Spool:
    """An upload's file on the group volume.

    Either a ``.part`` file under ``TMP_DIR`` that ``commit`` renames into place whole, or
    (``in_place``) the final file itself, written where it will stay: its path derives from
    a fresh storage id that nothing refers to until the upload is recorded, so it is never
    seen half-written, and it saves the rename (and its directory fsync), which on a
    replicated GlusterFS volume cost more than the create and write of a small file.
    """

    def __init__(self, path: Path, limit: int, in_place: bool = False, max_size: int | None = None) -> None:
        # Every metadata call is a round trip to each brick on a GlusterFS volume: create the
        # file readable by nginx (0644 under the services' umask) in one call, and make the
        # directory only when it is missing.
        self.path = path
        self.in_place = in_place
        directory = path.parent
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileNotFoundError:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, flags, 0o644)
        self.fd = fd
        self.sha = hashlib.sha256()
        self.size = 0
        self.limit = limit  # bytes the volume may take before hitting the reserve
        self.max_size = max_size  # the largest upload taken (MAX_UPLOAD_BYTES)
        self._written = 0
        self._synced = 0
        self._queue: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None
        self.closed = False

    # -- writing --------------------------------------------------------------------------
    def _store(self, data: bytes) -> None:
        self.sha.update(data)
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self._written += len(data)
        if self._written - self._synced >= _WRITEBACK_EVERY:
            start_writeback(self.fd, self._synced, self._written - self._synced)
            self._synced = self._written

    def _writer(self) -> None:
        assert self._queue is not None
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._store(data)
                except OSError as err:
                    self._error = err

    def _raise_error(self) -> None:
        if self._error is not None:
            raise APIError(507, "insufficient_storage", f"write failed: {self._error.strerror}")

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.max_size is not None and self.size > self.max_size:
            raise APIError(413, "file_too_large", f"an upload may hold at most {self.max_size} bytes")
        if self.size > self.limit:
            raise APIError(507, "insufficient_storage", "the group is at its space reserve")
        self._raise_error()
        if self._queue is None and self.size <= len(data):
            try:  # the first chunk inline: small files never start a thread
                self._store(data)
            except OSError as err:
                self._error = err
                self._raise_error()
            return len(data)
        if self._queue is None:
            self._queue = queue.Queue(maxsize=16)
            self._thread = threading.Thread(target=self._writer, daemon=True)
            self._thread.start()
        self._queue.put(bytes(data))
        return len(data)

    def _drain(self) -> None:
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    # werkzeug's multipart parser treats its target as a file object
    def seek(self, offset: int, whence: int = 0) -> int:
        return self.size

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    # -- finishing ------------------------------------------------------------------------
    @classmethod
    def temporary(cls, root: Path, limit: int, max_size: int | None = None) -> Spool:
        return cls(root / TMP_DIR / f"{secrets.token_hex(12)}.part", limit, max_size=max_size)

    def commit(self, final: Path, attrs: Callable[[], Mapping[str, bytes]] | None = None) -> None:
        """fsync, then (a temporary) rename into place: the file appears whole or not at all.
        ``attrs`` (asked once the whole body is in, so it may use the digest) gives extended
        attributes set on the file before its fsync."""
        self._drain()
        self._raise_error()
        for name, value in (attrs() if attrs else {}).items():
            os.setxattr(self.fd, name, value)
        os.fsync(self.fd)
        os.close(self.fd)
        self.closed = True
        if self.in_place:
            assert final == self.path
            return
        try:
            os.rename(self.path, final)
        except FileNotFoundError:  # the first file of its directory
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(self.path, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def discard(self) -> None:
        self._drain()
        if not self.closed:
            os.close(self.fd)
            self.closed = True
        self.path.unlink(missing_ok=True)
