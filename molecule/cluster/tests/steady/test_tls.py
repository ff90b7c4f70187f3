"""TLS on every tier (issue 11, item 12): the cluster address and every storage upload
endpoint answer HTTPS with a certificate the cluster's CA signed for the name clients use,
and MariaDB takes network logins over TLS only."""

from __future__ import annotations

import pytest

from lab import ADDRESSES, CLUSTER_VIP, DB_HOST, FRONT, GROUPS, node

CA = "/etc/mediagrid/tls/ca.crt"
STORAGE = [h for hosts, _ in GROUPS.values() for h in hosts]


def _curl(client: str, url: str, *extra: str) -> str:
    """curl from a lab node, checking the server's certificate against the cluster CA."""
    return node(client).check_output(f"curl -sS --max-time 5 --cacert {CA} {' '.join(extra)} {url}")


def test_cluster_address_answers_https():
    assert _curl("db1", f"https://{CLUSTER_VIP}/healthz").startswith("ok")
    for name in FRONT:
        assert _curl("db1", f"https://{ADDRESSES[name]}/healthz").startswith("ok")


@pytest.mark.parametrize("name", STORAGE)
def test_storage_upload_endpoint_answers_https(name):
    assert _curl(FRONT[0], f"https://{ADDRESSES[name]}:8443/healthz").startswith("ok")


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_group_vip_is_in_the_certificate(group):
    assert _curl(FRONT[0], f"https://{GROUPS[group][1]}:8443/healthz").startswith("ok")


def test_certificate_not_for_another_name():
    # A node's certificate names its own address and VIP only: the front's is refused
    # when it is reached under the db node's name.
    out = node("db1").run(
        f"curl -sS --max-time 5 --cacert {CA} --resolve wrong.invalid:443:{CLUSTER_VIP} https://wrong.invalid/healthz"
    )
    assert out.rc != 0 and "certificate" in out.stderr.lower()


def test_plain_http_stays_for_players():
    assert node("db1").check_output(f"curl -sS --max-time 5 http://{CLUSTER_VIP}/healthz").startswith("ok")


def test_storage_nodes_announce_https():
    for name in STORAGE:
        conf = node(name).file("/etc/mediagrid/storage.toml").content_string
        assert f'PUBLIC_URL = "https://{ADDRESSES[name]}:8443"' in conf


def test_node_key_readable_by_root_only():
    for name in [*FRONT, *STORAGE, "db1"]:
        key = node(name).file("/etc/mediagrid/tls/node.key")
        assert key.user == "root" and key.mode == 0o600, name


# A login to MariaDB from a node, with the tier's own user, with or without TLS: the
# password is read from the service's configuration on the node, never put on a command line.
_LOGIN = """
import sys, tomllib, pymysql
conf = tomllib.load(open("/etc/mediagrid/{service}.toml", "rb"))
tls = sys.argv[1] == "tls"
try:
    conn = pymysql.connect(host=conf["DB_HOST"], port=conf["DB_PORT"], user=conf["DB_USER"],
                           password=conf["DB_PASSWORD"], database=conf["DB_NAME"], connect_timeout=5,
                           **({{"ssl_ca": conf["DB_SSL_CA"], "ssl_verify_cert": True,
                              "ssl_verify_identity": True}} if tls else {{"ssl_disabled": True}}))
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        print("ok", cur.fetchone()[1] or "plain")
except pymysql.err.MySQLError as err:
    print("refused", err.args[0])
"""


@pytest.mark.parametrize(("name", "service"), [(FRONT[0], "tracker"), ("s1a", "storage")])
def test_mariadb_takes_service_logins_over_tls_only(name, service):
    host = node(name)
    script = _LOGIN.format(service=service)
    host.check_output(f"cat > /tmp/login.py <<'EOF'\n{script}\nEOF")
    conf = host.file(f"/etc/mediagrid/{service}.toml").content_string
    assert f'DB_SSL_CA = "{CA}"' in conf and f'DB_HOST = "{DB_HOST}"' in conf
    with_tls = host.check_output("/opt/mediagrid/venv/bin/python /tmp/login.py tls")
    assert with_tls.startswith("ok TLSv1."), with_tls
    without = host.check_output("/opt/mediagrid/venv/bin/python /tmp/login.py plain")
    # 1045: access denied (REQUIRE SSL); 3159: require_secure_transport
    assert without.split()[:1] == ["refused"] and without.split()[1] in {"1045", "3159"}, without
    host.run("rm -f /tmp/login.py")


def test_application_users_require_ssl():
    rows = node("db1").check_output(
        "mariadb -N -B -e \"SELECT User, ssl_type FROM mysql.user WHERE User LIKE 'mediagrid%'\""
    )
    users = [line.split("\t") for line in rows.splitlines()]
    assert users and all(ssl_type == "ANY" for _, ssl_type in users), users
