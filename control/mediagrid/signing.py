"""The signing protocol shared by clients, agents and services; no Flask, no MariaDB.

Every signature is base64url(HMAC-SHA256(secret, canonical text)) without padding.

- Signed request headers: ``X-MG-App``, ``X-MG-Timestamp`` (unix seconds) and
  ``X-MG-Signature`` over ``METHOD\\nPATH\\nSORTED-QUERY\\nTIMESTAMP\\nAPP``.
- Bearer token (for curl and players): ``Authorization: Bearer mg1.<app>.<expires>.<sig>``
  with the signature over ``token\\n<app>\\n<expires>``, or the same as ``?token=``.
- Playback URL: ``?expires=<unix>&sig=<sig over file\\nread\\n<app>\\n<user>\\n<file_id>\\n<expires>>``:
  it reads (``GET``/``HEAD``, :data:`READ_METHODS`) that one file and nothing else.
- Cluster requests (agents, shims): ``X-MG-Node`` + timestamp + signature with the
  cluster secret, where the canonical text also carries the body's SHA-256.

The services check these in :mod:`mediagrid.auth`; the CLI and the agents only sign.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from urllib.parse import urlencode

TOKEN_PREFIX = "mg1"
# What a read-only credential (a playback URL) may do; the scope "read" is in its signed text.
READ_METHODS = frozenset({"GET", "HEAD"})


def sign(secret: str, text: str) -> str:
    mac = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def canonical_query(items: Iterable[tuple[str, str]]) -> str:
    return urlencode(sorted(items))


def request_text(method: str, path: str, query: str, ts: str, principal: str, body: str = "") -> str:
    return "\n".join((method.upper(), path, query, ts, principal, body))


def signed_headers(
    principal: str,
    secret: str,
    method: str,
    path: str,
    query: Mapping[str, object] | None = None,
    body: bytes | None = None,
    cluster: bool = False,
) -> dict[str, str]:
    """Headers that authenticate one request as an app or (cluster=True) a node."""
    ts = str(int(time.time()))
    q = canonical_query((k, str(v)) for k, v in (query or {}).items())
    digest = hashlib.sha256(body or b"").hexdigest() if cluster else ""
    sig = sign(secret, request_text(method, path, q, ts, principal, digest))
    who = "X-MG-Node" if cluster else "X-MG-App"
    return {who: principal, "X-MG-Timestamp": ts, "X-MG-Signature": sig}


def token_signature(secret: str, app: str, expires: int) -> str:
    return sign(secret, f"token\n{app}\n{expires}")


def make_token(app: str, secret: str, expires: int) -> str:
    return f"{TOKEN_PREFIX}.{app}.{expires}.{token_signature(secret, app, expires)}"


def file_signature(secret: str, app: str, user: str, file_id: str, expires: int) -> str:
    return sign(secret, f"file\nread\n{app}\n{user}\n{file_id}\n{expires}")
