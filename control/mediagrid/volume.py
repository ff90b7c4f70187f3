"""Stored objects in a group volume, as whatever removes them must see them.

Paths that reach a deletion come from the database (``files.path``, ``uploads.path``) and the
agent that removes abandoned uploads runs as root, so a path is never joined to the volume
and unlinked as it is. It must be exactly what ``names.storage_path`` makes (relative, no
``..``, the id's own directories; the storage id of its row when one is given), and it is
reached one directory at a time with ``O_NOFOLLOW``: a symbolic link anywhere on the way,
or in place of the file, is refused, so nothing outside the volume is ever touched, even if
a link is swapped in between a check and the unlink.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from . import names

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_HEX2 = frozenset(f"{i:02x}" for i in range(256))


class UnsafePath(ValueError):
    """A path that is not a stored object's under the volume: never removed."""


class Stored(NamedTuple):
    rel: str  # its path relative to the volume root
    sid: int
    mtime: float


def _parts(rel: str, sid: int | None) -> list[str]:
    named = names.storage_sid(rel)
    if named is None or (sid is not None and named != sid):
        raise UnsafePath(f"not a storage path{'' if sid is None else f' of {sid}'}: {rel!r}")
    return rel.split("/")


def _open_parent(root: str | Path, parts: list[str]) -> int:
    """A descriptor of the file's directory, reached without following any link below root."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.ELOOP, errno.ENOTDIR):  # a link (O_NOFOLLOW) or a file on the way
            raise UnsafePath(f"a link or file in place of a directory in {'/'.join(parts)!r}") from None
        raise
    return fd


def lstat(root: str | Path, rel: str, sid: int | None = None) -> os.stat_result:
    """The stored object's status (FileNotFoundError if absent); UnsafePath if ``rel`` is
    not a storage path (of ``sid``) or is anything but a regular file under ``root``."""
    parts = _parts(rel, sid)
    fd = _open_parent(root, parts)
    try:
        st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"not a regular file: {rel!r}")
    return st


def remove(root: str | Path, rel: str, sid: int | None = None, written_before: float | None = None) -> bool:
    """Unlink the stored object ``rel`` under ``root``: True if it was removed, False if it
    was absent or (``written_before``) written since. UnsafePath as for :func:`lstat`."""
    parts = _parts(rel, sid)
    fd = _open_parent(root, parts)
    try:
        st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"not a regular file: {rel!r}")
        if written_before is not None and st.st_mtime >= written_before:
            return False
        os.unlink(parts[-1], dir_fd=fd)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)


def renditions_of(rel: str) -> str:
    """Where a stored object's renditions (HLS, thumbnails) live: beside it, ``<rel>.hls``."""
    return f"{rel}.hls"


def remove_renditions(root: str | Path, rel: str, sid: int | None = None) -> bool:
    """Remove the renditions directory of the stored object ``rel`` (see
    :func:`renditions_of`), reached as :func:`remove` reaches the object; its tree is
    removed without following any link in it. True if it was there."""
    parts = _parts(rel, sid)
    fd = _open_parent(root, parts)
    name = renditions_of(parts[-1])
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"not a directory: {renditions_of(rel)!r}")
        shutil.rmtree(name, dir_fd=fd)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)


def _dirs(path: str) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            yield from (e for e in entries if e.name in _HEX2 and e.is_dir(follow_symlinks=False))
    except OSError:
        return


def stored(root: str | Path) -> Iterator[Stored]:
    """Every stored object in the volume: regular files whose path is a storage path; links,
    temporaries (``.tmp``) and anything else are skipped."""
    for top in _dirs(os.fspath(root)):
        for leaf in _dirs(top.path):
            try:
                with os.scandir(leaf.path) as entries:
                    files = [e for e in entries if e.is_file(follow_symlinks=False)]
            except OSError:
                continue
            for entry in files:
                rel = f"{top.name}/{leaf.name}/{entry.name}"
                sid = names.storage_sid(rel)
                if sid is None:
                    continue
                try:
                    yield Stored(rel, sid, entry.stat(follow_symlinks=False).st_mtime)
                except OSError:
                    continue
