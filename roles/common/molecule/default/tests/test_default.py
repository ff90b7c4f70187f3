def test_base_packages(host):
    for name in ("curl", "iproute2", "python3-apt"):
        assert host.package(name).is_installed


def test_journal_is_capped(host):
    conf = host.file("/etc/systemd/journald.conf.d/60-mediagrid.conf")
    assert conf.exists
    assert "SystemMaxUse=200M" in conf.content_string


def test_config_directory(host):
    assert host.file("/etc/mediagrid").is_directory
