"""One way to configure every mediagrid process: defaults, then a TOML file, then env.

Services (Flask apps) and plain processes (the agent, the admin command) share this loader
so a setting means the same thing everywhere. Environment variables carry the
``MEDIAGRID_`` prefix; a setting's value in the environment is parsed for its type (JSON
for numbers and lists, the text itself for strings).

Every setting is a typed field of :class:`Settings`, checked once when the process starts:
a bad value stops it with a message naming the setting, instead of failing the first
request that reads it.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from .signing import TOKEN_MAX_TTL

PREFIX = "MEDIAGRID"


class ConfigError(ValueError):
    """A setting with a value of the wrong type or out of range."""


def _positive() -> dict[str, Any]:
    return {"min": 0, "exclusive": True}


def _not_negative() -> dict[str, Any]:
    return {"min": 0, "exclusive": False}


@dataclass(frozen=True)
class Settings:
    """Every setting, typed, with its default. The key in files and env is the upper-case
    field name (``db_port`` is ``DB_PORT`` or ``MEDIAGRID_DB_PORT``)."""

    # MariaDB
    db_host: str = "127.0.0.1"
    db_port: int = field(default=3306, metadata={"min": 1, "max": 65535})
    db_unix_socket: str = ""
    db_user: str = "mediagrid"
    db_password: str = field(default="", repr=False)
    db_name: str = "mediagrid"
    db_connect_timeout: int = field(default=2, metadata=_positive())
    # TLS to MariaDB: the CA file that signed the server's certificate (empty: no TLS, as on
    # the loopback dev cluster's socket). The server's name (DB_HOST) must be in it.
    db_ssl_ca: str = ""
    # Shared secret storage nodes prove to trackers and id services.
    # The node master key (trackers, id services: they check nodes); a storage node holds
    # only NODE_KEY, its own credential derived from it (signing.node_key).
    cluster_secret: str = field(default="", repr=False)
    node_key: str = field(default="", repr=False)
    # Allowed clock skew for signed requests, seconds: a signed app request is valid this
    # long either side of its timestamp, and accepted once (its signature is kept as long).
    signature_max_skew: int = field(default=60, metadata=_not_negative())
    # The longest a bearer token may live, seconds: a token expiring later is refused.
    token_max_ttl: int = field(default=TOKEN_MAX_TTL, metadata=_positive())
    # Tracker
    heartbeat_interval: float = field(default=1.5, metadata=_positive())
    offline_after: float = field(default=5.0, metadata=_positive())
    assign_strategy: str = "most_free"
    tracker_state_path: str = ""
    tracker_snapshot_ttl: float = field(default=0.5, metadata=_not_negative())
    route_cache_size: int = field(default=100000, metadata=_positive())
    app_cache_ttl: float = field(default=10.0, metadata=_not_negative())
    # ID service
    id_segment_name: str = "files"
    id_segment_step: int = field(default=100000, metadata=_positive())
    id_max_batch: int = field(default=1000, metadata=_positive())
    # Storage shim and agent
    group: str = ""
    node_id: str = ""
    data_dir: str = ""
    public_url: str = ""
    # Free space a node keeps on its group volume: uploads that would eat into it get 507.
    reserve_bytes: int = field(default=2**30, metadata=_not_negative())
    # The largest upload body the shim takes (413 file_too_large beyond); the storage
    # nginx's client_max_body_size is set from the same value by the roles.
    max_upload_bytes: int = field(default=64 * 2**30, metadata=_positive())
    id_service_urls: list[str] = field(default_factory=list)
    id_prefetch: int = field(default=100, metadata=_positive())
    upload_chunk: int = field(default=1048576, metadata=_positive())
    trackers: list[str] = field(default_factory=list)
    heal_check_command: str = ""
    heal_volume: str = ""
    heal_brick_host: str = ""
    stale_part_seconds: float = field(default=900.0, metadata=_not_negative())
    # Stored objects no row refers to (a crash between a commit and an unlink): the agent
    # removes those unwritten for ORPHAN_GRACE_SECONDS, walking the volume every
    # ORPHAN_SWEEP_INTERVAL seconds (0 turns the walk off).
    orphan_grace_seconds: float = field(default=3600.0, metadata={"min": 60, "exclusive": False})
    orphan_sweep_interval: float = field(default=3600.0, metadata=_not_negative())
    # Media worker (mediagrid-worker, storage nodes): the cores its jobs may hold at once
    # (0: half the node's cores, at least one), how many jobs it runs at most at once, the
    # lease a claim holds without renewal, how often an idle worker looks for work, the
    # length of HLS segments, and the ABR ladder's rungs (names, see ``ladder``).
    worker_budget: float = field(default=0.0, metadata=_not_negative())
    worker_slots: int = field(default=2, metadata=_positive())
    worker_lease: float = field(default=30.0, metadata={"min": 2, "exclusive": False})
    worker_poll: float = field(default=1.0, metadata=_positive())
    hls_segment_seconds: float = field(default=4.0, metadata={"min": 1, "exclusive": False})
    media_ladder: list[str] = field(default_factory=lambda: ["1080p", "720p", "480p", "360p"])
    # Gateway: internal nginx location prefix for group roots (X-Accel-Redirect).
    accel_prefix: str = "/_groups"
    # Direct links (tracker mints, front nginx checks): the key they share, the location
    # nginx serves them under and the longest validity an app may ask for, seconds.
    # An empty key turns direct links off.
    link_key: str = field(default="", repr=False)
    link_prefix: str = "/d"
    link_max_ttl: int = field(default=604800, metadata=_positive())
    # HLS playback (issue 12): the location nginx serves renditions under, with the link
    # key's token in the path; a URL the media API gives stays valid HLS_TTL seconds plus
    # the video's duration, so a player that starts late in the window still reaches the end.
    hls_prefix: str = "/hls"
    hls_ttl: int = field(default=21600, metadata=_positive())
    # Live streaming (issue 13). Origins (storage nodes): the RTMP URL the agent reports
    # for the node (publishers and edges connect to it), the loopback URL of nginx-rtmp's
    # statistics it reads each heartbeat, and the directory where the shim's publish hooks
    # keep the node's live sessions (one file each; the agent reports them). Trackers: the
    # edges (front nodes' base URLs, plain HTTP and HTTPS) plays are sent to, the location they serve live HLS
    # under (the link key's token in the path), how long a stream key and a play URL stay
    # valid.
    rtmp_url: str = ""
    rtmp_stat_url: str = ""
    live_sessions_dir: str = ""
    live_edges: list[str] = field(default_factory=list)
    live_edges_tls: list[str] = field(default_factory=list)
    live_hls_prefix: str = "/lhls"
    live_key_ttl: int = field(default=86400, metadata=_positive())
    live_play_ttl: int = field(default=21600, metadata=_positive())
    # Origins: where nginx-rtmp records (its record_path; the shim's record_done hook moves
    # a finished part of a recorded stream into ready/, the agent stores it as a file of
    # the stream's owner); the loopback base URL of the live HLS the node's nginx serves
    # (the agent cuts snapshots from the newest segment). Snapshots are taken every
    # LIVE_SNAPSHOT_EVERY seconds unless the app or the stream says otherwise (0: none),
    # kept LIVE_SNAPSHOT_KEEP seconds in the origin's group volume.
    live_record_dir: str = ""
    live_hls_url: str = ""
    # Origins: a publisher whose picture has more pixels than this is dropped (its
    # heartbeat figures show the size), and the drop logged as picture_too_large; 0: no limit.
    live_max_pixels: int = field(default=4096 * 2160, metadata=_not_negative())
    live_snapshot_every: int = field(default=10, metadata=_not_negative())
    live_snapshot_keep: int = field(default=86400, metadata=_positive())
    # Origins: live transcoding on demand (``livetranscode``). The agent writes a wanted
    # rendition's HLS into LIVE_RENDITIONS_DIR (the node's nginx serves it to the edges)
    # and hears of the fetches of its playlists on LIVE_VIEWS_PORT (UDP, nginx's syslog
    # lines: the node's own on loopback, the edges' from LIVE_VIEWS_FROM, their addresses,
    # which also makes the port listen beyond loopback); a rendition unfetched for
    # LIVE_TRANSCODE_IDLE seconds stops. The edges' lines also count the HLS viewers.
    # Trackers: how long a viewer's play waits for a starting rendition's first segment.
    live_renditions_dir: str = ""
    live_views_port: int = field(default=0, metadata=_not_negative())
    live_views_from: list[str] = field(default_factory=list)
    live_transcode_idle: int = field(default=30, metadata=_positive())
    live_transcode_wait: float = field(default=10.0, metadata=_positive())
    # Origins: the edges' nginx-rtmp statistics (URLs, one per edge; an edge is known by the
    # URL's host, the address its pulls come from): each edge's RTMP players of a stream it
    # pulls from here are that stream's RTMP viewers.
    live_edge_stats: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from .assign import resolve  # the strategy's module is imported once, here

        try:
            resolve(self.assign_strategy)
        except (ValueError, ImportError, AttributeError) as err:
            raise ConfigError(f"{_where('ASSIGN_STRATEGY')}: {err}") from None
        for url in self.live_edge_stats:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"{_where('LIVE_EDGE_STATS')}: not an http(s) URL with a host: {url!r}")

    @classmethod
    def from_mapping(cls, conf: Mapping[str, Any]) -> Settings:
        """The settings in ``conf`` (upper-case keys; others are left alone), checked."""
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = f.name.upper()
            if key in conf:
                values[f.name] = _check(key, hints[f.name], conf[key], f.metadata)
        return cls(**values)

    def as_config(self) -> dict[str, Any]:
        """The settings as upper-case keys, the shape of Flask's ``app.config``."""
        return {k.upper(): v for k, v in asdict(self).items()}


