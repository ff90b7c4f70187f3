"""Request authentication in the services: apps (tenants) sign requests or carry a token;
storage nodes prove the cluster secret; playback URLs carry an expiring signature.

The protocol itself (canonical texts, signatures, tokens) is :mod:`mediagrid.signing`,
which the CLI and the agents use without Flask; this module checks it against the
current request and the app secrets in MariaDB.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable

from flask import request

from . import apps, replays
from .errors import APIError
from .removed import removed_nodes
from .signing import (
    CONTENT_SHA256,
    READ_METHODS,
    TOKEN_PREFIX,
    Scope,
    app_request_text,
    canonical_query,
    file_signature,
    node_key,
    request_text,
    sign,
    token_signature,
)
from .signing import equal as _equal
from .web import settings


class AppSecrets:
    """App credentials read from MariaDB (secrets: one, or two while one is rotated; the
    admin flag), cached per process for a few seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, apps.Credentials | None]] = {}

    def get(self, app: str) -> apps.Credentials | None:
        ttl = settings().app_cache_ttl
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(app)
        if hit and now - hit[0] < ttl:
            return hit[1]
        from .db import get_db

        with get_db().cursor() as cur:
            secret = apps.credentials(cur, app)
        with self._lock:
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[app] = (now, secret)
        return secret


_secrets = AppSecrets()


class ReplayGuard:
    """Accepts each app signature once (MariaDB ``seen_signatures``, shared by every
    service); purges expired signatures every PURGE_EVERY seconds per process."""

    PURGE_EVERY = 30.0

    def __init__(self) -> None:
        self._next_purge = 0.0

    def first(self, sig: str, expires: int) -> bool:
        from .db import get_db

        with get_db().cursor() as cur:
            fresh = replays.first_use(cur, sig, expires)
            if time.monotonic() >= self._next_purge:
                self._next_purge = time.monotonic() + self.PURGE_EVERY
                replays.purge(cur, int(time.time()))
        return fresh


_replays = ReplayGuard()
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
BODY_LIMIT = 1 << 20  # a signed request that is not an upload has at most a small body


def _check_time(ts: str) -> None:
    try:
        when = int(ts)
    except ValueError:
        raise APIError(401, "bad_signature", "X-MG-Timestamp must be unix seconds") from None
    skew = settings().signature_max_skew
    if abs(time.time() - when) > skew:
        raise APIError(401, "expired_signature", "request timestamp is outside the allowed skew")


# Stands in for an unknown app's secret, so that an unknown app costs the same work and
# gets the same answer as a wrong signature: app names cannot be enumerated.
_NO_SUCH_APP = (os.urandom(32).hex(),)


def _signed_by(app: str, given: str, expected: Callable[[str], str]) -> bool:
    """Whether ``given`` is ``expected(secret)`` for one of the app's secrets (two while
    one is rotated); for an unknown app, False, as for a wrong signature."""
    creds = _secrets.get(app)
    secrets = _NO_SUCH_APP if creds is None else creds.secrets
    return any(_equal(given, expected(secret)) for secret in secrets) and creds is not None


APP_WIDE = Scope()

# token -> (app, scope, expires, verified at): a token is re-verified against the
# (possibly rotated) app secrets at most every APP_CACHE_TTL seconds, like the secrets.
_verified_tokens: dict[str, tuple[str, Scope, int, float]] = {}


