"""Database node: MariaDB on the lab address with the application database."""

from lab import DB_HOST

testinfra_hosts = ["ansible://db"]


def test_mariadb_runs(host):
    assert host.service("mariadb").is_running
    assert host.service("mariadb").is_enabled


def test_listens_on_lab_address_only(host):
    assert host.socket(f"tcp://{DB_HOST}:3306").is_listening
    assert not host.socket("tcp://0.0.0.0:3306").is_listening


def test_has_app_database_and_no_test_database(host):
    databases = host.check_output("mysql -N -e 'SHOW DATABASES'").split()
    assert "mediagrid" in databases
    assert "test" not in databases
