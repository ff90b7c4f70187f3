import base64
import hashlib
import time


def test_nginx_runs(host):
    assert host.service("nginx").is_running
    assert host.service("nginx").is_enabled


def test_config_is_valid(host):
    assert host.run("nginx -t").rc == 0


def test_listens(host):
    assert host.socket("tcp://0.0.0.0:80").is_listening
    assert host.socket("tcp://0.0.0.0:8080").is_listening


def test_health_pages_name_no_host(host):
    # nginx_node_header is off by default: no host name in public answers.
    front = host.run("curl -fsS -D - http://127.0.0.1/healthz")
    assert front.stdout.rstrip().endswith("\n\nok") or front.stdout.rstrip().endswith("\r\n\r\nok")
    assert "x-mediagrid-node" not in front.stdout.lower()
    assert host.check_output("curl -fsS http://127.0.0.1:8080/healthz") == "ok g1"


def test_group_files_are_internal_only(host):
    # bytes leave only through the services' X-Accel-Redirect, never by a direct URL
    host.check_output("echo media > /srv/mediagrid/g1/probe.txt")
    for url in ("http://127.0.0.1/_groups/g1/probe.txt", "http://127.0.0.1:8080/_groups/g1/probe.txt"):
        assert host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' {url}") == "404"


def _link(path, expires, key="molecule-only-link-key"):
    # nginx's secure_link_md5 token, as the trackers mint it
    digest = hashlib.md5(f"{expires}{path} {key}".encode()).digest()
    token = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return f"http://127.0.0.1{path}?e={expires}&t={token}"


def test_direct_links_are_checked_by_nginx(host):
    host.check_output("echo linked > /srv/mediagrid/g1/linked.txt")
    now = int(time.time())
    good = _link("/d/g1/linked.txt", now + 600)
    assert host.check_output(f"curl -fsS '{good}'") == "linked"
    forged = _link("/d/g1/linked.txt", now + 600, key="guess")
    expired = _link("/d/g1/linked.txt", now - 10)
    for url, status, code in ((forged, "403", "forbidden"), (expired, "410", "link_expired")):
        out = host.check_output(f"curl -s -w ' %{{http_code}}' '{url}'")
        assert out.endswith(f" {status}") and f'"code":"{code}"' in out
    key = host.file("/etc/nginx/snippets/mediagrid-link-key.conf")
    assert key.mode == 0o600 and key.user == "root"


def test_errors_are_json_when_the_services_are_down(host):
    # no control plane in this scenario: nginx answers 502 itself, as JSON
    out = host.run("curl -s -w ' %{http_code}' http://127.0.0.1/api/v1/groups")
    assert out.stdout.endswith(" 502")
    assert '"code":"upstream_unavailable"' in out.stdout
    bad = host.run("curl -s -w ' %{http_code}' 'http://127.0.0.1:8080/api/v1/files/a%00b'")
    assert bad.stdout.endswith(" 400") and '"code":"bad_request"' in bad.stdout


def test_default_site_removed(host):
    assert not host.file("/etc/nginx/sites-enabled/default").exists


def test_player_page_is_served_with_its_csp(host):
    headers = host.check_output("curl -fsS -D - -o /dev/null http://127.0.0.1/player/").lower()
    assert "content-security-policy: default-src 'self'; media-src 'self' blob:" in headers
    assert "frame-ancestors 'none'" in headers
    for name in ("index.html", "player.js", "player.css", "hls.light.min.js", "hls.js-LICENSE.txt"):
        assert host.file(f"/var/www/mediagrid/player/{name}").mode == 0o644
    script = host.check_output("curl -fsS -D - -o /dev/null http://127.0.0.1/player/hls.light.min.js").lower()
    assert "content-type: application/javascript" in script
    # the page names the prefix whose playlists it plays (nginx_hls_prefix)
    assert 'data-hls-prefixes="/hls/"' in host.check_output("curl -fsS http://127.0.0.1/player/")


def test_qos_reports_have_a_small_body_bound(host):
    # nginx refuses a large report itself, with the JSON error, before the tracker
    out = host.check_output(
        "head -c 8192 /dev/zero | tr '\\0' x | curl -s -H 'Content-Type: application/json'"
        " --data-binary @- http://127.0.0.1/api/v1/qos"
    )
    assert '"payload_too_large"' in out
