"""``mediagrid-dev``: the loopback dev cluster (``make dev``) until Ctrl-C."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .cluster import DevCluster

USAGE = """\
mediagrid dev cluster is up (root {root}).
  cluster address   {url}
  trackers          {trackers}
  storage nodes     {storages}
  MariaDB           127.0.0.1:{db_port} (user mediagrid)
Use the CLI from another shell:
  export MEDIAGRID_CLIENT_CONFIG={root}/client.toml
  mediagrid upload movie.mp4 --user alice
  mediagrid ls --user alice
  mediagrid cluster
Logs are in {root}/logs. Press Ctrl-C to stop.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mediagrid-dev", description=__doc__)
    parser.add_argument("--root", default=".dev", help="working directory (wiped on start)")
    parser.add_argument("--port", type=int, default=8700, help="base port (front nginx)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    root = Path(args.root)
    if root.exists():
        shutil.rmtree(root)
    cluster = DevCluster(root, args.port, args.workers)
    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    cluster.start()
    print(
        USAGE.format(
            root=cluster.root,
            url=cluster.url,
            db_port=cluster.db_port,
            trackers=", ".join(cluster.tracker_url(i) for i in range(2)),
            storages=", ".join(f"{n}={cluster.storage_url(n)}" for n in cluster.storage_nodes),
        ),
        flush=True,
    )
    try:
        while not stop:
            time.sleep(0.5)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
