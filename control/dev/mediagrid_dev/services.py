"""The dev cluster's processes: how each is started, supervised and stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .ports import wait_port


@dataclass
class Service:
    name: str
    argv: list[str]
    port: int | None
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path, log: Path, timeout: float = 30.0) -> None:
        """Start in its own session (one signal stops its children too), output to ``log``;
        wait until it listens when it has a port."""
        if self.proc is not None and self.proc.poll() is None:
            return
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
                cwd=cwd,
            )
        if self.port is not None:
            wait_port(self.port, timeout, self.proc)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def gunicorn(
    name: str,
    service: str,
    port: int,
    *,
    workers: int | None = None,
    access_log: bool = True,
    target: str | None = None,
    env: dict[str, str] | None = None,
) -> Service:
    """A service served as on the nodes: mediagrid.gunicorn_conf, named by MEDIAGRID_SERVICE.

    ``target`` serves another application under ``service``'s settings (the benchmarks'
    baselines); ``workers`` overrides the configuration's count, as the nodes' units do.
    """
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:mediagrid.gunicorn_conf"]
    argv += ["--bind", f"127.0.0.1:{port}"]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if access_log:
        argv += ["--access-logfile", "-"]
    if target is not None:
        argv.append(target)
    return Service(name, argv, port, {**(env or {}), "MEDIAGRID_SERVICE": service})
