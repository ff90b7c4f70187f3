"""What the long-running services without HTTP (``mediagrid-agent``, ``mediagrid-worker``)
share: their command line, their checked settings, their logging, and a stop event that
SIGTERM (systemd's stop) and SIGINT set; and how they end a child (an ffmpeg they run)."""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from . import config
from .config import Settings


def main(
    prog: str,
    description: str,
    required: Sequence[str],
    run: Callable[[Settings, threading.Event], None],
    argv: list[str] | None = None,
) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", help="TOML configuration file (else MEDIAGRID_CONFIG)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        conf = config.load_settings(path=args.config)
    except config.ConfigError as err:
        raise SystemExit(f"{prog}: {err}") from None
    for key in required:
        if not getattr(conf, key):
            raise SystemExit(f"{prog} needs MEDIAGRID_{key.upper()}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(conf, stop)


def terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    """End a child: SIGTERM, then SIGKILL after ``grace`` seconds; reaped either way."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def last_line(log_path: Path) -> str:
    """The last line (at most 200 characters) a child wrote to its log, "" if none."""
    try:
        lines = log_path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][-200:] if lines else ""
