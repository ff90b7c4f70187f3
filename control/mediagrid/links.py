"""Direct links: expiring URLs that nginx checks and serves by itself, with no service in
the path of the bytes.

The tracker mints them for an app that signs its request; each front node's nginx checks
them with its secure_link module. The token is nginx's: base64url(MD5("<expires><uri>
<key>")) without padding, where ``key`` is the cluster's link key (``LINK_KEY``), known to
the trackers and the front nginx only, never to apps. A link names the stored object
(``<prefix>/<group>/<storage path>``), whose path is fresh for every upload, so a link never
reaches other bytes: it answers 404 once the file is deleted or overwritten.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any


def token(key: str, uri: str, expires: int) -> str:
    # MD5 is what nginx's secure_link_md5 offers; the key is appended, after the expiry and
    # the URI, as in nginx's own documentation.
    digest = hashlib.md5(f"{expires}{uri} {key}".encode(), usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def mint(key: str, prefix: str, group: str, path: str, ttl: int, now: float | None = None) -> dict[str, Any]:
    """The path and query of a direct link to ``path`` in ``group``, valid ``ttl`` seconds."""
    expires = int(time.time() if now is None else now) + ttl
    uri = f"{prefix}/{group}/{path}"
    return {"path": f"{uri}?e={expires}&t={token(key, uri, expires)}", "expires": expires}


def hls(key: str, prefix: str, group: str, path: str, ttl: int, now: float | None = None) -> dict[str, Any]:
    """The base path (ending in ``/``) under which the renditions of ``path`` in ``group``
    play for ``ttl`` seconds: ``master.m3u8``, ``poster.jpg``... are relative to it."""
    expires = int(time.time() if now is None else now) + ttl
    obj = f"/{group}/{path}.hls"
    return {"base": f"{prefix}/{token(key, prefix + obj, expires)}/{expires}{obj}/", "expires": expires}
