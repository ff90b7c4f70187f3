"""Tools of the failure drills: a bounded prober of the cluster address, VIP holders,
waiting for the lab to heal, and the figures file the drills leave behind."""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .conftest import GROUPS, PREFIX, ROOT, Lab, docker

VIP = f"{PREFIX}.10"
FRONT = {"tracker1": f"{PREFIX}.11", "tracker2": f"{PREFIX}.12"}
STORAGE = {"s1a": f"{PREFIX}.21", "s1b": f"{PREFIX}.22", "s2a": f"{PREFIX}.31", "s2b": f"{PREFIX}.32"}
GROUP_VIP = {"g1": f"{PREFIX}.20", "g2": f"{PREFIX}.30"}
FIGURES = ROOT / "build" / "lab" / "drills.json"


def holders(vip: str, nodes: list[str]) -> list[str]:
    """The nodes that carry ``vip`` on an interface right now."""
    out = []
    for node in nodes:
        addrs = docker("exec", node, "ip", "-4", "-o", "addr", "show", check=False, timeout=10)
        if f" {vip}/" in addrs:
            out.append(node)
    return out


def died_at(node: str, wall: float, mono: float) -> float:
    """When a killed container died, on the ``time.monotonic()`` clock: docker's FinishedAt
    (host wall clock), placed by one (``wall``, ``mono``) pair read together. A drill timed
    from here does not count the docker CLI's own start and round trip, which on two busy
    cores took up to half a second."""
    stamp = docker("inspect", "-f", "{{.State.FinishedAt}}", node).strip()
    day, _, frac = stamp.rstrip("Z").partition(".")
    finished = datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() + float(f"0.{frac or 0}")
    return mono + (finished - wall)


def wait_until(what: str, predicate: Callable[[], bool], timeout: float, step: float = 0.2) -> float:
    """Seconds until ``predicate`` holds; fails the drill after ``timeout``."""
    start = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - start
        except Exception:
            pass
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(step)


def http_status(host: str, path: str, port: int = 80, timeout: float = 2.0) -> tuple[int, str | None]:
    """(status, X-Mediagrid-Node) of one GET on a fresh connection; (0, None) if none."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("X-Mediagrid-Node")
    except OSError:
        return 0, None
    finally:
        conn.close()


@dataclass
class Sample:
    at: float
    status: int
    node: str | None
    latency: float


@dataclass
class Prober:
    """GETs ``path`` on ``host`` ``rate`` times a second, each on a new connection (so each
    probe finds the VIP wherever it is), until stopped; bounded by ``max_seconds``."""

    host: str
    path: str = "/api/v1/health"
    rate: float = 20.0
    timeout: float = 0.25
    max_seconds: float = 120.0
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        period = 1.0 / self.rate
        start = time.monotonic()
        tick = start
        while not self._stop.is_set() and tick - start < self.max_seconds:
            sent = time.monotonic()
            status, node = http_status(self.host, self.path, timeout=self.timeout)
            self.samples.append(Sample(sent, status, node, time.monotonic() - sent))
            tick += period
            self._stop.wait(max(0.0, tick - time.monotonic()))

    def first_ok_from(self, node: str, since: float) -> float | None:
        return next(
            (s.at for s in list(self.samples) if s.at >= since and s.status == 200 and s.node == node), None
        )

    def first_failure(self, since: float) -> float | None:
        return next((s.at for s in list(self.samples) if s.at >= since and s.status != 200), None)

    def errors(self, since: float) -> dict[str, Any]:
        """Failed probes after ``since``: count, and the window from the first to the last."""
        after = [s for s in list(self.samples) if s.at >= since]
        bad = [s for s in after if s.status != 200]
        window = (bad[-1].at + bad[-1].latency - bad[0].at) if bad else 0.0
        return {"probes": len(after), "failed": len(bad), "error_window_s": round(window, 3)}


def record(name: str, figures: dict[str, Any]) -> None:
    """Add one drill's figures to build/lab/drills.json (kept across runs, newest wins)."""
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data[name] = {**figures, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"{name}: {json.dumps(figures, sort_keys=True)}")


def put_text(node: str, path: str, text: str) -> None:
    """Write a file inside a lab container."""
    argv = ["docker", "exec", "-i", node, "sh", "-c", f"cat > {path}"]
    subprocess.run(argv, input=text, text=True, check=True, timeout=30)


def free_bytes(node: str, path: str) -> int:
    """Free space of a filesystem in a container, as the shim and the agent count it."""
    code = f"import os; s = os.statvfs({path!r}); print(s.f_bavail * s.f_frsize)"
    return int(docker("exec", node, "python3", "-c", code).strip())


def heal_entries(node: str, group: str) -> int | None:
    """Entries of the group's volume waiting for self-heal, as ``node`` sees them (on the
    bricks it can reach)."""
    out = docker("exec", node, "gluster", "volume", "heal", group, "info", "summary", check=False, timeout=30)
    counts = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Total Number")]
    known = [int(c) for c in counts if c.isdigit()]  # an unreachable brick shows "-"
    return sum(known) if known else None


def brick_files(node: str, group: str) -> set[str]:
    """Relative paths of the files on a node's brick, GlusterFS' own metadata excluded."""
    brick = f"/bricks/{group}/brick"
    out = docker(
        "exec", node, "find", brick, "-path", f"{brick}/.glusterfs", "-prune", "-o", "-type", "f", "-printf",
        "%P\\n", timeout=60,
    )  # fmt: skip
    return set(out.split())


def front_back(node: str) -> None:
    """After a front node restarts: its tracker answers and it holds the VIP again
    (it has the higher priority), so the next drill starts from the same place."""
    wait_until(f"{node} answers", lambda: http_status(FRONT[node], "/api/v1/health")[0] == 200, 120)
    wait_until(f"{node} holds the VIP", lambda: holders(VIP, list(FRONT)) == [node], 60)
    wait_until("the VIP answers", lambda: http_status(VIP, "/api/v1/health")[0] == 200, 30)


def storage_back(lab: Lab, node: str, group: str) -> None:
    """A stopped or cut-off storage node is running, ACTIVE, and its group healed."""
    if docker("inspect", "-f", "{{.State.Running}}", node).strip() != "true":
        docker("start", node)
    lab.wait_states({node: "ACTIVE"}, 180)
    wait_until(f"{group} healed", lambda: heal_entries(node, group) == 0, 180, step=1)
    wait_until(f"{group} VIP on one node", lambda: len(holders(GROUP_VIP[group], GROUPS[group])) == 1, 30)
