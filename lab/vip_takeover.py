#!/usr/bin/env python3
"""Measure how fast a VIP moves when its holder dies.

Polls http://VIP:PORT/healthz from this host (every 20 ms, 200 ms timeout),
reads which node answered (X-Mediagrid-Node), then breaks the holder and
reports the time from the break until the other node answers on the VIP.
Breaks: `stop` = docker stop of the holder container (default), `kill` =
docker kill (no goodbye advert), `nginx` = stop only nginx on the holder
(the health check must move the VIP).
Bounded: gives up after --max-seconds; restores the holder afterwards.
"""

from __future__ import annotations

import argparse
import http.client
import subprocess
import sys
import threading
import time


def probe(vip: str, port: int) -> str | None:
    """Return the node that answered on the VIP, or None."""
    conn = http.client.HTTPConnection(vip, port, timeout=0.2)
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        resp.read()
        return resp.getheader("X-Mediagrid-Node") if resp.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True).stdout


def holder_of(vip: str, nodes: list[str]) -> list[str]:
    out = []
    for node in nodes:
        addrs = docker("exec", node, "ip", "-4", "-o", "addr", "show", check=False)
        if f" {vip}/" in addrs:
            out.append(node)
    return out


def wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vip", default="10.77.0.10")
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--nodes", default="tracker1,tracker2")
    ap.add_argument("--break", dest="mode", choices=["stop", "kill", "nginx"], default="stop")
    ap.add_argument("--max-seconds", type=float, default=15.0)
    ap.add_argument("--no-restore", action="store_true")
    args = ap.parse_args()
    nodes = args.nodes.split(",")

    holders = holder_of(args.vip, nodes)
    if len(holders) != 1:
        print(f"expected exactly one holder of {args.vip}, found {holders}", file=sys.stderr)
        return 2
    holder = holders[0]
    if probe(args.vip, args.port) != holder:
        print(f"{args.vip}:{args.port} does not answer from {holder}", file=sys.stderr)
        return 2

    samples: list[tuple[float, str | None]] = []
    stop = threading.Event()

    def poll() -> None:
        deadline = time.monotonic() + args.max_seconds + 5
        while not stop.is_set() and time.monotonic() < deadline:
            samples.append((time.monotonic(), probe(args.vip, args.port)))
            time.sleep(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    if args.mode in ("stop", "kill"):
        docker(args.mode, holder)
    else:
        docker("exec", holder, "systemctl", "stop", "nginx")
    t_cmd = time.monotonic() - t0

    def moved() -> bool:
        return any(t > t0 and n not in (None, holder) for t, n in samples)

    ok = wait_for(moved, args.max_seconds)
    time.sleep(0.5)
    stop.set()
    poller.join()

    after = [(t - t0, n) for t, n in samples if t > t0]
    first_new = next((t for t, n in after if n not in (None, holder)), None)
    last_old = max((t for t, n in after if n == holder), default=0.0)
    failed = sum(1 for _, n in after if n is None)
    new_holder = next((n for _, n in after if n not in (None, holder)), None)
    print(f"vip={args.vip}:{args.port} holder={holder} break={args.mode} (command took {t_cmd:.2f} s)")
    if ok and first_new is not None:
        print(
            f"takeover: {new_holder} answered {first_new:.2f} s after the break; "
            f"old holder last answered at {last_old:.2f} s; "
            f"{failed} failed probes of {len(after)}"
        )
    else:
        print(f"takeover: no other node answered within {args.max_seconds} s", file=sys.stderr)

    if not args.no_restore:
        if args.mode in ("stop", "kill"):
            docker("start", holder)
            docker("exec", holder, "systemctl", "is-system-running", "--wait", check=False)
        else:
            docker("exec", holder, "systemctl", "start", "nginx")
        if wait_for(lambda: probe(args.vip, args.port) == holder, 60):
            print(f"restored: {holder} holds {args.vip} again")
        else:
            print(f"restored: {holder} is back; VIP answered by {probe(args.vip, args.port)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
