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
import hmac
import re
import time
from typing import Any

from . import names

# What follows the HLS prefix in a rendition's URL path, as the front nginx matches it:
# /<token>/<expires>/<group>/<storage path>.hls/<file under the renditions>
_HLS_PATH = re.compile(
    r"/(?P<token>[A-Za-z0-9_-]{22})/(?P<expires>[0-9]{1,12})"
    r"/(?P<group>[a-z0-9][a-z0-9_-]{0,31})/(?P<path>[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{16}(?:\.[a-z0-9]{1,10})?)"
    r"\.hls/[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(?:/[A-Za-z0-9][A-Za-z0-9_.-]{0,63})?"
)


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


def verify_hls(key: str, prefix: str, path: str, now: float | None = None) -> tuple[str, str] | None:
    """The (group, storage path) of the video a rendition URL path (``<prefix>/<token>/
    <expires>/<group>/<storage path>.hls/<file>``, as :func:`hls` mints them) names, when
    its token is the key's and it has not expired at ``now``; else None. A caller that takes
    what a player reports after the fact passes an earlier ``now`` to accept late ones."""
    if not key or not path.startswith(prefix + "/"):
        return None
    match = _HLS_PATH.fullmatch(path, len(prefix))
    if match is None or names.storage_sid(match["path"]) is None:
        return None
    expires = int(match["expires"])
    obj = f"/{match['group']}/{match['path']}.hls"
    if not hmac.compare_digest(token(key, prefix + obj, expires), match["token"]):
        return None
    if expires < (time.time() if now is None else now):
        return None
    return match["group"], match["path"]
