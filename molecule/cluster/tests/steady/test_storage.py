"""Storage nodes: glusterd, nginx, keepalived and their group's mount."""

import pytest

from lab import MEDIA_ROOT

testinfra_hosts = ["ansible://storage"]


@pytest.mark.parametrize(
    "service", ["glusterd", "nginx", "keepalived", "mediagrid-storage", "mediagrid-agent"]
)
def test_service_runs(host, service):
    assert host.service(service).is_running
    assert host.service(service).is_enabled


def test_nginx_listens(host):
    assert host.socket("tcp://0.0.0.0:8080").is_listening


def test_mounts_its_group(host):
    # The inventory group storage_<name> declares the node's group <name>.
    (inv_group,) = [g for g in host.ansible.get_variables()["group_names"] if g.startswith("storage_")]
    group = inv_group.removeprefix("storage_")
    mount = host.mount_point(f"{MEDIA_ROOT}/{group}")
    assert mount.exists
    assert mount.filesystem == "fuse.glusterfs"
    assert "_netdev" in host.file("/etc/fstab").content_string
