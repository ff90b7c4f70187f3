"""Cross-node behaviour of the converged cluster."""

import json
import uuid

from lab import (
    BRICKS_ROOT,
    CLUSTER_VIP,
    DB_HOST,
    FRONT,
    GROUPS,
    MEDIA_ROOT,
    has_address,
    http_get,
    lab_secret,
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


def test_app_user_reaches_database_from_front():
    password = lab_secret("vault_mariadb_app_password")
    out = node("tracker1").check_output(
        "mysql -h %s -u mediagrid -p%s -N -e 'SELECT DATABASE()' mediagrid", DB_HOST, password
    )
    assert out.strip() == "mediagrid"
