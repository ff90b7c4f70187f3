def test_mariadb_runs(host):
    assert host.service("mariadb").is_running
    assert host.service("mariadb").is_enabled


def test_binds_main_address_only(host):
    address = host.ansible("setup")["ansible_facts"]["ansible_default_ipv4"]["address"]
    assert host.socket(f"tcp://{address}:3306").is_listening
    assert not host.socket("tcp://0.0.0.0:3306").is_listening


def test_no_test_database_no_anonymous_users(host):
    dbs = host.check_output("mysql -N -e 'SHOW DATABASES'").split()
    assert "mediagrid" in dbs
    assert "test" not in dbs
    assert host.check_output("mysql -N -e \"SELECT COUNT(*) FROM mysql.user WHERE User=''\"") == "0"


def test_root_has_no_network_login(host):
    hosts = host.check_output("mysql -N -e \"SELECT Host FROM mysql.user WHERE User='root'\"").split()
    assert hosts == ["localhost"]


def test_app_user_logs_in_over_tcp(host):
    address = host.ansible("setup")["ansible_facts"]["ansible_default_ipv4"]["address"]
    out = host.check_output(
        "mysql -h %s -u mediagrid -pmolecule-only-password -N -e 'SELECT DATABASE()' mediagrid", address
    )
    assert out == "mediagrid"
