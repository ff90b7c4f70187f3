"""Fixtures of the fast layer: each service's Flask app and test client, no MariaDB, no nginx.

App secrets come from ``SECRETS`` instead of the ``apps`` table, seen signatures from a
set instead of ``seen_signatures``; the database settings
point at a closed port, so a route that reaches MariaDB answers as it does when it is down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mediagrid import apps, auth, gateway, idservice, signing, storage, tracker

APP = "demo"
ADMIN = "ops"  # an admin app (sees the topology)
SECRETS = {APP: "demo-secret", "other": "other-secret", ADMIN: "ops-secret"}
CLUSTER_SECRET = "cluster-secret"
REPORT: dict[str, Any] = {
    "node_id": "s1",
    "group": "g1",
    "url": "http://127.0.0.1:9",
    "free": 10**12,
    "total": 2 * 10**12,
    "reserve": 0,
    "load": 0.5,
    "heal_pending": 0,
    "seq": 1,
}


def token(app: str = APP) -> dict[str, str]:
    """A bearer token header for ``app``."""
    return {"Authorization": "Bearer " + signing.make_token(app, SECRETS[app], int(time.time()) + 600)}


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(
        auth._secrets,
        "get",
        lambda app: apps.Credentials((SECRETS[app],), app == ADMIN) if app in SECRETS else None,
    )
    seen: set[str] = set()  # the signatures MariaDB's seen_signatures would hold

    def first(sig: str, expires: int) -> bool:
        fresh = sig not in seen
        seen.add(sig)
        return fresh

    monkeypatch.setattr(auth._replays, "first", first)
    return {
        "TESTING": True,
        "DB_HOST": "127.0.0.1",
        "DB_PORT": 9,  # discard: nothing listens, MariaDB is "down"
        "DB_UNIX_SOCKET": "",
        "CLUSTER_SECRET": CLUSTER_SECRET,
        "TRACKER_STATE_PATH": str(tmp_path / "nodes.sqlite"),
        "GROUP": "g1",
        "NODE_ID": "s1",
        "DATA_DIR": str(tmp_path),
    }


SERVICES: dict[str, Callable[[dict[str, Any]], Flask]] = {
    "tracker": tracker.create_app,
    "idservice": idservice.create_app,
    "storage": storage.create_app,
    "gateway": gateway.create_app,
}


@pytest.fixture
def services(config: dict[str, Any]) -> dict[str, Flask]:
    return {name: create(config) for name, create in SERVICES.items()}


@pytest.fixture
def app(services: dict[str, Flask]) -> Flask:
    """The tracker."""
    return services["tracker"]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
