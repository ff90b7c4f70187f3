"""The signing protocol shared by clients, agents and services; no Flask, no MariaDB.

Every signature is base64url(HMAC-SHA256(secret, canonical text)) without padding.

- Signed app requests: ``X-MG-App``, ``X-MG-Timestamp`` (unix seconds), ``X-MG-Nonce``
  (random, so no two requests share a signature), ``X-MG-Content-SHA256`` (hex SHA-256 of
  the body; of the stored file for uploads, which the shim checks before it commits) and
  ``X-MG-Signature`` over :func:`app_request_text`: ``app2``, method, path, sorted query,
  timestamp, app, nonce, content SHA-256 and ``Content-Type``, one a line. A service
  accepts a signature once, within ``SIGNATURE_MAX_SKEW`` of its timestamp.
- Bearer token (for curl and players): ``Authorization: Bearer mg2.<app>.<expires>.<scope>.<sig>``
  with the signature over ``token2\\n<app>\\n<expires>\\n<scope>``, or the same as ``?token=``;
  ``scope`` is base64url(JSON) of :class:`Scope` (a user, read-only, a file-id prefix; ``{}``
  is app-wide). Servers refuse tokens that expire more than ``TOKEN_MAX_TTL`` ahead.
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
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from urllib.parse import urlencode

TOKEN_PREFIX = "mg2"
# The longest a token may live (the servers' default TOKEN_MAX_TTL; the CLI mints no longer).
TOKEN_MAX_TTL = 86400
# What a read-only credential (a playback URL) may do; the scope "read" is in its signed text.
READ_METHODS = frozenset({"GET", "HEAD"})
# The header that declares (and, signed, binds) the SHA-256 of a request's content.
CONTENT_SHA256 = "X-MG-Content-SHA256"


def sign(secret: str, text: str) -> str:
    mac = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def canonical_query(items: Iterable[tuple[str, str]]) -> str:
    return urlencode(sorted(items))


def request_text(method: str, path: str, query: str, ts: str, principal: str, body: str = "") -> str:
    return "\n".join((method.upper(), path, query, ts, principal, body))


def app_request_text(
    method: str, path: str, query: str, ts: str, app: str, nonce: str, content_sha256: str, content_type: str
) -> str:
    return "\n".join(("app2", method.upper(), path, query, ts, app, nonce, content_sha256, content_type))


def signed_headers(
    principal: str,
    secret: str,
    method: str,
    path: str,
    query: Mapping[str, object] | None = None,
    body: bytes | None = None,
    cluster: bool = False,
    *,
    content_sha256: str | None = None,
    content_type: str = "",
) -> dict[str, str]:
    """Headers that authenticate one request as an app or (cluster=True) a node.

    An app signs the body's SHA-256 (``content_sha256`` when the body is streamed: the
    upload's file) and its ``content_type``, which is sent as the Content-Type header."""
    ts = str(int(time.time()))
    q = canonical_query((k, str(v)) for k, v in (query or {}).items())
    if cluster:
        digest = hashlib.sha256(body or b"").hexdigest()
        sig = sign(secret, request_text(method, path, q, ts, principal, digest))
        return {"X-MG-Node": principal, "X-MG-Timestamp": ts, "X-MG-Signature": sig}
    nonce = secrets.token_urlsafe(12)
    digest = content_sha256 or hashlib.sha256(body or b"").hexdigest()
    sig = sign(secret, app_request_text(method, path, q, ts, principal, nonce, digest, content_type))
    headers = {"X-MG-App": principal, "X-MG-Timestamp": ts, "X-MG-Nonce": nonce, CONTENT_SHA256: digest}
    if content_type:
        headers["Content-Type"] = content_type
    return {**headers, "X-MG-Signature": sig}


@dataclass(frozen=True)
class Scope:
    """What a token may reach: one user's files, only reading, ids under a prefix (None:
    no limit of that kind)."""

    user: str | None = None
    read_only: bool = False
    prefix: str | None = None

    def encode(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if v not in (None, False)}
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    @classmethod
    def decode(cls, text: str) -> Scope:
        """The scope a token carries; ValueError if it is not one."""
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(raw, dict) or not raw.keys() <= {"user", "read_only", "prefix"}:
            raise ValueError("not a token scope")
        scope = cls(**raw)
        if not all(isinstance(v, str) for v in (scope.user, scope.prefix) if v is not None):
            raise ValueError("not a token scope")
        if not isinstance(scope.read_only, bool):
            raise ValueError("not a token scope")
        return scope


def node_key(master: str, node_id: str, address: str) -> str:
    """A storage node's own credential: derived from the cluster's node master key (which
    only the services that check nodes hold), bound to the node's id and address."""
    return sign(master, f"node\n{node_id}\n{address}")


def token_signature(secret: str, app: str, expires: int, scope: str) -> str:
    return sign(secret, f"token2\n{app}\n{expires}\n{scope}")


def make_token(app: str, secret: str, expires: int, scope: Scope | None = None) -> str:
    text = (scope or Scope()).encode()
    return f"{TOKEN_PREFIX}.{app}.{expires}.{text}.{token_signature(secret, app, expires, text)}"


def file_signature(secret: str, app: str, user: str, file_id: str, expires: int) -> str:
    return sign(secret, f"file\nread\n{app}\n{user}\n{file_id}\n{expires}")
