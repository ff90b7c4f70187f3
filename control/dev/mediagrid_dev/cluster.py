"""A whole mediagrid cluster on loopback, for ``make dev``, the loopback tests and the benchmarks.

A throwaway MariaDB (own data dir and port), two trackers, an id service, two groups of
two storage shims each (a plain directory per group stands in for the group's replicated
volume, shared by both of its shims), one agent per storage node, a gateway, and an nginx
per node (the front and every storage node) configured by the nginx role's own files.
Real processes, real ports, nothing mocked.
"""

from __future__ import annotations

import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from mediagrid import apps, config, signing
from mediagrid.db import Connection, connect
from mediagrid.signing import signed_headers

from . import conffile
from .mariadb import MariaDB
from .nginx import Nginx
from .ports import find_base_port
from .services import Service, gunicorn

GROUPS = {"g1": ["s1a", "s1b"], "g2": ["s2a", "s2b"]}
APP = "demo"
ADMIN_APP = "ops"


@dataclass
class DevCluster:
    root: Path
    base_port: int = 0
    workers: int = 2
    bench_static: bool = False
    access_log: bool = True
    sync_workers: int = 2
    settings: dict[str, Any] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.base_port = self.base_port or find_base_port()
        b = self.base_port
        self.front_port = b
        self.static_port = b + 1  # benchmark baseline (bench_static)
        # the front's live edge: RTMP players, and its nginx-rtmp statistics
        self.front_rtmp_port = b + 2
        self.front_rtmp_stat_port = b + 3
        self.db_port = b + 6
        self.tracker_ports = [b + 11, b + 12]
        self.ids_port = b + 13
        self.gateway_port = b + 14
        self.storage_nodes: dict[str, dict[str, Any]] = {}
        i = 0
        for group, nodes in GROUPS.items():
            for name in nodes:
                self.storage_nodes[name] = {
                    "name": name,
                    "group": group,
                    "shim_port": b + 21 + i,
                    "port": b + 31 + i,
                    "data_dir": str(self.root / "groups" / group),
                    # a live origin: RTMP publishers (and the edge's pulls), nginx-rtmp's
                    # statistics and control interface, where it cuts HLS and records
                    "rtmp_port": b + 25 + i,
                    "rtmp_stat_port": b + 35 + i,
                    "live_hls_dir": str(self.root / "live" / name / "hls"),
                    "live_record_dir": str(self.root / "live" / name / "rec"),
                    "live_renditions_dir": str(self.root / "live" / name / "renditions"),
                    "live_views_port": b + 41 + i,
                }
                i += 1
        self.mariadb = MariaDB(self.root, self.db_port)
        self.db_password = secrets.token_urlsafe(16)
        self.cluster_secret = secrets.token_urlsafe(24)
        self.link_key = secrets.token_urlsafe(24)
        self.app = APP
        self.app_secret = ""
        # an admin app (sees the topology, /api/v1/groups), as `app create ops --admin`
        self.admin_app = ADMIN_APP
        self.admin_secret = ""
        self.python = sys.executable

    # -- addresses ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    @property
    def static_url(self) -> str:
        """The group volumes served statically by the front nginx (with bench_static)."""
        return f"http://127.0.0.1:{self.static_port}/_bench_static"

    def storage_url(self, node: str) -> str:
        return f"http://127.0.0.1:{self.storage_nodes[node]['port']}"

    def tracker_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.tracker_ports[i]}"

    def group_dir(self, group: str) -> Path:
        return self.root / "groups" / group

    # -- database -------------------------------------------------------------------------
    @property
    def db_conf(self) -> dict[str, Any]:
        conf = dict(config.DEFAULTS)
        conf.update(
            DB_HOST="127.0.0.1",
            DB_PORT=self.db_port,
            DB_USER="mediagrid",
            DB_PASSWORD=self.db_password,
            DB_NAME="mediagrid",
        )
        return conf

    def db(self) -> Connection:
        """A connection to the cluster's database as the application user (dict rows)."""
        return connect(self.db_conf)

    def add_app(self, app: str, admin: bool = False) -> str:
        """A new app (tenant) with a fresh secret, as ``mediagrid-admin app create`` makes it."""
        conn = self.db()
        try:
            with conn.cursor() as cur:
                secret = apps.create(cur, app, secrets.token_urlsafe(32))
                apps.set_admin(cur, app, admin)
            conn.commit()
        finally:
            conn.close()
        return secret

    # -- services -------------------------------------------------------------------------
    def node_key(self, node: str) -> str:
        """A storage node's own credential, as the playbook issues it: bound to its id and
        address (every node of the dev cluster is on 127.0.0.1)."""
        return signing.node_key(self.cluster_secret, node, "127.0.0.1")

    def _write_conf(self, name: str, extra: dict[str, Any]) -> Path:
        # the node master key only where nodes are checked; a node holds its own key
        master = {} if "NODE_KEY" in extra else {"CLUSTER_SECRET": self.cluster_secret}
        conf = {
            "DB_HOST": "127.0.0.1",
            "DB_PORT": self.db_port,
            "DB_USER": "mediagrid",
            "DB_PASSWORD": self.db_password,
            "DB_NAME": "mediagrid",
            **master,
            **self.settings,
            **extra,
        }
        return conffile.write(self.root / "conf" / f"{name}.toml", conf)

    def _gunicorn(self, name: str, service: str, port: int, extra: dict[str, Any]) -> Service:
        workers = self.workers if service == "storage" else self.sync_workers
        svc = gunicorn(name, service, port, workers=workers, access_log=self.access_log)
        svc.env["MEDIAGRID_CONFIG"] = str(self._write_conf(name, extra))
        return svc

    def _define(self) -> None:
        s: dict[str, Service] = {}
        s["mariadb"] = Service("mariadb", self.mariadb.argv(), self.db_port)
        trackers = [self.tracker_url(i) for i in range(len(self.tracker_ports))]
        for i, port in enumerate(self.tracker_ports):
            name = f"tracker{i + 1}"
            state = str(self.root / "run" / f"{name}.sqlite")
            s[name] = self._gunicorn(
                name, "tracker", port, {"TRACKER_STATE_PATH": state, "LINK_KEY": self.link_key}
            )
        s["ids"] = self._gunicorn("ids", "ids", self.ids_port, {})
        s["gateway"] = self._gunicorn("gateway", "gateway", self.gateway_port, {})
        for name, node in self.storage_nodes.items():
            node_conf = {
                "GROUP": node["group"],
                "NODE_ID": name,
                "DATA_DIR": node["data_dir"],
                "PUBLIC_URL": self.storage_url(name),
                "TRACKERS": trackers,
                "ID_SERVICE_URLS": [self.url],
                "NODE_KEY": self.node_key(name),
                # a live origin (the nginx role's rtmp.conf.j2 calls the shim's hooks)
                "RTMP_URL": f"rtmp://127.0.0.1:{node['rtmp_port']}",
                "RTMP_STAT_URL": f"http://127.0.0.1:{node['rtmp_stat_port']}/rtmp-stat",
                "LIVE_SESSIONS_DIR": str(self.root / "run" / f"live-{name}"),
                "LIVE_RECORD_DIR": node["live_record_dir"],
                "LIVE_HLS_URL": f"http://127.0.0.1:{node['port']}/live-hls",
                # small, so a test's too large picture costs little to encode
                "LIVE_MAX_PIXELS": 640 * 480,
                # live transcodes on demand; an unwatched rendition stops after 6 s
                "LIVE_RENDITIONS_DIR": node["live_renditions_dir"],
                "LIVE_VIEWS_PORT": node["live_views_port"],
                "LIVE_TRANSCODE_IDLE": 6,
            }
            s[f"shim-{name}"] = self._gunicorn(f"shim-{name}", "storage", node["shim_port"], node_conf)
            # one core of media budget: a second live transcode on a node is refused
            agent_conf = self._write_conf(f"agent-{name}", {**node_conf, "WORKER_BUDGET": 1.0})
            s[f"agent-{name}"] = Service(
                f"agent-{name}", [self.python, "-m", "mediagrid.agent", "--config", str(agent_conf)], None
            )
        # As on the lab: a front node's nginx proxies to its own tracker; the other tracker
        # is reached directly (by the agents and the tests), as another front node's is.
        nginx = Nginx(
            self.root,
            {"nginx_front_media_root": str(self.root / "groups"), "nginx_link_key": self.link_key},
            self.static_port if self.bench_static else 0,
        )
        front = {
            "nginx_front_port": self.front_port,
            "nginx_front_tracker_port": self.tracker_ports[0],
            "nginx_front_ids_port": self.ids_port,
            "nginx_front_gateway_port": self.gateway_port,
            # the live edge: the origins by node id, with their storage server blocks
            "nginx_rtmp": "edge",
            "nginx_rtmp_port": self.front_rtmp_port,
            "nginx_rtmp_stat_port": self.front_rtmp_stat_port,
            "nginx_live_origins": {n: f"127.0.0.1:{i['port']}" for n, i in self.storage_nodes.items()},
            # each viewer's playlist fetch, told to its origin's agent (its viewer count)
            "nginx_live_views": {
                n: f"127.0.0.1:{i['live_views_port']}" for n, i in self.storage_nodes.items()
            },
        }
        s["nginx-front"] = nginx.node("front", "front", self.front_port, front)
        s["rtmp-front"] = nginx.rtmp("front", self.front_rtmp_port, front)
        for name, node in self.storage_nodes.items():
            storage = {
                "nginx_storage_port": node["port"],
                "nginx_storage_shim_port": node["shim_port"],
                "nginx_storage_group": node["group"],
                "nginx_storage_root": node["data_dir"],
                # a live origin; its edge (the front) reaches it on loopback
                "nginx_rtmp": "origin",
                "nginx_rtmp_port": node["rtmp_port"],
                "nginx_rtmp_stat_port": node["rtmp_stat_port"],
                "nginx_live_hls_path": node["live_hls_dir"],
                "nginx_live_record_path": node["live_record_dir"],
                "nginx_live_renditions_path": node["live_renditions_dir"],
                "nginx_live_views_port": node["live_views_port"],
                # short parts, as on the lab, so a test sees a stream cut into several
                "nginx_live_record_interval": "10s",
            }
            s[f"nginx-{name}"] = nginx.node(name, "storage", node["port"], storage)
            s[f"rtmp-{name}"] = nginx.rtmp(name, node["rtmp_port"], storage)
        self.services = s

    def start_service(self, name: str, timeout: float = 30.0) -> None:
        self.services[name].start(self.root, self.root / "logs" / f"{name}.log", timeout)

    def stop_service(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        self.services[name].stop(sig, timeout)

    def reconfigure(self, name: str, extra: dict[str, Any]) -> None:
        """Restart a gunicorn service with settings added to its configuration file."""
        conffile.update(Path(self.services[name].env["MEDIAGRID_CONFIG"]), extra)
        self.stop_service(name)
        self.start_service(name)

    def node_services(self, node: str) -> list[str]:
        return [f"shim-{node}", f"agent-{node}"]

    def start(self) -> None:
        for sub in ("run", "logs", "conf", "mysql", *(f"groups/{g}" for g in GROUPS)):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # as the nginx role creates them on an origin (nginx-rtmp makes no parents)
        for node in self.storage_nodes.values():
            for sub in ("live_hls_dir", "live_record_dir"):
                Path(node[sub]).mkdir(parents=True, exist_ok=True)
        self.mariadb.init()
        self._define()
        try:
            self.start_service("mariadb", 60)
            self.mariadb.wait()
            self.mariadb.bootstrap(self.db_conf)
            self.app_secret = self.add_app(self.app)
            self.admin_secret = self.add_app(self.admin_app, admin=True)
            # services, then the nginx in front of them, then the agents that heartbeat
            order = sorted(self.services, key=lambda n: (n.startswith("agent-"), n.startswith("nginx-")))
            for name in order:
                if name != "mariadb":
                    self.start_service(name)
            self.wait_active(len(self.storage_nodes), 30)
        except BaseException:
            self.stop()
            raise
        conffile.write(
            self.root / "client.toml", {"url": self.url, "app": self.app, "secret": self.app_secret}
        )

    def wait_active(self, count: int, timeout: float) -> None:
        """Wait until every tracker sees ``count`` ACTIVE nodes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = True
            for i in range(len(self.tracker_ports)):
                headers = signed_headers(self.admin_app, self.admin_secret, "GET", "/api/v1/groups")
                try:
                    body = requests.get(
                        self.tracker_url(i) + "/api/v1/groups", headers=headers, timeout=2
                    ).json()
                except (requests.RequestException, ValueError):
                    ok = False
                    break
                active = sum(m["state"] == "ACTIVE" for g in body.get("groups", []) for m in g["members"])
                ok = ok and active >= count
            if ok:
                return
            time.sleep(0.2)
        raise TimeoutError(f"fewer than {count} ACTIVE storage nodes after {timeout}s")

    def stop(self) -> None:
        for name in reversed(list(self.services)):
            self.stop_service(name)
