"""The dev cluster runs what the roles deploy: the nginx role's files and server blocks, and
the gunicorn settings of the nodes' systemd units."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mediagrid_dev import DevCluster, conffile
from mediagrid_dev.role import Role

# services as the dev cluster names one of each kind
DEV_NAMES = {"tracker": "tracker1", "ids": "ids", "gateway": "gateway", "storage": "shim-s1a"}
# what the deployment (or the dev cluster) chooses: the address, the worker count, logging
DEPLOYMENT = {"bind", "workers", "accesslog"}


def test_config_files_keep_every_character(tmp_path: Path) -> None:
    conf = {"DB_PASSWORD": "a\"b\\c\nd'e", "TRACKERS": ['http://h/"x"'], "N": 3, "F": 1.5, "ON": True}
    path = conffile.write(tmp_path / "service.toml", conf)
    assert conffile.read(path) == conf
    assert path.stat().st_mode & 0o777 == 0o600


def _gunicorn_settings(argv: list[str], env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        [*argv, "--print-config"], env={**os.environ, **env}, capture_output=True, text=True, check=True
    ).stdout
    pairs = (line.split(" = ", 1) for line in out.splitlines() if " = " in line)
    return {key.strip(): value.strip() for key, value in pairs if key.strip() not in DEPLOYMENT}


@pytest.mark.integration
@pytest.mark.parametrize("service", sorted(DEV_NAMES))
def test_services_run_with_the_units_gunicorn_settings(cluster: DevCluster, service: str) -> None:
    unit = Role("mediagrid").render("mediagrid.service.j2", {"item": service, "mediagrid_data_dir": "/srv/g"})
    lines = unit.splitlines()
    exec_start = next(line for line in lines if line.startswith("ExecStart=")).split("=", 1)[1]
    unit_env = dict(line.split("=", 2)[1:] for line in lines if line.startswith("Environment="))
    gunicorn, *options = shlex.split(exec_start)
    assert gunicorn.endswith("/bin/gunicorn")
    dev = cluster.services[DEV_NAMES[service]]
    # --print-config loads the application, which reads its configuration file
    unit_env["MEDIAGRID_CONFIG"] = dev.env["MEDIAGRID_CONFIG"]
    deployed = _gunicorn_settings([sys.executable, "-m", "gunicorn", *options], unit_env)
    assert deployed["wsgi_app"].startswith("mediagrid.")
    assert _gunicorn_settings(dev.argv, dev.env) == deployed


@pytest.mark.integration
def test_each_nginx_runs_the_roles_files(cluster: DevCluster) -> None:
    files = Role("nginx").path / "files"
    shared = [*sorted((files / "snippets").iterdir()), *sorted((files / "conf.d").iterdir())]
    nginxes = [svc for name, svc in cluster.services.items() if name.startswith("nginx-")]
    assert len(nginxes) == 1 + len(cluster.storage_nodes)
    for svc in nginxes:
        dump = subprocess.run([*svc.argv, "-T"], capture_output=True, text=True, check=True).stdout
        for path in shared:
            assert path.read_text() in dump, f"{svc.name} does not include the role's {path.name}"
        site = "front" if svc.name == "nginx-front" else "storage"
        assert f"/mediagrid-{site}.conf:\n#\n# Rendered from roles/" in dump


def _blocks(conf: str) -> list[tuple[str, list[str]]]:
    """Each block of an nginx configuration (its header, e.g. ``location /x/``) with its own
    directives (not its inner blocks'), comments left out."""
    text = re.sub(r"(?m)(^|\s)#.*$", r"\1", conf)
    stack: list[tuple[str, list[str]]] = [("main", [])]
    done, word = [], ""
    for ch in text:
        if ch == "{":
            stack.append((" ".join(word.split()), []))
            word = ""
        elif ch == ";":
            stack[-1][1].append(" ".join(word.split()))
            word = ""
        elif ch == "}":
            done.append(stack.pop())
            word = ""
        else:
            word += ch
    return [*done, *stack]


@pytest.mark.integration
def test_a_location_that_sets_a_proxy_header_keeps_the_others(cluster: DevCluster) -> None:
    """A proxy_set_header in a location drops every one it would inherit (Host, the
    client's address, keep-alive): such a location includes mediagrid-proxy.conf again."""
    sites = [cluster.root / "nginx" / "front" / "mediagrid-front.conf"]
    sites += [cluster.root / "nginx" / name / "mediagrid-storage.conf" for name in cluster.storage_nodes]
    checked = 0
    for site in sites:
        for header, directives in _blocks(site.read_text()):
            if any(d.startswith("proxy_set_header ") for d in directives):
                checked += 1
                again = f"include {cluster.root / 'nginx' / 'snippets' / 'mediagrid-proxy.conf'}"
                assert again in directives, f"{site.name}: {header}"
    assert checked >= 2  # the front's /files/ and on-demand HLS
