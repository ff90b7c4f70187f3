"""Storage agent: joins every tracker and heartbeats its capacity, load and heal status.

One thread per tracker, so a slow or dead tracker never delays the others. A tracker that
does not know the node (it restarted) answers 404 and the agent joins it again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import subprocess
import threading
from collections.abc import Mapping
from typing import Any

import requests

from . import config
from .auth import signed_headers

log = logging.getLogger("mediagrid.agent")


_HEAL_RE = re.compile(r"^Total Number of entries:\s*(\d+)", re.MULTILINE)


def gluster_pending(output: str) -> int:
    """Sum of entries waiting for self-heal over the bricks of ``heal info summary``."""
    counts = _HEAL_RE.findall(output)
    if not counts:
        raise ValueError("no brick summary in the output")
    return sum(int(c) for c in counts)


def heal_pending(conf: Mapping[str, Any]) -> int:
    """Entries waiting for self-heal: of the group's GlusterFS volume (``HEAL_VOLUME``) or
    from an operator-supplied command printing an integer (``HEAL_CHECK_COMMAND``).
    A check that fails reports the node as syncing: unsure is not healthy."""
    try:
        if conf.get("HEAL_VOLUME"):
            argv = ["gluster", "volume", "heal", conf["HEAL_VOLUME"], "info", "summary"]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
            return gluster_pending(out.stdout)
        if conf.get("HEAL_CHECK_COMMAND"):
            out = subprocess.run(
                conf["HEAL_CHECK_COMMAND"], shell=True, capture_output=True, text=True, timeout=10, check=True
            )
            return int(out.stdout.strip() or 0)
    except (subprocess.SubprocessError, ValueError, OSError):
        log.warning("heal check failed; reporting the node as syncing")
        return 1
    return 0


def report(conf: Mapping[str, Any]) -> dict[str, Any]:
    st = os.statvfs(conf["DATA_DIR"])
    return {
        "node_id": conf["NODE_ID"],
        "group": conf["GROUP"],
        "url": conf["PUBLIC_URL"],
        "free": st.f_bavail * st.f_frsize,
        "total": st.f_blocks * st.f_frsize,
        "reserve": int(conf["RESERVE_BYTES"]),
        "load": round(os.getloadavg()[0] / (os.cpu_count() or 1), 3),
        "heal_pending": heal_pending(conf),
    }


class TrackerLink:
    def __init__(self, base: str, conf: Mapping[str, Any]) -> None:
        self.base = base.rstrip("/")
        self.conf = conf
        self.joined = False
        self.session = requests.Session()

    def _post(self, path: str, body: bytes) -> requests.Response:
        headers = signed_headers(
            self.conf["NODE_ID"],
            self.conf["CLUSTER_SECRET"],
            "POST",
            path,
            None,
            body,
            cluster=True,
        )
        headers["Content-Type"] = "application/json"
        headers["Connection"] = "close"  # a beat a second: no idle keep-alive to race with
        return self.session.post(self.base + path, data=body, headers=headers, timeout=2)

    def beat(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        try:
            if self.joined:
                resp = self._post("/api/v1/cluster/heartbeat", body)
                if resp.status_code == 404:
                    self.joined = False
            if not self.joined:
                resp = self._post("/api/v1/cluster/join", body)
                self.joined = resp.status_code == 200
                if self.joined:
                    log.info("joined tracker %s", self.base)
            if resp.status_code != 200:
                log.warning("tracker %s answered %s: %s", self.base, resp.status_code, resp.text[:200])
        except requests.RequestException as err:
            if self.joined:
                log.warning("tracker %s unreachable: %s", self.base, err)
            self.joined = False


def run(conf: Mapping[str, Any], stop: threading.Event) -> None:
    interval = float(conf["HEARTBEAT_INTERVAL"])
    links = [TrackerLink(url, conf) for url in conf["TRACKERS"]]
    if not links:
        raise SystemExit("agent needs MEDIAGRID_TRACKERS")
    while not stop.is_set():
        payload = report(conf)
        threads = [threading.Thread(target=link.beat, args=(payload,)) for link in links]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.wait(interval)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="mediagrid storage agent")
    parser.add_argument("--config", help="TOML configuration file (else MEDIAGRID_CONFIG)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    conf = config.load(path=args.config)
    for key in ("NODE_ID", "GROUP", "DATA_DIR", "PUBLIC_URL", "CLUSTER_SECRET"):
        if not conf[key]:
            raise SystemExit(f"agent needs MEDIAGRID_{key}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(conf, stop)


if __name__ == "__main__":
    main()
