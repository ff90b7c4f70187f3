"""A storage node's signed calls to the trackers (the agent's heartbeats, the shim's live
pushes): each signed with the node's own key over its body (``signing.signed_headers``)."""

from __future__ import annotations

import logging
import threading

import requests

from .config import Settings
from .signing import signed_headers

log = logging.getLogger(__name__)


def post(
    session: requests.Session, conf: Settings, base: str, path: str, body: bytes, timeout: float = 2
) -> requests.Response:
    headers = signed_headers(conf.node_id, conf.node_key, "POST", path, None, body, cluster=True)
    headers["Content-Type"] = "application/json"
    headers["Connection"] = "close"  # a call a second at most: no idle keep-alive to race with
    return session.post(base.rstrip("/") + path, data=body, headers=headers, timeout=timeout)


def post_all(conf: Settings, path: str, body: bytes, timeout: float = 2) -> None:
    """POST ``body`` to every tracker at once, in the background; failures are logged (the
    next heartbeat carries the same news)."""

    def one(base: str) -> None:
        try:
            resp = post(requests.Session(), conf, base, path, body, timeout)
            if resp.status_code >= 300:
                log.warning("tracker %s answered %s to %s: %s", base, resp.status_code, path, resp.text[:200])
        except requests.RequestException as err:
            log.warning("tracker %s unreachable for %s: %s", base, path, err)

    for base in conf.trackers:
        threading.Thread(target=one, args=(base,), daemon=True, name="push").start()