def _from_token(token: str) -> tuple[str, Scope]:
    hit = _verified_tokens.get(token)
    now = time.time()
    if hit is not None and hit[2] >= now and now - hit[3] < settings().app_cache_ttl:
        return hit[0], hit[1]
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != TOKEN_PREFIX:
        raise APIError(
            401, "bad_token", f"malformed token (a token is {TOKEN_PREFIX}.<app>.<expires>.<scope>.<sig>)"
        )
    _, app, expires, text, sig = parts
    try:
        exp = int(expires)
        scope = Scope.decode(text)
    except ValueError:
        raise APIError(401, "bad_token", "malformed token expiry or scope") from None
    if not _signed_by(app, sig, lambda secret: token_signature(secret, app, exp, text)):
        raise APIError(401, "bad_token", "token signature does not match")
    if exp < now:
        raise APIError(401, "expired_token", "token has expired")
    if exp - now > settings().token_max_ttl:
        raise APIError(401, "token_too_long", "token lives longer than this cluster allows (TOKEN_MAX_TTL)")
    if len(_verified_tokens) > 10000:
        _verified_tokens.clear()
    _verified_tokens[token] = (app, scope, exp, now)
    return app, scope


def _query_without(*skip: str) -> str:
    return canonical_query((k, v) for k, v in request.args.items(multi=True) if k not in skip)


def _from_signed_request(app: str, streamed_body: bool) -> str:
    """Check a signed app request: its signature over method, path, query, time, nonce,
    body digest and content type; its body (unless streamed: the shim checks the stored
    file against the digest, see :func:`check_content`); and that it is its first use."""
    sig = request.headers.get("X-MG-Signature", "")
    ts = request.headers.get("X-MG-Timestamp", "")
    _check_time(ts)
    nonce = request.headers.get("X-MG-Nonce", "")
    digest = request.headers.get(CONTENT_SHA256, "")
    if not nonce or not _SHA256_HEX.fullmatch(digest):
        raise APIError(401, "bad_signature", f"a signed request carries X-MG-Nonce and {CONTENT_SHA256}")
    ctype = request.headers.get("Content-Type", "")
    text = app_request_text(request.method, request.path, _query_without(), ts, app, nonce, digest, ctype)
    if not _signed_by(app, sig, lambda secret: sign(secret, text)):
        raise APIError(401, "bad_signature", "request signature does not match")
    if not streamed_body:
        if (request.content_length or 0) > BODY_LIMIT:
            raise APIError(413, "payload_too_large", "a request body too large")
        if hashlib.sha256(request.get_data(cache=True)).hexdigest() != digest:
            raise APIError(401, "bad_signature", f"the body does not match {CONTENT_SHA256}")
    if not _replays.first(sig, int(ts) + settings().signature_max_skew + 1):
        raise APIError(401, "replayed_signature", "this signature was used before")
    return app


def check_content(sha256: str) -> None:
    """The stored content of a streamed upload against the declared (signed) digest."""
    declared = request.headers.get(CONTENT_SHA256)
    if declared is not None and declared != sha256:
        raise APIError(400, "content_mismatch", f"the body does not match {CONTENT_SHA256}")


def _authenticate(file_ref: tuple[str, str, str] | None, streamed_body: bool) -> tuple[str, Scope]:
    """The app the current request proves to be and the scope of its credentials, or 401.

    ``file_ref`` = (app, user, file_id) also admits a playback-URL signature for that file
    (read-only); ``streamed_body``: the route streams the body, which it checks with
    :func:`check_content` before it keeps it.
    """
    header_app = request.headers.get("X-MG-App")
    if header_app:
        return _from_signed_request(header_app, streamed_body), APP_WIDE
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return _from_token(auth[len("Bearer ") :].strip())
    if "token" in request.args:
        return _from_token(request.args["token"])
    if "sig" in request.args and request.method not in READ_METHODS:
        raise APIError(403, "out_of_scope", "a playback URL only reads: GET or HEAD")
    if file_ref is not None and "sig" in request.args:
        app, user, file_id = file_ref
        try:
            exp = int(request.args.get("expires", ""))
        except ValueError:
            raise APIError(401, "bad_signature", "expires must be unix seconds") from None

        def expected(secret: str) -> str:
            return file_signature(secret, app, user, file_id, exp)

        if not _signed_by(app, request.args["sig"], expected):
            raise APIError(401, "bad_signature", "URL signature does not match")
        if exp < time.time():
            raise APIError(401, "expired_signature", "URL has expired")
        return app, Scope(user=user, read_only=True, prefix=file_id)
    raise APIError(401, "missing_credentials", "sign the request or send a token")


