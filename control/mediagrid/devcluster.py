"""A whole mediagrid cluster on loopback, for ``make dev`` and the integration tests.

A throwaway MariaDB (own data dir and port), two trackers, an id service, two groups of
two storage shims each (a plain directory per group stands in for the group's replicated
volume, shared by both of its shims), one agent per storage node, a gateway and one nginx
serving the front and every storage node. Real processes, real ports, nothing mocked.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pymysql

from . import config, schema
from .db import connect

GROUPS = {"g1": ["s1a", "s1b"], "g2": ["s2a", "s2b"]}
APP = "demo"
# Errors nginx answers itself, rendered as the project's JSON errors.
JSON_ERROR_PAGES = [
    (400, "bad_request", "malformed request"),
    (403, "forbidden", "access denied"),
    (404, "not_found", "no such resource"),
    (405, "method_not_allowed", "method not allowed here"),
    (410, "link_expired", "this link has expired"),
    (413, "payload_too_large", "request body too large"),
    (414, "uri_too_long", "request URI too long"),
    (494, "headers_too_large", "request headers too large"),
    (502, "upstream_unavailable", "the service behind this node is not answering"),
    (503, "unavailable", "service unavailable"),
    (504, "upstream_timeout", "the service behind this node timed out"),
]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def find_base_port(span: int = 40) -> int:
    for _ in range(200):
        base = secrets.randbelow(20000) + 20000
        if all(port_free(base + i) for i in range(span)):
            return base
    raise RuntimeError("no free port range found")


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def _toml(conf: dict[str, Any]) -> str:
    lines = []
    for key, value in conf.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        elif isinstance(value, list):
            lines.append(f"{key} = [" + ", ".join(f'"{v}"' for v in value) + "]")
        else:
            lines.append(f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


@dataclass
class Service:
    name: str
    argv: list[str]
    port: int | None
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None


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
                }
                i += 1
        self.db_password = secrets.token_urlsafe(16)
        self.cluster_secret = secrets.token_urlsafe(24)
        self.link_key = secrets.token_urlsafe(24)
        self.app = APP
        self.app_secret = ""
        self.python = sys.executable

    # -- paths ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    def storage_url(self, node: str) -> str:
        return f"http://127.0.0.1:{self.storage_nodes[node]['port']}"

    def tracker_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.tracker_ports[i]}"

    def group_dir(self, group: str) -> Path:
        return self.root / "groups" / group

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

    def db(self) -> pymysql.connections.Connection:
        """A connection to the cluster's database as the application user (dict rows)."""
        return connect(self.db_conf)

    # -- MariaDB --------------------------------------------------------------------------
    def _mariadb_argv(self) -> list[str]:
        data = self.root / "mysql"
        argv = [
            shutil.which("mariadbd") or "/usr/sbin/mariadbd",
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={self.root / 'run' / 'mysql.sock'}",
            f"--port={self.db_port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.root / 'run' / 'mariadb.pid'}",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=128M",
            "--max-connections=500",
            f"--log-error={self.root / 'logs' / 'mariadb.log'}",
        ]
        if os.geteuid() == 0:
            argv.append("--user=root")
        return argv

    def _init_mariadb(self) -> None:
        data = self.root / "mysql"
        if (data / "mysql").exists():
            return
        data.mkdir(parents=True, exist_ok=True)
        installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        if installer is None:
            raise RuntimeError("MariaDB is not installed (apt-get install mariadb-server)")
        argv = [
            installer,
            "--no-defaults",
            f"--datadir={data}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ]
        if os.geteuid() == 0:
            argv.append("--user=root")
        subprocess.run(argv, check=True, capture_output=True)

    def _bootstrap_db(self) -> None:
        root = pymysql.connect(unix_socket=str(self.root / "run" / "mysql.sock"), user="root")
        try:
            with root.cursor() as cur:
                cur.execute("CREATE DATABASE IF NOT EXISTS mediagrid CHARACTER SET utf8mb4")
                for host in ("127.0.0.1", "localhost"):
                    cur.execute(
                        f"CREATE OR REPLACE USER 'mediagrid'@'{host}' IDENTIFIED BY %s",
                        (self.db_password,),
                    )
                    cur.execute(f"GRANT ALL ON mediagrid.* TO 'mediagrid'@'{host}'")
            root.commit()
        finally:
            root.close()
        schema.upgrade(self.db_conf)
        self.app_secret = secrets.token_urlsafe(32)
        conn = connect(self.db_conf)
        try:
            with conn.cursor() as cur:
                cur.execute("REPLACE INTO apps (app, secret) VALUES (%s, %s)", (self.app, self.app_secret))
            conn.commit()
        finally:
            conn.close()

    def add_app(self, app: str) -> str:
        secret = secrets.token_urlsafe(32)
        conn = connect(self.db_conf)
        try:
            with conn.cursor() as cur:
                cur.execute("REPLACE INTO apps (app, secret) VALUES (%s, %s)", (app, secret))
            conn.commit()
        finally:
            conn.close()
        return secret

    # -- services -------------------------------------------------------------------------
    def _write_conf(self, name: str, extra: dict[str, Any]) -> Path:
        conf = {
            "DB_HOST": "127.0.0.1",
            "DB_PORT": self.db_port,
            "DB_USER": "mediagrid",
            "DB_PASSWORD": self.db_password,
            "DB_NAME": "mediagrid",
            "CLUSTER_SECRET": self.cluster_secret,
            **self.settings,
            **extra,
        }
        path = self.root / "conf" / f"{name}.toml"
        path.write_text(_toml(conf))
        path.chmod(0o600)
        return path

    def gunicorn_argv(self, target: str, port: int, sync: bool = False) -> list[str]:
        """How every service is served here; benchmarks serve their baselines the same way.

        Short request/answer services (trackers, id service, gateway) run sync workers: no
        GIL contention between threads, so the tail latency stays low. The storage shim
        runs threads, since one upload can hold a worker for a long time.
        """
        argv = [self.python, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}"]
        if sync:
            argv += ["--workers", str(self.sync_workers), "--worker-class", "sync"]
        else:
            argv += ["--workers", str(self.workers), "--worker-class", "gthread", "--threads", "4"]
        # nginx in front enforces the request line and header limits (with JSON errors);
        # gunicorn's own, lower ones would answer HTML before the service could.
        argv += ["--limit-request-line", "0", "--limit-request-fields", "32768"]
        argv += ["--graceful-timeout", "5", "--log-level", "warning"]
        if self.access_log:
            argv += ["--access-logfile", "-"]
        return [*argv, target]

    def _gunicorn(
        self, name: str, target: str, port: int, extra: dict[str, Any], sync: bool = True
    ) -> Service:
        conf = self._write_conf(name, extra)
        argv = self.gunicorn_argv(target, port, sync)
        return Service(name, argv, port, {"MEDIAGRID_CONFIG": str(conf)})

    def _define(self) -> None:
        s: dict[str, Service] = {}
        s["mariadb"] = Service("mariadb", self._mariadb_argv(), self.db_port)
        trackers = [self.tracker_url(i) for i in range(len(self.tracker_ports))]
        for i, port in enumerate(self.tracker_ports):
            name = f"tracker{i + 1}"
            s[name] = self._gunicorn(
                name,
                "mediagrid.tracker:create_app()",
                port,
                {"TRACKER_STATE_PATH": str(self.root / "run" / f"{name}.sqlite"), "LINK_KEY": self.link_key},
            )
        s["ids"] = self._gunicorn("ids", "mediagrid.idservice:create_app()", self.ids_port, {})
        s["gateway"] = self._gunicorn("gateway", "mediagrid.gateway:create_app()", self.gateway_port, {})
        for name, node in self.storage_nodes.items():
            node_conf = {
                "GROUP": node["group"],
                "NODE_ID": name,
                "DATA_DIR": node["data_dir"],
                "PUBLIC_URL": self.storage_url(name),
                "TRACKERS": trackers,
                "ID_SERVICE_URLS": [self.url],
            }
            s[f"shim-{name}"] = self._gunicorn(
                f"shim-{name}", "mediagrid.storage:create_app()", node["shim_port"], node_conf, sync=False
            )
            agent_conf = self._write_conf(f"agent-{name}", node_conf)
            s[f"agent-{name}"] = Service(
                f"agent-{name}",
                [self.python, "-m", "mediagrid.agent", "--config", str(agent_conf)],
                None,
            )
        nginx_conf = self._render_nginx()
        s["nginx"] = Service(
            "nginx",
            [
                shutil.which("nginx") or "/usr/sbin/nginx",
                "-p",
                str(self.root / "nginx"),
                "-c",
                str(nginx_conf),
                "-e",
                str(self.root / "logs" / "nginx-error.log"),
            ],
            self.front_port,
        )
        self.services = s

    def _render_nginx(self) -> Path:
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("mediagrid", "templates"),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        text = env.get_template("nginx-dev.conf.j2").render(
            root=self.root,
            run_as_root=os.geteuid() == 0,
            tracker_ports=self.tracker_ports,
            ids_port=self.ids_port,
            gateway_port=self.gateway_port,
            front_port=self.front_port,
            accel_prefix=config.DEFAULTS["ACCEL_PREFIX"],
            link_prefix=config.DEFAULTS["LINK_PREFIX"],
            link_key=self.link_key,
            groups_root=self.root / "groups",
            storages=list(self.storage_nodes.values()),
            json_error_pages=JSON_ERROR_PAGES,
            bench_static=self.bench_static,
        )
        path = self.root / "nginx" / "nginx.conf"
        path.write_text(text)
        return path

    def start_service(self, name: str, timeout: float = 30.0) -> None:
        svc = self.services[name]
        if svc.proc is not None and svc.proc.poll() is None:
            return
        log = (self.root / "logs" / f"{name}.log").open("ab")
        env = {**os.environ, **svc.env}
        svc.proc = subprocess.Popen(
            svc.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=self.root,
        )
        log.close()
        if svc.port is not None:
            wait_port(svc.port, timeout, svc.proc)

    def stop_service(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        svc = self.services[name]
        if svc.proc is None or svc.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(svc.proc.pid, sig)
        try:
            svc.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(svc.proc.pid, signal.SIGKILL)
            svc.proc.wait(5)

    def reconfigure(self, name: str, extra: dict[str, Any]) -> None:
        """Restart a gunicorn service with settings added to its configuration file."""
        svc = self.services[name]
        path = Path(svc.env["MEDIAGRID_CONFIG"])
        import tomllib

        conf = tomllib.loads(path.read_text())
        conf.update(extra)
        path.write_text(_toml(conf))
        self.stop_service(name)
        self.start_service(name)

    def node_services(self, node: str) -> list[str]:
        return [f"shim-{node}", f"agent-{node}"]

    def start(self) -> None:
        for sub in ("run", "logs", "conf", "nginx/body", "mysql", "groups/g1", "groups/g2"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._init_mariadb()
        self._define()
        try:
            self.start_service("mariadb", 60)
            self._wait_db()
            self._bootstrap_db()
            for name in self.services:
                if name not in ("mariadb", "nginx") and not name.startswith("agent-"):
                    self.start_service(name)
            self.start_service("nginx")
            for name in self.services:
                if name.startswith("agent-"):
                    self.start_service(name)
            self.wait_active(len(self.storage_nodes), 30)
        except BaseException:
            self.stop()
            raise
        self._write_client_conf()

    def _wait_db(self) -> None:
        sock = self.root / "run" / "mysql.sock"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                pymysql.connect(unix_socket=str(sock), user="root").close()
                return
            except pymysql.MySQLError:
                time.sleep(0.2)
        raise TimeoutError("MariaDB did not start; see logs/mariadb.log")

    def wait_active(self, count: int, timeout: float) -> None:
        """Wait until every tracker sees ``count`` ACTIVE nodes."""
        import requests

        from .auth import signed_headers

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = True
            for i in range(len(self.tracker_ports)):
                headers = signed_headers(self.app, self.app_secret, "GET", "/api/v1/groups")
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

    def _write_client_conf(self) -> None:
        path = self.root / "client.toml"
        path.write_text(f'url = "{self.url}"\napp = "{self.app}"\nsecret = "{self.app_secret}"\n')
        path.chmod(0o600)

    def stop(self) -> None:
        for name in reversed(list(self.services)):
            self.stop_service(name)


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
