"""Loopback ports: a free range for one dev cluster, and waiting for a listener."""

from __future__ import annotations

import secrets
import socket
import subprocess
import time


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def find_base_port(span: int = 50) -> int:
    """A random base port with ``span`` free ports from it (several clusters may run at once)."""
    for _ in range(200):
        base = secrets.randbelow(20000) + 20000
        if all(port_free(base + i) for i in range(span)):
            return base
    raise RuntimeError("no free port range found")


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something listens on ``port``; fail early if ``proc`` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")
