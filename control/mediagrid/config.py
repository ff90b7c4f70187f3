"""One way to configure every mediagrid process: defaults, then a TOML file, then env.

Services (Flask apps) and plain processes (the agent, the CLI) share this loader so a
setting means the same thing everywhere. Environment variables carry the ``MEDIAGRID_``
prefix; values are parsed as JSON when they parse (numbers, lists, booleans), else kept
as strings, exactly like Flask's ``from_prefixed_env``.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

PREFIX = "MEDIAGRID"

DEFAULTS: dict[str, Any] = {
    # MariaDB
    "DB_HOST": "127.0.0.1",
    "DB_PORT": 3306,
    "DB_UNIX_SOCKET": "",
    "DB_USER": "mediagrid",
    "DB_PASSWORD": "",
    "DB_NAME": "mediagrid",
    "DB_CONNECT_TIMEOUT": 2,
    # Shared secret storage nodes prove to trackers and id services.
    "CLUSTER_SECRET": "",
    # Allowed clock skew for signed requests, seconds.
    "SIGNATURE_MAX_SKEW": 300,
    # Tracker
    "HEARTBEAT_INTERVAL": 1.5,
    "OFFLINE_AFTER": 5.0,
    "ASSIGN_STRATEGY": "most_free",
    "TRACKER_STATE_PATH": "",
    "TRACKER_SNAPSHOT_TTL": 0.5,
    "ROUTE_CACHE_SIZE": 100000,
    "APP_CACHE_TTL": 10.0,
    # ID service
    "ID_SEGMENT_NAME": "files",
    "ID_SEGMENT_STEP": 100000,
    "ID_MAX_BATCH": 1000,
    # Storage shim and agent
    "GROUP": "",
    "NODE_ID": "",
    "DATA_DIR": "",
    "PUBLIC_URL": "",
    "RESERVE_BYTES": 0,
    "ID_SERVICE_URLS": [],
    "ID_PREFETCH": 100,
    "UPLOAD_CHUNK": 1048576,
    "MAX_FILE_ID_LENGTH": 200,
    "TRACKERS": [],
    "HEAL_CHECK_COMMAND": "",
    "HEAL_VOLUME": "",
    "HEAL_BRICK_HOST": "",
    "STALE_PART_SECONDS": 900.0,
    # Gateway: internal nginx location prefix for group roots (X-Accel-Redirect).
    "ACCEL_PREFIX": "/_groups",
    # Direct links (tracker mints, front nginx checks): the key they share, the location
    # nginx serves them under and the longest validity an app may ask for, seconds.
    # An empty key turns direct links off.
    "LINK_KEY": "",
    "LINK_PREFIX": "/d",
    "LINK_MAX_TTL": 604800,
}


def _parse(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def load(environ: dict[str, str] | None = None, path: str | None = None) -> dict[str, Any]:
    """Return the effective configuration: defaults < file < ``MEDIAGRID_*`` env."""
    env = os.environ if environ is None else environ
    conf = dict(DEFAULTS)
    file_path = path or env.get(f"{PREFIX}_CONFIG", "")
    if file_path:
        with Path(file_path).open("rb") as fh:
            conf.update({k.upper(): v for k, v in tomllib.load(fh).items()})
    prefix = f"{PREFIX}_"
    for key, value in env.items():
        if key.startswith(prefix) and key != f"{PREFIX}_CONFIG":
            conf[key[len(prefix) :]] = _parse(value)
    return conf
