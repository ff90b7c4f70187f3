"""Cross-node behaviour of the converged cluster."""

import json
import tomllib
import uuid

import pytest

from lab import (
    BRICKS_ROOT,
    CLUSTER_VIP,
    DB_HOST,
    FRONT,
    GROUPS,
    MEDIA_ROOT,
    has_address,
    http_get,
    node,
)


def test_file_written_on_s1a_mount_is_in_s1b_brick():
    name = f"probe-{uuid.uuid4().hex}.txt"
    payload = f"mediagrid {name}"
    node("s1a").check_output(f"printf '%s' '{payload}' > {MEDIA_ROOT}/g1/{name} && sync")
    assert node("s1b").file(f"{BRICKS_ROOT}/g1/brick/{name}").content_string == payload
    assert node("s1a").file(f"{BRICKS_ROOT}/g1/brick/{name}").content_string == payload


def test_groups_are_separate_volumes():
    name = f"probe-{uuid.uuid4().hex}.txt"
    node("s2a").check_output(f"echo g2 > {MEDIA_ROOT}/g2/{name}")
    assert node("s2b").file(f"{BRICKS_ROOT}/g2/brick/{name}").exists
    assert not node("s1a").file(f"{BRICKS_ROOT}/g1/brick/{name}").exists


def test_volumes_are_replicated_with_short_ping_and_heal_timeouts():
    for group, (members, _) in GROUPS.items():
        info = node(members[0]).check_output(f"gluster volume info {group}")
        assert f"Number of Bricks: 1 x {len(members)} = {len(members)}" in info
        assert "Status: Started" in info
        for option, value in (("network.ping-timeout", "2"), ("cluster.heal-timeout", "10")):
            got = node(members[0]).check_output(f"gluster volume get {group} {option}")
            assert got.splitlines()[-1].split()[1] == value, option


def test_cluster_vip_on_exactly_one_front_node():
    holders = [name for name in FRONT if has_address(name, CLUSTER_VIP)]
    assert len(holders) == 1


def test_group_vip_on_exactly_one_group_node():
    for members, vip in GROUPS.values():
        assert len([name for name in members if has_address(name, vip)]) == 1


def test_nginx_answers_on_cluster_vip():
    status, served_by, body = http_get(CLUSTER_VIP, 80, "/healthz")
    assert status == 200
    assert served_by in FRONT
    assert body.startswith(b"ok ")


def test_nginx_answers_on_group_vips():
    for members, vip in GROUPS.values():
        status, served_by, _ = http_get(vip, 8080, "/healthz")
        assert status == 200
        assert served_by in members


def test_control_plane_answers_through_vip():
    status, _, body = http_get(CLUSTER_VIP, 80, "/api/v1/health")
    assert status == 200
    assert json.loads(body)["db"] == "ok"
    status, _, body = http_get(CLUSTER_VIP, 80, "/api/v1/groups")
    assert status == 401 and json.loads(body)["error"]["code"] == "missing_credentials"


def test_group_files_only_through_the_gateway():
    name = f"probe-{uuid.uuid4().hex}.txt"
    node("s1b").check_output(f"echo via-vip > {MEDIA_ROOT}/g1/{name}")
    status, _, _ = http_get(CLUSTER_VIP, 80, f"/_groups/g1/{name}")
    assert status == 404


SCHEMA_OWNER = "mediagrid"  # group_vars/all/wiring.yml: mariadb_app_user


def _db_login(name: str, service: str) -> tuple[str, str]:
    conf = tomllib.loads(node(name).file(f"/etc/mediagrid/{service}.toml").content_string)
    return conf["DB_USER"], conf["DB_PASSWORD"]


def _sql(name: str, login: tuple[str, str], statement: str):
    # The password goes in the environment (MYSQL_PWD), never on a command line.
    return node(name).run(
        "MYSQL_PWD=%s mysql -h %s -u %s -N -e %s mediagrid", login[1], DB_HOST, login[0], statement
    )


@pytest.mark.parametrize(("name", "service"), [("tracker1", "tracker"), ("s1a", "storage"), ("s2b", "agent")])
def test_service_users_read_and_write_rows_only(name, service):
    # Each tier's services log in as their own user, which may read and write rows and
    # nothing else: no schema change, no other database, no users or grants.
    login = _db_login(name, service)
    assert login[0] != SCHEMA_OWNER
    assert _sql(name, login, "SELECT COUNT(*) FROM apps").rc == 0
    assert _sql(name, login, "CREATE TABLE probe (x INT)").rc != 0
    assert _sql(name, login, "DROP TABLE files").rc != 0
    assert _sql(name, login, "SELECT COUNT(*) FROM mysql.user").rc != 0


def test_database_users_log_in_only_from_their_hosts():
    front, storage, owner = (
        _db_login("tracker1", "tracker"),
        _db_login("s1a", "storage"),
        _db_login("tracker1", "admin"),
    )
    assert _sql("s1a", front, "SELECT 1").rc != 0
    assert _sql("tracker2", storage, "SELECT 1").rc != 0
    assert _sql("tracker2", owner, "SELECT 1").rc != 0  # only the schema host (tracker1)
    assert _sql("s1a", owner, "SELECT 1").rc != 0
    assert _sql("tracker1", owner, "SELECT COUNT(*) FROM files").rc == 0
