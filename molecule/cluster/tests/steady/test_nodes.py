"""Each lab node runs the services of its tier (one test per resource)."""
import pytest

from lab import GROUPS, MEDIA_ROOT, PREFIX


def groups_of(host):
    return host.ansible.get_variables()["group_names"]


@pytest.mark.parametrize("service", ["nginx", "keepalived"])
def test_front_and_storage_services_run(host, service):
    if not {"front", "storage"} & set(groups_of(host)):
        pytest.skip("not a front or storage node")
    assert host.service(service).is_running
    assert host.service(service).is_enabled


def test_front_nginx_listens(host):
    if "front" not in groups_of(host):
        pytest.skip("not a front node")
    assert host.socket("tcp://0.0.0.0:80").is_listening


def test_front_mounts_every_group(host):
    if "front" not in groups_of(host):
        pytest.skip("not a front node")
    for group in GROUPS:
        mount = host.mount_point(f"{MEDIA_ROOT}/{group}")
        assert mount.exists
        assert mount.filesystem == "fuse.glusterfs"
        assert "_netdev" in host.file("/etc/fstab").content_string


def test_storage_glusterd_runs(host):
    if "storage" not in groups_of(host):
        pytest.skip("not a storage node")
    assert host.service("glusterd").is_running


def test_storage_nginx_listens(host):
    if "storage" not in groups_of(host):
        pytest.skip("not a storage node")
    assert host.socket("tcp://0.0.0.0:8080").is_listening


def test_storage_mounts_its_group(host):
    if "storage" not in groups_of(host):
        pytest.skip("not a storage node")
    group = host.ansible.get_variables()["mediagrid_storage_group"]
    mount = host.mount_point(f"{MEDIA_ROOT}/{group}")
    assert mount.exists
    assert mount.filesystem == "fuse.glusterfs"


def test_db_mariadb_runs(host):
    if "db" not in groups_of(host):
        pytest.skip("not the database node")
    assert host.service("mariadb").is_running
    assert host.socket(f"tcp://{PREFIX}.15:3306").is_listening


def test_db_has_app_database(host):
    if "db" not in groups_of(host):
        pytest.skip("not the database node")
    out = host.check_output("mysql -N -e 'SHOW DATABASES'")
    assert "mediagrid" in out.split()
    assert "test" not in out.split()
