import time

VIP = "192.0.2.10"


def has_vip(host):
    return f" {VIP}/" in host.check_output("ip -4 -o addr show dev eth0")


def wait(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_keepalived_runs(host):
    assert host.service("keepalived").is_running
    assert host.service("keepalived").is_enabled


def test_config_is_vrrp3_subsecond(host):
    conf = host.file("/etc/keepalived/keepalived.conf").content_string
    assert "vrrp_version 3" in conf
    assert "advert_int 0.2" in conf
    assert "chk_nginx" in conf


def test_holds_the_vip(host):
    assert wait(lambda: has_vip(host))


def test_dead_nginx_gives_the_vip_away(host):
    host.check_output("systemctl stop nginx")
    try:
        assert wait(lambda: not has_vip(host))
    finally:
        host.check_output("systemctl start nginx")
    assert wait(lambda: has_vip(host))