def _where(key: str) -> str:
    return f"setting {key} (MEDIAGRID_{key} or {key} in the configuration file)"


def _check(key: str, kind: Any, value: Any, limits: Mapping[str, Any]) -> Any:
    """``value`` as a ``kind``, or a ConfigError naming the setting."""
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        checked: Any = value
    elif kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        checked = float(value)
    elif kind is str and isinstance(value, str):
        checked = value
    elif kind == list[str] and isinstance(value, list) and all(isinstance(v, str) for v in value):
        checked = list(value)
    else:
        what = {int: "an integer", float: "a number", str: "a string"}.get(kind, "a list of strings")
        raise ConfigError(f"{_where(key)}: expected {what}, got {value!r}")
    if "min" in limits:
        low = limits["min"]
        if checked < low or (limits.get("exclusive") and checked == low):
            bound = f"above {low}" if limits.get("exclusive") else f"at least {low}"
            raise ConfigError(f"{_where(key)}: must be {bound}, got {value!r}")
    if "max" in limits and checked > limits["max"]:
        raise ConfigError(f"{_where(key)}: must be at most {limits['max']}, got {value!r}")
    return checked


# The defaults as configuration keys (what the dev harness writes into its files).
DEFAULTS: dict[str, Any] = Settings().as_config()
_STRINGS = {f.name.upper() for f in fields(Settings) if get_type_hints(Settings)[f.name] is str}


