"""Validation of the names that reach paths and SQL: apps, users, file ids, groups.

File ids and users are chosen by clients, so they are checked before they go anywhere:
no path separators, no ``..``, no control characters, bounded length.
"""

from __future__ import annotations

import re

from .errors import APIError

# The patterns are public: the API contract (mediagrid.contract) documents them.
APP_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
GROUP_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
NAME_RE = re.compile(r"^[A-Za-z0-9._~@+=-]+$")
USER_MAX = 128
FILE_ID_MAX = 200


def _check_name(value: str, what: str, code: str, max_len: int) -> str:
    if not value:
        raise APIError(400, code, f"{what} must not be empty")
    if len(value) > max_len:
        raise APIError(400, code, f"{what} is longer than {max_len} characters")
    if value in (".", "..") or ".." in value:
        raise APIError(400, code, f"{what} must not contain '..'")
    if not NAME_RE.match(value):
        raise APIError(400, code, f"{what} may only contain letters, digits and . _ ~ @ + = -")
    return value


def check_file_id(value: str, max_len: int = FILE_ID_MAX) -> str:
    return _check_name(value, "file id", "invalid_file_id", max_len)


def check_user(value: str) -> str:
    return _check_name(value, "user", "invalid_user", USER_MAX)


def check_app(value: str) -> str:
    if not value or not APP_RE.match(value):
        raise APIError(400, "invalid_app", "app must match [a-z0-9][a-z0-9_-]{0,63}")
    return value


def check_int(raw: str, low: int, high: int, code: str, what: str) -> int:
    """An integer query argument within [low, high], written in ASCII digits.

    ``str.isdigit`` alone also admits superscripts and other scripts' digits, which
    ``int`` refuses or reads as a different number; a typo must be a 400, never a 500.
    """
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise APIError(400, code, f"{what} must be an integer from {low} to {high}")
    return int(raw)


def check_group(value: str) -> str:
    if not value or not GROUP_RE.match(value):
        raise APIError(400, "invalid_group", "group must match [a-z0-9][a-z0-9_-]{0,31}")
    return value


def storage_path(sid: int, ext: str = "") -> str:
    """Path of a stored object relative to its group root, derived from its storage id.

    Two levels of 256 directories from bits 24..31 and 16..23 of the id, so 65,536
    consecutive ids share a leaf directory: ``00/1a/00000000001a2b3c.mp4``.
    """
    if not 0 < sid < 2**63:
        raise ValueError("storage id out of range")
    return f"{(sid >> 24) & 0xFF:02x}/{(sid >> 16) & 0xFF:02x}/{sid:016x}{ext}"


# What storage_path makes, and nothing else: two directory levels from the id's bits, the
# id in 16 hex digits, an optional extension as ``extension`` returns it.
STORAGE_PATH_RE = re.compile(r"([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{16})(\.[a-z0-9]{1,10})?")


def storage_sid(rel: str) -> int | None:
    """The storage id named by a path relative to a group root, or None unless the path is
    exactly what :func:`storage_path` makes for that id (so it is relative, has no ``..``
    and its directories are the id's own)."""
    match = STORAGE_PATH_RE.fullmatch(rel)
    if match is None:
        return None
    sid = int(match.group(3), 16)
    if not 0 < sid < 2**63 or storage_path(sid, match.group(4) or "") != rel:
        return None
    return sid


_EXT_RE = re.compile(r"^\.[A-Za-z0-9]{1,10}$")


def extension(filename: str) -> str:
    """A safe, lower-cased extension taken from a client's file name, or ''."""
    dot = filename.rfind(".")
    if dot <= 0:
        return ""
    ext = filename[dot:]
    return ext.lower() if _EXT_RE.match(ext) else ""
