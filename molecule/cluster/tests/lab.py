"""Shared facts about the lab for the cluster tests."""

from __future__ import annotations

import http.client
import os
import pathlib
import time

import testinfra
import yaml

PREFIX = os.environ.get("LAB_NET_PREFIX", "10.77.0")
CLUSTER_VIP = f"{PREFIX}.10"
FRONT = ["tracker1", "tracker2"]
GROUPS = {"g1": (["s1a", "s1b"], f"{PREFIX}.20"), "g2": (["s2a", "s2b"], f"{PREFIX}.30")}
DB_HOST = f"{PREFIX}.15"
MEDIA_ROOT = "/srv/mediagrid"
BRICKS_ROOT = "/bricks"
REPO = pathlib.Path(__file__).resolve().parents[3]
EPHEMERAL = pathlib.Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp"))


def _addresses() -> dict[str, str]:
    """Each lab host's cluster address, from the inventory (hosts.yml)."""
    found: dict[str, str] = {}

    def walk(group: dict) -> None:
        for name, hostvars in (group.get("hosts") or {}).items():
            found[name] = hostvars["mediagrid_address"].replace("{{ lab_network_prefix }}", PREFIX)
        for child in (group.get("children") or {}).values():
            walk(child or {})

    walk(yaml.safe_load((REPO / "inventory" / "lab" / "hosts.yml").read_text())["all"])
    return found


ADDRESSES = _addresses()


def node(name: str):
    """A testinfra host for a lab container, reached with docker exec."""
    return testinfra.get_host(f"docker://{name}")


def lab_secret(name: str) -> str:
    vault = REPO / "inventory" / "lab" / "group_vars" / "all" / "vault.yml"
    return yaml.safe_load(vault.read_text())[name]


def has_address(name: str, address: str) -> bool:
    return f" {address}/" in node(name).check_output("ip -4 -o addr show")


def http_get(address: str, port: int, path: str, timeout: float = 1.0):
    """GET from this machine; returns (status, node header, body) or None."""
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("X-Mediagrid-Node"), resp.read()
    except OSError:
        return None
    finally:
        conn.close()


def wait_until(predicate, seconds: float, step: float = 0.1):
    """Poll predicate (bounded); return its first truthy value or None."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None
