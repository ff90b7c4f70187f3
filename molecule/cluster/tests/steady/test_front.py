"""Front nodes: nginx, keepalived and a client mount of every group."""

import pytest

from lab import ADDRESSES, GROUPS, MEDIA_ROOT

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


def test_viewers_playlist_fetches_go_to_their_origin_s_agent(host):
    # one syslog access_log per origin, taken when the HLS URL names that origin
    site = host.file("/etc/nginx/sites-enabled/mediagrid-front.conf").content_string
    for hosts, _ in GROUPS.values():
        for name in hosts:
            assert f"syslog:server={ADDRESSES[name]}:8018,tag=mgviews" in site
            assert f'"~^{name} [A-Za-z0-9_-]{{8,32}}$" 1;' in site