def _check_scope(scope: Scope, user: str | None, file_id: str | None) -> None:
    """Refuse what the credentials' scope does not reach (a route with no user or file
    id, e.g. ids or groups, is reached only by an app-wide scope of that kind)."""
    if scope.read_only and request.method not in READ_METHODS:
        raise APIError(403, "out_of_scope", "these credentials only read: GET or HEAD")
    if scope.user is not None and scope.user != user:
        raise APIError(403, "out_of_scope", "these credentials are for another user")
    if scope.prefix is not None and (file_id is None or not file_id.startswith(scope.prefix)):
        raise APIError(403, "out_of_scope", "these credentials are for file ids under another prefix")


def authenticate_app() -> str:
    """The app the current request proves to be (app-wide routes: no user, no file)."""
    app, scope = _authenticate(None, False)
    _check_scope(scope, None, None)
    return app


def require_app(
    app: str,
    user: str | None = None,
    file_id: str | None = None,
    *,
    playback: bool = False,
    streamed_body: bool = False,
) -> None:
    """Authenticate and insist the caller is ``app`` (tenants never see each other) and
    that its credentials reach ``user`` and ``file_id``. ``playback`` admits a playback
    URL for that file; ``streamed_body``: see :func:`_authenticate`."""
    file_ref = (app, user, file_id) if playback and user is not None and file_id is not None else None
    who, scope = _authenticate(file_ref, streamed_body)
    if who != app:
        raise APIError(403, "forbidden", "credentials do not belong to this app")
    _check_scope(scope, user, file_id)


def source_address() -> str:
    """The address the request came from: the peer's, or behind our own nginx on loopback
    the one it saw (the last X-Forwarded-For entry, which it appends itself)."""
    peer = request.remote_addr or ""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if forwarded and peer in ("127.0.0.1", "::1"):
        return forwarded.rsplit(",", 1)[-1].strip()
    return peer


def authenticate_node() -> str:
    """Verify a node's signature; return the node id that signed. Each node signs with
    its own key (``signing.node_key``), derived here from the master key, the node id it
    names and the address the request came from: a key used by another node, or from
    another address, does not verify, and neither does the master key itself."""
    node = request.headers.get("X-MG-Node", "")
    if not node:
        raise APIError(401, "missing_credentials", "cluster requests must be signed")
    ts = request.headers.get("X-MG-Timestamp", "")
    _check_time(ts)
    master = settings().cluster_secret
    if not master:
        raise APIError(503, "not_configured", "this server has no cluster secret configured")
    digest = hashlib.sha256(request.get_data(cache=True)).hexdigest()
    text = request_text(request.method, request.path, _query_without(), ts, node, digest)
    key = node_key(master, node, source_address())
    if not _equal(request.headers.get("X-MG-Signature", ""), sign(key, text)):
        raise APIError(401, "bad_cluster_signature", "cluster signature does not match")
    if removed_nodes.has(node):
        raise APIError(403, "node_removed", "an operator removed this node")
    return node


def require_admin() -> str:
    """Cluster-wide views (the topology): a node, or an app flagged admin
    (``mediagrid-admin app create NAME --admin``); any other app is 403."""
    if request.headers.get("X-MG-Node"):
        return "node:" + authenticate_node()
    app = authenticate_app()
    creds = _secrets.get(app)
    if creds is None or not creds.admin:
        raise APIError(403, "forbidden", "only admin credentials see the cluster's topology")
    return app


def authenticate_any() -> str:
    """Accept a node or an app (e.g. id requests from shims and from apps)."""
    if request.headers.get("X-MG-Node"):
        return "node:" + authenticate_node()
    return authenticate_app()
