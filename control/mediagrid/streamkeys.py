"""Stream names and keys for live publishing (issue 13); no Flask, no MariaDB.

A publisher is given an RTMP URL per origin, ``rtmp://<origin>/live/<app>.<stream>?k=<key>``.
nginx-rtmp knows one application (``live``) and the stream by one name: ``<app>.<stream>``
(:func:`rtmp_name`), unambiguous since neither an app nor a stream name holds a dot, and
a single path element, which ffmpeg and OBS do not split into an application instance.
The key is ``<kid>.<role>.<expires>.<mac>``:

- ``kid``: a random id, recorded by the tracker with the key's app, stream and origin, so
  an operator can ban one key, and a refusal can say that a key was issued for another
  stream instead of only that it does not match;
- ``role``: ``primary`` or ``backup`` (the dual hot streams: each origin takes one role);
- ``expires``: unix seconds after which the key publishes nothing new;
- ``mac``: base64url(HMAC-SHA256) with the *origin's own* node key over the rest and the
  app and stream. The tracker derives that node key from the cluster's node master key
  (``signing.node_key``); the origin's shim, which holds its node key and nothing else,
  checks the key without asking anyone. A key is therefore good at the origin it was
  issued for only, for the stream it names only, until it expires.

:func:`check` answers why a key is refused, as a stable code the hook logs and the API
lists: ``missing_key``, ``malformed_key``, ``key_expired``, ``bad_key``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from .names import APP_RE
from .signing import equal, sign

ROLES = ("primary", "backup")
# Stream names: what nginx-rtmp, file names and URLs all take without quoting.
STREAM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
KID_RE = re.compile(r"[A-Za-z0-9_-]{11}")  # a key's id, its first field
_KEY_RE = re.compile(
    rf"(?P<kid>{KID_RE.pattern})\.(?P<role>primary|backup)"
    r"\.(?P<expires>[0-9]{1,12})\.(?P<mac>[A-Za-z0-9_-]{43})"
)


@dataclass(frozen=True)
class Key:
    kid: str
    role: str
    expires: int
    mac: str

    def __str__(self) -> str:
        return f"{self.kid}.{self.role}.{self.expires}.{self.mac}"


def valid_stream(name: str) -> bool:
    """A stream name: 1-64 of letters, digits, ``_`` and ``-``, not starting with either of
    the last two (no ``/``, ``..``, NUL or space can reach nginx-rtmp or a path)."""
    return STREAM_RE.fullmatch(name) is not None


def rtmp_name(app: str, stream: str) -> str:
    """The stream's name in nginx-rtmp (and its HLS directory on the origin)."""
    return f"{app}.{stream}"


def split_rtmp_name(name: str) -> tuple[str, str] | None:
    """``(app, stream)`` of an nginx-rtmp stream name, or None if it is not one of ours."""
    app, dot, stream = name.partition(".")
    if not dot or APP_RE.fullmatch(app) is None or not valid_stream(stream):
        return None
    return app, stream


def _text(app: str, stream: str, kid: str, role: str, expires: int) -> str:
    return f"live-publish\n{app}\n{stream}\n{kid}\n{role}\n{expires}"


def issue(node_key: str, app: str, stream: str, role: str, expires: int, kid: str | None = None) -> Key:
    """A key for publishing ``app``/``stream`` as ``role`` at the origin whose key is
    ``node_key``, until ``expires``."""
    if role not in ROLES:
        raise ValueError(f"role is one of {ROLES}")
    if not valid_stream(stream):
        raise ValueError("not a stream name")
    kid = kid or secrets.token_urlsafe(8)
    return Key(kid, role, expires, sign(node_key, _text(app, stream, kid, role, expires)))


def parse(raw: str | None) -> Key | None:
    match = _KEY_RE.fullmatch(raw or "")
    if match is None:
        return None
    return Key(match["kid"], match["role"], int(match["expires"]), match["mac"])


def check(node_key: str, app: str, stream: str, raw: str | None, now: float) -> tuple[Key | None, str | None]:
    """The key ``raw`` and None if it publishes ``app``/``stream`` at this origin now, else
    the parsed key (if any) and why not."""
    if not raw:
        return None, "missing_key"
    key = parse(raw)
    if key is None:
        return None, "malformed_key"
    if not equal(key.mac, sign(node_key, _text(app, stream, key.kid, key.role, key.expires))):
        return key, "bad_key"
    if key.expires < now:
        return key, "key_expired"
    return key, None
