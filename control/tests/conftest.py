"""Fixtures: the loopback dev cluster (real MariaDB, gunicorn services, nginx) and clients."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mediagrid.client import Client
from mediagrid.db import Connection
from mediagrid_dev import DevCluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    root = tmp_path_factory.mktemp("cluster")
    dev = DevCluster(root, workers=int(os.environ.get("MEDIAGRID_TEST_WORKERS", "2")))
    dev.start()
    try:
        yield dev
    finally:
        dev.stop()
        for log in sorted((root / "logs").glob("*.log")):
            text = log.read_text(errors="replace")
            if "Traceback" in text:
                print(f"--- {log.name} has tracebacks:\n{text[-3000:]}")


@pytest.fixture
def conn(cluster: DevCluster) -> Iterator[Connection]:
    """A connection to the dev cluster's database (application user), closed after the test."""
    c = cluster.db()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="session")
def client(cluster: DevCluster) -> Client:
    return Client(cluster.url, cluster.app, cluster.app_secret, timeout=30)


@pytest.fixture(scope="session")
def other_client(cluster: DevCluster) -> Client:
    """A second tenant."""
    return Client(cluster.url, "other", cluster.add_app("other"), timeout=30)


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "clip.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 12345))
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def admin_env(cluster: DevCluster) -> dict[str, str]:
    """The environment that points `mediagrid-admin` at the cluster's database."""
    return {
        **os.environ,
        "MEDIAGRID_DB_HOST": "127.0.0.1",
        "MEDIAGRID_DB_PORT": str(cluster.db_port),
        "MEDIAGRID_DB_USER": "mediagrid",
        "MEDIAGRID_DB_PASSWORD": cluster.db_password,
        "MEDIAGRID_DB_NAME": "mediagrid",
    }
