"""A stored object's identity, kept with the object itself.

The files table is the namespace: without it a volume holds objects named by storage id
alone. So every upload writes, before its commit, who the object is into an extended
attribute of the file (``user.mediagrid``, JSON): app, user, file id, storage id, group,
size, SHA-256, content type. GlusterFS keeps user xattrs on every replica. From them
``mediagrid-admin rebuild`` (``rebuild``) puts back the rows a database restored from an
older backup lacks.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

XATTR = "user.mediagrid"


@dataclass(frozen=True)
class Identity:
    app: str
    user: str
    file_id: str
    sid: int
    group: str
    size: int
    sha256: str
    content_type: str

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Identity:
        data = json.loads(raw)
        return cls(
            app=str(data["app"]),
            user=str(data["user"]),
            file_id=str(data["file_id"]),
            sid=int(data["sid"]),
            group=str(data["group"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            content_type=str(data["content_type"]),
        )


def attrs(ident: Identity) -> dict[str, bytes]:
    """The extended attributes that carry ``ident`` (set on the file before its commit)."""
    return {XATTR: ident.encode()}


def read(path: str | Path) -> Identity | None:
    """The identity stored with a file, or None when it has none (or an unreadable one)."""
    try:
        raw = os.getxattr(path, XATTR, follow_symlinks=False)
    except OSError as err:
        if err.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise
    try:
        return Identity.decode(raw)
    except (ValueError, KeyError, TypeError):
        return None