def _parse(key: str, value: str) -> Any:
    if key in _STRINGS:
        return value  # a digits-only secret stays a string
    try:
        return json.loads(value)
    except ValueError:
        return value


def read(environ: Mapping[str, str] | None = None, path: str | None = None) -> dict[str, Any]:
    """The configuration as written, unchecked: defaults < file < ``MEDIAGRID_*`` env."""
    env = os.environ if environ is None else environ
    conf = dict(DEFAULTS)
    file_path = path or env.get(f"{PREFIX}_CONFIG", "")
    if file_path:
        with Path(file_path).open("rb") as fh:
            written = {k.upper(): v for k, v in tomllib.load(fh).items()}
        unknown = sorted(set(written) - set(DEFAULTS))
        if unknown:  # a misspelt setting would otherwise leave its default in force, silently
            raise ConfigError(f"{file_path}: unknown settings {', '.join(unknown)}")
        conf.update(written)
    prefix = f"{PREFIX}_"
    for key, value in env.items():
        if key.startswith(prefix) and key != f"{PREFIX}_CONFIG":
            name = key[len(prefix) :]
            conf[name] = _parse(name, value)
    return conf


def load_settings(environ: Mapping[str, str] | None = None, path: str | None = None) -> Settings:
    """The effective settings, checked (:class:`ConfigError` on a bad value)."""
    return Settings.from_mapping(read(environ, path))


def load(environ: Mapping[str, str] | None = None, path: str | None = None) -> dict[str, Any]:
    """The effective configuration as a mapping (``DB_*`` keys for :func:`db.connect`), checked."""
    conf = read(environ, path)
    conf.update(Settings.from_mapping(conf).as_config())
    return conf
