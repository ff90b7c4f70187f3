"""Front nodes: nginx, keepalived and a client mount of every group."""

import pytest

from lab import GROUPS, MEDIA_ROOT

testinfra_hosts = ["ansible://front"]


@pytest.mark.parametrize(
    "service",
    ["nginx", "mediagrid-rtmp", "keepalived", "mediagrid-tracker", "mediagrid-ids", "mediagrid-gateway"],
)
def test_service_runs(host, service):
    assert host.service(service).is_running
    assert host.service(service).is_enabled


def test_nginx_listens(host):
    assert host.socket("tcp://0.0.0.0:80").is_listening


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_mounts_group(host, group):
    mount = host.mount_point(f"{MEDIA_ROOT}/{group}")
    assert mount.exists
    assert mount.filesystem == "fuse.glusterfs"


def test_mounts_are_netdev(host):
    fstab = [line for line in host.file("/etc/fstab").content_string.splitlines() if "glusterfs" in line]
    assert len(fstab) == len(GROUPS)
    assert all("_netdev" in line for line in fstab)
