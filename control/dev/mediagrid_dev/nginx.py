"""The dev cluster's nginx: the nginx role's own files, and one nginx per node as on the lab.

The plain files of roles/nginx/files (the snippets every server block includes, the
access log format) are linked as they are. The role's templates (the front and storage
server blocks, the JSON error pages, the direct links' key) are rendered with Jinja2 from
the role's defaults, with the dev cluster's ports and paths over them, as Ansible renders
them on a node. What the loopback tests run is what the role deploys; only the main
configuration (templates/dev-nginx.conf.j2, the node's /etc/nginx/nginx.conf) is the harness's.

Live streaming runs as on the nodes too: nginx-rtmp in an nginx of its own per node (an
origin on each storage node, an edge on the front), configured by the role's rtmp.conf.j2,
which is that nginx's whole configuration (mediagrid-rtmp.service on a node).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .role import Role
from .services import Service


def _link_all(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.iterdir()):
        (dst / path.name).symlink_to(path)


class Nginx:
    """Writes every node's configuration under ``root``/nginx and defines its service."""

    def __init__(self, root: Path, shared: Mapping[str, Any], bench_static_port: int = 0) -> None:
        self.root = root
        self.dir = root / "nginx"
        self.role = Role("nginx", Path(__file__).parent / "templates")
        self.bench_static_port = bench_static_port
        self.shared = {
            "nginx_listen_address": "127.0.0.1",
            "nginx_access_log": str(root / "logs" / "nginx-access.log"),
            "nginx_snippets_dir": str(self.dir / "snippets"),
            **shared,
        }
        if self.dir.exists():
            shutil.rmtree(self.dir)
        # the role's configure tasks, for the files every node shares
        _link_all(self.role.path / "files" / "conf.d", self.dir / "conf.d")
        _link_all(self.role.path / "files" / "snippets", self.dir / "snippets")
        self._render("json-errors.conf.j2", self.dir / "snippets" / "mediagrid-json-errors.conf", {})
        key = self.dir / "snippets" / "mediagrid-link-key.conf"
        self._render("link-key.conf.j2", key, {})
        key.chmod(0o600)  # as the role installs it: the key opens every direct link

    def _render(self, template: str, dest: Path, overrides: Mapping[str, Any]) -> None:
        dest.write_text(self.role.render(template, {**self.shared, **overrides}))

    def _player(self, dest: Path, node_vars: Mapping[str, Any]) -> None:
        """The player page, as the role's configure tasks install it on a front node: its
        files, its page (rendered: it names the HLS prefix), and hls.js with its licence
        from the controller's build (``make player``). Linked, so a build made after the
        cluster started is served too."""
        _link_all(self.role.path / "files" / "player", dest)
        self._render("player.html.j2", dest / "index.html", node_vars)
        hlsjs = Path(self.role.vars({**self.shared, **node_vars})["nginx_player_hlsjs"]).resolve()
        (dest / "hls.light.min.js").symlink_to(hlsjs)
        (dest / "hls.js-LICENSE.txt").symlink_to(hlsjs.parent / "LICENSE")

    def rtmp(self, name: str, port: int, overrides: Mapping[str, Any]) -> Service:
        """One node's live streaming nginx (nginx-rtmp, one worker): the role's rtmp.conf.j2
        with ``overrides`` (nginx_rtmp: origin or edge, the node's ports and paths), as
        mediagrid-rtmp.service runs it."""
        prefix = self.dir / name / "rtmp"
        prefix.mkdir(parents=True)
        node_vars = {
            "inventory_hostname": name,
            # workers as the node's nginx here runs them (dev-nginx.conf.j2)
            "nginx_worker_user": "root" if os.geteuid() == 0 else "",
            "nginx_rtmp_pid": str(prefix / "nginx.pid"),
            "nginx_rtmp_temp_path": str(prefix),
            "nginx_rtmp_error_log": str(self.root / "logs" / "rtmp-error.log"),
            **overrides,
        }
        module = Path(self.role.vars({**self.shared, **node_vars})["nginx_rtmp_module"])
        if not module.is_file():
            raise RuntimeError(
                f"no nginx-rtmp module at {module}: install the Debian package libnginx-mod-rtmp"
                " (scripts/host-deps.sh installs what the dev cluster needs)"
            )
        conf = prefix / "nginx.conf"
        self._render("rtmp.conf.j2", conf, node_vars)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        argv = [nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]
        return Service(f"rtmp-{name}", [*argv, "-e", str(self.root / "logs" / "rtmp-error.log")], port)

    def node(self, name: str, site: str, port: int, overrides: Mapping[str, Any]) -> Service:
        """One node's nginx serving the role's ``site`` (front or storage) server block."""
        prefix = self.dir / name
        www = prefix / "www"
        www.mkdir(parents=True)
        node_vars = {
            "inventory_hostname": name,
            "nginx_www_root": str(www),
            "nginx_live_cache_path": str(prefix / "live-cache"),  # an edge's caches
            **overrides,
        }
        self._render("index.html.j2", www / "index.html", node_vars)
        if site == "front":
            self._player(www / "player", node_vars)
        self._render(f"{site}.conf.j2", prefix / f"mediagrid-{site}.conf", node_vars)
        main = self.role.env.get_template("dev-nginx.conf.j2").render(
            node=name,
            run_as_root=os.geteuid() == 0,
            prefix=prefix,
            logs=self.root / "logs",
            conf_d=self.dir / "conf.d",
            site=prefix / f"mediagrid-{site}.conf",
            bench_static_port=self.bench_static_port if site == "front" else 0,
            groups_root=self.root / "groups",
        )
        (prefix / "nginx.conf").write_text(main)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        argv = [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
        return Service(f"nginx-{name}", [*argv, "-e", str(self.root / "logs" / "nginx-error.log")], port)
