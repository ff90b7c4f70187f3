"""A throwaway MariaDB for one dev cluster: its own data directory, socket and port."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from mediagrid import schema


@dataclass
class MariaDB:
    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "mysql"

    @property
    def socket(self) -> Path:
        return self.root / "run" / "mysql.sock"

    def argv(self) -> list[str]:
        argv = [
            shutil.which("mariadbd") or "/usr/sbin/mariadbd",
            "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
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

    def init(self) -> None:
        """Create the system tables once (root logs in over the socket, no password)."""
        if (self.data_dir / "mysql").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        if installer is None:
            raise RuntimeError("MariaDB is not installed (apt-get install mariadb-server)")
        argv = [
            installer,
            "--no-defaults",
            f"--datadir={self.data_dir}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ]
        if os.geteuid() == 0:
            argv.append("--user=root")
        subprocess.run(argv, check=True, capture_output=True)

    def wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pymysql.connect(unix_socket=str(self.socket), user="root").close()
                return
            except pymysql.MySQLError:
                time.sleep(0.2)
        raise TimeoutError("MariaDB did not start; see logs/mariadb.log")

    def bootstrap(self, conf: Mapping[str, Any]) -> None:
        """The database and its user from ``conf`` (DB_NAME, DB_USER, DB_PASSWORD), then
        the schema, created as ``mediagrid-admin schema upgrade`` does on the lab."""
        name, user = conf["DB_NAME"], conf["DB_USER"]
        root = pymysql.connect(unix_socket=str(self.socket), user="root")
        try:
            with root.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
                for host in ("127.0.0.1", "localhost"):
                    cur.execute(
                        f"CREATE OR REPLACE USER '{user}'@'{host}' IDENTIFIED BY %s", (conf["DB_PASSWORD"],)
                    )
                    cur.execute(f"GRANT ALL ON `{name}`.* TO '{user}'@'{host}'")
            root.commit()
        finally:
            root.close()
        schema.upgrade(conf)
