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
    # the page names the prefixes whose playlists it plays: VOD (nginx_hls_prefix) and the
    # trackers' live play URLs
    assert 'data-hls-prefixes="/hls/ /live/"' in host.check_output("curl -fsS http://127.0.0.1/player/")


def test_qos_reports_have_a_small_body_bound(host):
    # nginx refuses a large report itself, with the JSON error, before the tracker
    out = host.check_output(
        "head -c 8192 /dev/zero | tr '\\0' x | curl -s -H 'Content-Type: application/json'"
        " --data-binary @- http://127.0.0.1/api/v1/qos"
    )
    assert '"payload_too_large"' in out


def test_live_streaming_nginx_runs_alone_with_one_worker(host):
    # nginx-rtmp keeps a stream in the worker its publisher reached: its own nginx, one worker
    rtmp = host.service("mediagrid-rtmp")
    assert rtmp.is_running and rtmp.is_enabled
    assert host.socket("tcp://0.0.0.0:1935").is_listening
    assert host.socket("tcp://127.0.0.1:8019").is_listening
    assert not host.socket("tcp://0.0.0.0:8019").is_listening
    pid = host.check_output("systemctl show -p MainPID --value mediagrid-rtmp")
    workers = host.check_output(f"ps -o user=,args= --ppid {pid}").splitlines()
    assert [w.split()[0] for w in workers if "worker process" in w] == ["www-data"]
    assert "<nginx_rtmp_version>" in host.check_output("curl -fsS http://127.0.0.1:8019/rtmp-stat")


def test_live_directories_belong_to_the_workers(host):
    hls = host.file("/var/lib/mediagrid-live/hls")
    assert hls.is_directory and hls.user == "www-data" and hls.mode == 0o750
    # recordings: shared with nginx_live_record_group (the workers' own group here), setgid
    rec = host.file("/var/lib/mediagrid-live/rec")
    assert (rec.is_directory, rec.user, rec.group, rec.mode) == (True, "www-data", "www-data", 0o2770)
    assert "record all;" in host.file("/etc/nginx/mediagrid-rtmp.conf").content_string


def _live(name, expires, key="molecule-only-link-key"):
    # the live HLS token, as the trackers mint it (links.token over /lhls/<node>/<name>)
    digest = hashlib.md5(f"{expires}/lhls/s1/{name} {key}".encode()).digest()
    token = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return f"http://127.0.0.1/lhls/{token}/{expires}/s1/{name}"


def test_live_hls_goes_through_the_edge_cache(host):
    # what nginx-rtmp would cut, written by hand: the edge (front) fetches it from the
    # origin (storage, /live-hls/) once and serves it from its cache
    stream = f"demo.t{int(time.time())}"
    host.check_output(
        f"install -d -o www-data -g www-data /var/lib/mediagrid-live/hls/{stream}"
        f" && printf '#EXTM3U\\n#EXTINF:1.0,\\n1.ts\\n' > /var/lib/mediagrid-live/hls/{stream}/index.m3u8"
        f" && echo segment > /var/lib/mediagrid-live/hls/{stream}/1.ts"
        f" && chown -R www-data:www-data /var/lib/mediagrid-live/hls/{stream}"
    )
    base = _live(stream, int(time.time()) + 600)
    files = (
        ("index.m3u8", "application/vnd.apple.mpegurl", "no-cache"),
        ("1.ts", "video/mp2t", "max-age=600"),
    )
    for file, kind, cache in files:
        first = host.check_output(f"curl -fsS -D - -o /dev/null {base}/{file}").lower()
        again = host.check_output(f"curl -fsS -D - -o /dev/null {base}/{file}").lower()
        assert f"content-type: {kind}" in first and f"cache-control: {cache}" in first
        assert "access-control-allow-origin: *" in first
        assert "x-cache-status: miss" in first
        if file.endswith(".ts"):
            assert "x-cache-status: hit" in again
    forged = _live(stream, int(time.time()) + 600, key="guess")
    expired = _live(stream, int(time.time()) - 10)
    for url, status in ((f"{forged}/index.m3u8", "403"), (f"{expired}/index.m3u8", "410")):
        assert host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' {url}") == status
