"""Fixtures for the end-to-end suite against the lab cluster (`make lab`).

The lab's addresses come from LAB_NET_PREFIX (default 10.77.0); the demo app's client
configuration is the one `make lab` writes (build/lab/client.toml). Containers are
driven with the docker CLI, the database is read with `docker exec db1 mariadb`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from mediagrid.client import Client
from mediagrid_dev.lab import ADMIN_APP, admin_secret, docker

ROOT = Path(__file__).resolve().parents[2]
PREFIX = os.environ.get("LAB_NET_PREFIX", "10.77.0")
CLIENT_CONF = Path(os.environ.get("MEDIAGRID_LAB_CLIENT_CONFIG", ROOT / "build" / "lab" / "client.toml"))
GROUPS = {"g1": ["s1a", "s1b"], "g2": ["s2a", "s2b"]}
ADDRESS = {"s1a": f"{PREFIX}.21", "s1b": f"{PREFIX}.22", "s2a": f"{PREFIX}.31", "s2b": f"{PREFIX}.32"}


def brick_path(node: str, group: str, rel: str) -> str:
    """Where a stored file lives on a node's brick (from `gluster volume info`)."""
    info = docker("exec", node, "gluster", "volume", "info", group)
    for line in info.splitlines():
        if line.startswith("Brick") and f"{ADDRESS[node]}:" in line:
            return line.split(":", 2)[-1].strip() + "/" + rel
    raise AssertionError(f"no brick of {node} in volume {group}")


def admin(*args: str) -> str:
    """`mediagrid-admin` on tracker1 (the schema owner's configuration), its output."""
    return docker("exec", "tracker1", "/opt/mediagrid/venv/bin/mediagrid-admin", "--config",
                  "/etc/mediagrid/admin.toml", *args)  # fmt: skip


def sql(query: str) -> list[list[str]]:
    """Rows of a query on db1, as lists of strings (the mariadb client's batch output)."""
    out = docker("exec", "db1", "mariadb", "-N", "-B", "mediagrid", "-e", query)
    return [line.split("\t") for line in out.splitlines() if line]


@dataclass
class Lab:
    url: str
    app: str
    secret: str
    conf: Path
    # The lab CA (client.toml's ca_file): the cluster address and the storage upload
    # endpoints answer HTTPS with certificates it signed.
    ca_file: str | None = None

    @property
    def http(self) -> str:
        """The cluster address over plain HTTP (kept on for players that need it)."""
        return "http://" + self.url.split("://", 1)[1]

    def client(self, **kwargs: Any) -> Client:
        kwargs.setdefault("timeout", 60)
        return Client(self.url, self.app, self.secret, ca_file=self.ca_file, **kwargs)

    def admin(self) -> Client:
        """The admin app's client: the topology (groups) is for admin apps only."""
        return Client(self.url, ADMIN_APP, admin_secret(), timeout=60, ca_file=self.ca_file)

    def states(self) -> dict[str, str]:
        body = self.admin().groups()
        return {m["node_id"]: m["state"] for g in body["groups"] for m in g["members"]}

    def wait_states(self, want: dict[str, str], timeout: float) -> float:
        start = time.monotonic()
        while True:
            try:
                states = self.states()
                if all(states.get(k) == v for k, v in want.items()):
                    return time.monotonic() - start
            except (requests.RequestException, Exception):
                states = {}
            if time.monotonic() - start > timeout:
                raise AssertionError(f"states {states} never became {want} in {timeout}s")
            time.sleep(0.2)


@pytest.fixture(scope="session")
def lab() -> Lab:
    if not CLIENT_CONF.exists():
        pytest.fail(f"{CLIENT_CONF} is missing: run `make lab` first")
    conf = tomllib.loads(CLIENT_CONF.read_text())
    lab = Lab(conf["url"], conf["app"], conf["secret"], CLIENT_CONF, conf.get("ca_file"))
    if lab.ca_file:
        # requests.get and curl, as the tests call them, trust the lab CA (and only it).
        os.environ["REQUESTS_CA_BUNDLE"] = lab.ca_file
        os.environ["CURL_CA_BUNDLE"] = lab.ca_file
    lab.wait_states({n: "ACTIVE" for nodes in GROUPS.values() for n in nodes}, 120)
    return lab


@pytest.fixture(scope="session")
def client(lab: Lab) -> Client:
    return lab.client()


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12 s H.264/AAC mp4 with faststart, made here with Debian's ffmpeg."""
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x360:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-t",
            "12",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-movflags",
            "+faststart",
            str(path),
        ],
        check=True,
        timeout=120,
    )
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cli_env(lab: Lab) -> Iterator[dict[str, str]]:
    yield {**os.environ, "MEDIAGRID_CLIENT_CONFIG": str(lab.conf)}
