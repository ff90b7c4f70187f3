def test_nginx_runs(host):
    assert host.service("nginx").is_running
    assert host.service("nginx").is_enabled


def test_config_is_valid(host):
    assert host.run("nginx -t").rc == 0


def test_listens(host):
    assert host.socket("tcp://0.0.0.0:80").is_listening
    assert host.socket("tcp://0.0.0.0:8080").is_listening


def test_health_pages(host):
    assert host.check_output("curl -fsS http://127.0.0.1/healthz").startswith("ok ")
    assert host.check_output("curl -fsS http://127.0.0.1:8080/healthz").endswith("g1")


def test_serves_group_files(host):
    host.check_output("echo media > /srv/mediagrid/g1/probe.txt")
    assert host.check_output("curl -fsS http://127.0.0.1/media/g1/probe.txt") == "media"
    assert host.check_output("curl -fsS http://127.0.0.1:8080/files/probe.txt") == "media"


def test_api_placeholder(host):
    assert host.check_output("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/api/v1/x") == "503"


def test_default_site_removed(host):
    assert not host.file("/etc/nginx/sites-enabled/default").exists
