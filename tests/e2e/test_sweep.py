"""Bad input against the live lab: every answer is a 4xx JSON error with a stable code,
never a 5xx, and nothing is left behind (no row in `files`, no file on any brick).

Requests go through raw sockets where a client library would tidy them up (dot segments,
NUL, spaces, raw UTF-8, huge headers, stalled bodies). The last part runs schemathesis
over the OpenAPI description the cluster serves, with the demo app's token.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import hypothesis
import pytest
import requests
import schemathesis
from schemathesis import APIOperation, BaseSchema, Case, GenerationMode
from schemathesis import checks as st_checks

from mediagrid import signing
from mediagrid.client import Client
from mediagrid.signing import file_signature, make_token, signed_headers

from .conftest import GROUPS, PREFIX, ROOT, Lab, admin, docker, sql

RUN = uuid.uuid4().hex[:6]
USER = f"sweep-{RUN}"  # every user this file touches carries RUN
STORAGE = {
    "s1a": f"http://{PREFIX}.21:8080",
    "s1b": f"http://{PREFIX}.22:8080",
    "s2a": f"http://{PREFIX}.31:8080",
    "s2b": f"http://{PREFIX}.32:8080",
}
SLOW_BOUND = 20.0  # nginx client_header_timeout / client_body_timeout are 15 s
ST_MAX_EXAMPLES = 20  # per operation and generation mode


# -- plumbing ---------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _parse(data: bytes) -> Answer:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return Answer(status, headers, body)


def connect(base: str, timeout: float) -> socket.socket:
    """A connection to ``base``; for https, the same bytes inside TLS, the server checked
    against the lab CA (conftest)."""
    parts = urlsplit(base)
    tls = parts.scheme == "https"
    sock = socket.create_connection(
        (parts.hostname or "", parts.port or (443 if tls else 80)), timeout=timeout
    )
    if tls:
        ctx = ssl.create_default_context(cafile=os.environ.get("REQUESTS_CA_BUNDLE"))
        return ctx.wrap_socket(sock, server_hostname=parts.hostname)
    return sock


def raw(
    base: str, method: str, target: bytes, headers: dict[str, str] | None = None, body: bytes = b""
) -> Answer:
    """One request sent byte for byte as given (no normalisation), answer read to EOF.

    Content-Length is added for a body unless the headers already frame it.
    """
    parts = urlsplit(base)
    headers = dict(headers or {})
    framed = {k.lower() for k in headers} & {"content-length", "transfer-encoding"}
    if not framed and (body or method in ("PUT", "POST")):
        headers["Content-Length"] = str(len(body))
    head = f"{method} ".encode() + target + b" HTTP/1.1\r\n"
    head += f"Host: {parts.netloc}\r\nConnection: close\r\n".encode()
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")
    with connect(base, 15) as s:
        s.sendall(head + b"\r\n" + body)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ssl.SSLEOFError:  # closed without close_notify after a refused request
                break
            if not chunk:
                break
            chunks.append(chunk)
    return _parse(b"".join(chunks))


def expect(ans: Answer | requests.Response, status: int, code: str) -> None:
    """A clear error: this status, a JSON body {"error": {"code", "message"}}, this code."""
    if isinstance(ans, requests.Response):
        ans = Answer(ans.status_code, {k.lower(): v for k, v in ans.headers.items()}, ans.content)
    shown = ans.body[:300]
    assert ans.status == status, f"{ans.status} {shown!r}"
    assert ans.headers.get("content-type", "").startswith("application/json"), ans.headers
    err = json.loads(ans.body)["error"]
    assert err["code"] == code, shown
    assert isinstance(err["message"], str) and err["message"], shown


def cluster_secret() -> str:
    """The lab's cluster secret (a LAB ONLY value kept in the lab inventory)."""
    vault = (ROOT / "inventory" / "lab" / "group_vars" / "all" / "vault.yml").read_text()
    found = re.search(r"^vault_mediagrid_cluster_secret:\s*(\S+)\s*$", vault, re.M)
    assert found, "no cluster secret in the lab inventory"
    return found.group(1).strip("\"'")


def node_key(node: str) -> str:
    """A node key as the playbook would issue it to a node at this machine's lab address
    (the bridge's gateway, the address the lab's nginx sees this machine's requests from)."""
    return signing.node_key(cluster_secret(), node, f"{PREFIX}.1")


def bricks() -> dict[str, list[str]]:
    out = {}
    for node in (n for nodes in GROUPS.values() for n in nodes):
        listing = docker("exec", node, "find", "/bricks", "-type", "f", "-not", "-path", "*/.glusterfs/*")
        out[node] = sorted(listing.split("\n")[:-1])
    return out


def file_rows() -> tuple[int, int]:
    """(rows of this run's users, rows in total) of the files table."""
    ours = sql(f"SELECT COUNT(*) FROM files WHERE user LIKE '%{RUN}%'")[0][0]
    total = sql("SELECT COUNT(*) FROM files")[0][0]
    return int(ours), int(total)


def in_flight() -> set[str]:
    """Paths of uploads recorded as in flight (what killed shims left: the drills kill some)."""
    return {row[0] for row in sql("SELECT path FROM uploads")}


@pytest.fixture(scope="module", autouse=True)
def baseline(lab: Lab) -> tuple[dict[str, list[str]], tuple[int, int], set[str]]:
    """Bricks and rows before the sweep; the last test compares against them."""
    return bricks(), file_rows(), in_flight()


@pytest.fixture(scope="module")
def token(client: Client) -> str:
    return client.token()


@pytest.fixture(scope="module")
def storage(client: Client) -> str:
    """A storage node of USER's group, as the tracker hands it out."""
    return client.storages(USER)["storages"][0]["url"]


def signed(lab: Lab, method: str, target: bytes, query: dict[str, str] | None = None) -> dict[str, str]:
    path = unquote(target.split(b"?")[0].decode("latin-1"))
    return signed_headers(lab.app, lab.secret, method, path, query)


# -- names ------------------------------------------------------------------------------

# (raw file-id segment, status, code): the same through a storage node (PUT, signed) and
# the gateway (GET, token). nginx refuses what is not a valid request line itself.
FILE_IDS = [
    (b"..", 400, "invalid_file_id"),  # no client-side dot-segment removal: the id is ".."
    (b"%2e%2e", 400, "invalid_file_id"),
    (b".%2E", 400, "invalid_file_id"),
    (b"...", 400, "invalid_file_id"),
    (b"a..b", 400, "invalid_file_id"),
    (b"a%2Fb", 404, "not_found"),  # an encoded slash never reaches the id: no such route
    (b"..%2f..%2f..%2fetc%2fpasswd", 404, "not_found"),
    (b"a%00b", 400, "bad_request"),  # nginx refuses NUL in a URI
    (b"a\x00b", 400, "bad_request"),
    (b"a b", 400, "bad_request"),
    (b"a%20b", 400, "invalid_file_id"),
    (b"%C3%A9t%C3%A9.mp4", 400, "invalid_file_id"),
    ("été.mp4".encode(), 400, "bad_request"),  # raw UTF-8 in the request line
    (b"%ff%fe", 400, "invalid_file_id"),  # not UTF-8 at all
    (b"x" * 201, 400, "invalid_file_id"),
    (b"x" * 5000, 400, "invalid_file_id"),  # long, still within nginx's 8 KiB line
    (b"x" * 9000, 414, "uri_too_long"),
]


@pytest.mark.parametrize(("file_id", "status", "code"), FILE_IDS, ids=lambda v: repr(v)[:24])
def test_bad_file_ids(lab: Lab, storage: str, token: str, file_id: bytes, status: int, code: str) -> None:
    target = f"/api/v1/files/{lab.app}/{USER}/".encode() + file_id
    expect(raw(storage, "PUT", target, signed(lab, "PUT", target), b"payload"), status, code)
    play = f"/files/{lab.app}/{USER}/".encode() + file_id
    expect(raw(lab.url, "GET", play, {"Authorization": f"Bearer {token}"}), status, code)


# A raw user, then (status, code) of a tracker lookup (query), a listing (tracker, path)
# and an upload with a generated id (storage node, path).
USERS = [
    (b"..", (400, "invalid_user"), (400, "invalid_user"), (400, "invalid_user")),
    (b"%2e%2e", (400, "invalid_user"), (400, "invalid_user"), (400, "invalid_user")),
    (b"a%2Fb", (400, "invalid_user"), (404, "not_found"), (405, "method_not_allowed")),  # = .../a/b
    (b"a%00b", (400, "invalid_user"), (400, "bad_request"), (400, "bad_request")),
    (b"a%20b", (400, "invalid_user"), (400, "invalid_user"), (400, "invalid_user")),
    (b"%C3%A9mile", (400, "invalid_user"), (400, "invalid_user"), (400, "invalid_user")),
    ("émile".encode(), (400, "bad_request"), (400, "bad_request"), (400, "bad_request")),
    (b"u" * 129, (400, "invalid_user"), (400, "invalid_user"), (400, "invalid_user")),
    (b"", (400, "invalid_user"), (404, "not_found"), (404, "not_found")),
]


@pytest.mark.parametrize(("user", "lookup", "listing", "upload"), USERS, ids=lambda v: repr(v)[:20])
def test_bad_users(
    lab: Lab,
    storage: str,
    token: str,
    user: bytes,
    lookup: tuple[int, str],
    listing: tuple[int, str],
    upload: tuple[int, str],
) -> None:
    bearer = {"Authorization": f"Bearer {token}"}
    expect(raw(lab.url, "GET", f"/api/v1/storages?app={lab.app}&user=".encode() + user, bearer), *lookup)
    path = f"/api/v1/files/{lab.app}/".encode() + user
    expect(raw(lab.url, "GET", path, bearer), *listing)
    expect(raw(storage, "POST", path, bearer, b"payload"), *upload)


def test_traversal_outside_the_api_is_a_json_404(lab: Lab, storage: str, token: str) -> None:
    bearer = {"Authorization": f"Bearer {token}"}
    for base in (lab.url, storage):
        for target, status, code in (
            (b"/api/v1/../../etc/passwd", 404, "not_found"),  # nginx resolves it to /etc/passwd
            (b"/api/%2e%2e/%2e%2e/etc/passwd", 400, "bad_request"),  # above the root
            (b"/../etc/passwd", 400, "bad_request"),
            (b"/_groups/g1/", 404, "not_found"),  # the group volumes are internal
            (b"/_groups/g1/../../etc/passwd", 404, "not_found"),
        ):
            expect(raw(base, "GET", target, bearer), status, code)
    expect(raw(lab.url, "POST", b"/", bearer, b"x"), 405, "method_not_allowed")


def test_bad_numbers_in_queries(lab: Lab, token: str) -> None:
    bearer = {"Authorization": f"Bearer {token}"}
    for value in (b"abc", b"0", b"-1", b"10001", b"%C2%B2", b"%D9%A1", b"9" * 40, b"1e3"):
        expect(
            raw(lab.url, "GET", f"/api/v1/files/{lab.app}/{USER}?limit=".encode() + value, bearer),
            400,
            "invalid_limit",
        )
    for value in (b"abc", b"0", b"1001", b"%C2%B2", b"%D9%A1", b"9" * 40):
        expect(raw(lab.url, "GET", b"/api/v1/ids?count=" + value, bearer), 400, "invalid_count")
        expect(raw(lab.url, "POST", b"/api/v1/ids?count=" + value, bearer, b""), 400, "invalid_count")


# -- sizes ------------------------------------------------------------------------------


def test_oversized_headers_and_request_lines(lab: Lab, storage: str, token: str) -> None:
    bearer = {"Authorization": f"Bearer {token}"}
    for base in (lab.url, storage):
        expect(
            raw(base, "GET", b"/api/v1/groups", {**bearer, "X-Big": "a" * 65536}), 400, "headers_too_large"
        )
        many = {f"X-H{i}": "1" for i in range(5000)}  # ~45 KiB of small headers
        expect(raw(base, "GET", b"/api/v1/groups", {**bearer, **many}), 400, "headers_too_large")
        # repeated: nginx closing a refused request without draining it reset the connection
        # before the client read the answer, a few times in a hundred
        for _ in range(200):
            expect(raw(base, "GET", b"/api/v1/groups?x=" + b"a" * 9000, bearer), 414, "uri_too_long")
        expect(
            raw(base, "GET", b"/api/v1/groups", {"Authorization": "Bearer " + "x" * 70000}),
            400,
            "headers_too_large",
        )
    # Within nginx's limits, gunicorn must not refuse first (it would answer in HTML).
    few = {f"X-H{i}": "1" for i in range(300)}
    ok = raw(lab.url, "GET", f"/api/v1/storages?app={lab.app}&user={USER}".encode(), {**bearer, **few})
    assert ok.status == 200 and "storages" in json.loads(ok.body)
    long_line = f"/api/v1/files/{lab.app}/{USER}?after=".encode() + b"a" * 6000
    ok = raw(lab.url, "GET", long_line, bearer)
    assert ok.status == 200 and json.loads(ok.body)["files"] == []


def test_oversized_bodies_on_the_front(lab: Lab, token: str) -> None:
    """The front nodes take at most 1 MiB (client_max_body_size): nothing there needs more."""
    bearer = {"Authorization": f"Bearer {token}"}
    big = b"x" * (2 << 20)
    expect(raw(lab.url, "POST", b"/api/v1/ids?count=1", bearer, big), 413, "payload_too_large")
    expect(
        raw(lab.url, "POST", b"/api/v1/cluster/join", {"Content-Type": "application/json"}, big),
        413,
        "payload_too_large",
    )
    expect(raw(lab.url, "GET", f"/files/{lab.app}/{USER}/x".encode(), bearer, big), 413, "payload_too_large")
    declared = {**bearer, "Content-Length": str(1 << 40)}
    expect(raw(lab.url, "POST", b"/api/v1/ids?count=1", declared), 413, "payload_too_large")
    # chunked: refused once the running total passes the limit
    chunked = b"".join(b"%x\r\n" % (1 << 16) + b"y" * (1 << 16) + b"\r\n" for _ in range(24)) + b"0\r\n\r\n"
    te = {**bearer, "Transfer-Encoding": "chunked"}
    expect(raw(lab.url, "POST", b"/api/v1/ids?count=1", te, chunked), 413, "payload_too_large")
    # a Content-Length that is no number
    expect(
        raw(lab.url, "POST", b"/api/v1/ids?count=1", {**bearer, "Content-Length": "-5"}), 400, "bad_request"
    )


# -- JSON bodies (the cluster endpoints are the ones that take JSON) ---------------------

GHOST = f"sweep-ghost-{RUN}"  # never a complete report: no node is ever recorded
_REPORT = {
    "group": "g1",
    "url": "http://x",
    "free": 1,
    "total": 1,
    "reserve": 0,
    "load": 0,
    "heal_pending": 0,
    "seq": 1,
}
BODIES = [
    (b"{not json", "invalid_json"),
    (b"", "invalid_json"),
    (b"\xff\xfe\x00{", "invalid_json"),
    (b"null", "invalid_json"),
    (b"[]", "invalid_json"),
    (b'"node"', "invalid_json"),
    (b"9" * 10000, "invalid_json"),  # beyond Python's int digit limit
    (b"[" * 200000, "invalid_json"),  # nested deeper than the parser's stack
    (b'{"a":' * 100000 + b"1" + b"}" * 100000, "invalid_json"),
    (b'{"node_id": "x", "node_id": ', "invalid_json"),
    (json.dumps({"node_id": GHOST}).encode(), "invalid_report"),
    (json.dumps({"node_id": GHOST, **_REPORT, "free": "1"}).encode(), "invalid_report"),
    (json.dumps({"node_id": GHOST, **_REPORT, "free": True}).encode(), "invalid_report"),
    (json.dumps({"node_id": GHOST, **_REPORT, "total": 1e400}).encode(), "invalid_report"),
    (json.dumps({"node_id": GHOST, **_REPORT, "group": "../g1"}).encode(), "invalid_group"),
    (json.dumps({"node_id": GHOST, **_REPORT, "url": "file:///etc/passwd"}).encode(), "invalid_report"),
]


@pytest.mark.parametrize("path", ["/api/v1/cluster/join", "/api/v1/cluster/heartbeat"])
@pytest.mark.parametrize(("body", "code"), BODIES, ids=lambda v: repr(v)[:24])
def test_malformed_json_bodies(lab: Lab, path: str, body: bytes, code: str) -> None:
    headers = signed_headers(GHOST, node_key(GHOST), "POST", path, None, body, cluster=True)
    expect(
        raw(lab.url, "POST", path.encode(), {**headers, "Content-Type": "application/json"}, body), 400, code
    )


def test_reports_for_another_node_or_unsigned(lab: Lab) -> None:
    path = "/api/v1/cluster/join"
    body = json.dumps({"node_id": "s1a", **_REPORT}).encode()
    for p in (path, "/api/v1/cluster/heartbeat"):
        headers = signed_headers(GHOST, node_key(GHOST), "POST", p, None, body, cluster=True)
        expect(
            raw(lab.url, "POST", p.encode(), {**headers, "Content-Type": "application/json"}, body),
            403,
            "forbidden",
        )
    wrong = signed_headers("s1a", "not-the-secret", "POST", path, None, body, cluster=True)
    expect(raw(lab.url, "POST", path.encode(), wrong, body), 401, "bad_cluster_signature")
    # signed over another body: the signature covers the body
    other = signed_headers("s1a", node_key("s1a"), "POST", path, None, b"{}", cluster=True)
    expect(raw(lab.url, "POST", path.encode(), other, body), 401, "bad_cluster_signature")
    # the master key itself signs nothing, and s1a's own key only works from s1a's address
    master = signed_headers("s1a", cluster_secret(), "POST", path, None, body, cluster=True)
    expect(raw(lab.url, "POST", path.encode(), master, body), 401, "bad_cluster_signature")
    elsewhere = signing.node_key(cluster_secret(), "s1a", f"{PREFIX}.21")
    other = signed_headers("s1a", elsewhere, "POST", path, None, body, cluster=True)
    expect(raw(lab.url, "POST", path.encode(), other, body), 401, "bad_cluster_signature")
    expect(raw(lab.url, "POST", path.encode(), {}, body), 401, "missing_credentials")
    app_signed = signed_headers(lab.app, lab.secret, "POST", path)
    expect(raw(lab.url, "POST", path.encode(), app_signed, body), 401, "missing_credentials")


def test_malformed_multipart_uploads(lab: Lab, storage: str, token: str) -> None:
    bearer = {"Authorization": f"Bearer {token}"}
    target = f"/api/v1/files/{lab.app}/{USER}".encode()
    no_file = b'--b\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--b--\r\n'
    for ctype, body in (
        ("multipart/form-data; boundary=b", no_file),
        ("multipart/form-data; boundary=b", b"garbage without any boundary"),
        ("multipart/form-data", no_file),
        ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n"),
    ):
        expect(raw(storage, "POST", target, {**bearer, "Content-Type": ctype}, body), 400, "missing_file")
    bad_id = (
        b'--b\r\nContent-Disposition: form-data; name="file_id"\r\n\r\n../../etc/passwd\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.txt"\r\n\r\nx\r\n--b--\r\n'
    )
    ans = raw(storage, "POST", target, {**bearer, "Content-Type": "multipart/form-data; boundary=b"}, bad_id)
    expect(ans, 400, "invalid_file_id")


# -- authentication and tenants ---------------------------------------------------------


def test_wrong_expired_and_missing_credentials(lab: Lab, storage: str) -> None:
    q = {"app": lab.app, "user": USER}
    lookup = f"/api/v1/storages?app={lab.app}&user={USER}".encode()
    targets = [
        (lab.url, "GET", lookup, q),
        (lab.url, "GET", f"/api/v1/files/{lab.app}/{USER}".encode(), None),
        (lab.url, "GET", b"/api/v1/groups", None),
        (lab.url, "POST", b"/api/v1/ids", None),
        (lab.url, "GET", f"/files/{lab.app}/{USER}/x.txt".encode(), None),
        (storage, "PUT", f"/api/v1/files/{lab.app}/{USER}/x.txt".encode(), None),
        (storage, "DELETE", f"/api/v1/files/{lab.app}/{USER}/x.txt".encode(), None),
    ]
    now = int(time.time())
    for base, method, target, query in targets:
        path = target.split(b"?")[0].decode()
        good = signed_headers(lab.app, lab.secret, method, path, query)
        cases: list[tuple[dict[str, str], str]] = [
            ({}, "missing_credentials"),
            (signed_headers(lab.app, "wrong-secret", method, path, query), "bad_signature"),
            ({**good, "X-MG-Signature": good["X-MG-Signature"][:-2]}, "bad_signature"),
            ({**good, "X-MG-Timestamp": str(now - 3600)}, "expired_signature"),
            ({**good, "X-MG-Timestamp": str(now + 3600)}, "expired_signature"),
            ({**good, "X-MG-Timestamp": "soon"}, "bad_signature"),
            # an unknown app is answered as a wrong secret: app names cannot be probed
            (signed_headers("ghost-app", "x", method, path, query), "bad_signature"),
            ({"Authorization": f"Bearer {make_token(lab.app, lab.secret, now - 10)}"}, "expired_token"),
            ({"Authorization": f"Bearer {make_token(lab.app, 'wrong', now + 600)}"}, "bad_token"),
            ({"Authorization": f"Bearer {make_token('ghost-app', 'x', now + 600)}"}, "bad_token"),
            ({"Authorization": "Bearer mg1.demo.soon.x"}, "bad_token"),
            ({"Authorization": "Bearer garbage"}, "bad_token"),
            ({"Authorization": "Bearer mg1.demo.1.x"}, "bad_token"),
        ]
        if query is not None:  # the signature covers the query: change the user after signing
            bound = signed_headers(lab.app, lab.secret, method, path, {**query, "user": "mallory"})
            cases.append((bound, "bad_signature"))
        body = b"payload" if method in ("PUT", "POST") else b""
        for headers, code in cases:
            ans = raw(base, method, target, headers, body)
            assert ans.status == 401, (method, target, code, ans.status, ans.body[:200])
            expect(ans, 401, code)


def test_playback_urls_expire_and_bind_the_file(lab: Lab, client: Client) -> None:
    expect(requests.get(client.playback_url(USER, "x.txt", ttl=-5), timeout=10), 401, "expired_signature")
    other = client.playback_url(USER, "y.txt").replace("/y.txt?", "/x.txt?")
    expect(requests.get(other, timeout=10), 401, "bad_signature")
    exp = int(time.time()) + 60
    sig = file_signature(lab.secret, lab.app, USER, "x.txt", exp)
    base = f"{lab.url}/files/{lab.app}/{USER}/x.txt"
    expect(requests.get(f"{base}?expires={exp + 1}&sig={sig}", timeout=10), 401, "bad_signature")
    expect(requests.get(f"{base}?expires=soon&sig={sig}", timeout=10), 401, "bad_signature")
    expect(requests.get(f"{base}?expires={exp}&sig=", timeout=10), 401, "bad_signature")


def test_tokens_in_urls_stay_out_of_the_access_logs(lab: Lab, storage: str, token: str) -> None:
    """A bearer token sent as ?token= (players that cannot set headers) opens the app's whole
    API: nginx logs the request with the token cut out, on the front nodes and the storage
    nodes alike."""
    marker = f"logcheck-{uuid.uuid4().hex}"
    for base in (lab.url, storage):
        for path in (f"/files/{lab.app}/{USER}/{marker}", f"/api/v1/files/{lab.app}/{USER}/{marker}"):
            ans = requests.get(f"{base}{path}?token={token}&after=1", timeout=10)
            assert ans.status_code in (404, 405), (base, path, ans.status_code)
    nodes = ["tracker1", "tracker2", *(n for members in GROUPS.values() for n in members)]
    seen = 0
    secret_part = token.rsplit(".", 1)[-1]
    deadline = time.monotonic() + 10
    while True:
        logs = {n: docker("exec", n, "cat", "/var/log/nginx/access.log", timeout=30) for n in nodes}
        assert not [n for n, text in logs.items() if secret_part in text], "a token reached an access log"
        seen = sum(text.count(f"{marker}?token=[redacted] ") for text in logs.values())
        if seen >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # nginx writes the line once the answer is sent
    assert seen == 4, f"{seen} of 4 redacted request lines logged"


def test_direct_links_refuse_forgeries_and_traversal(lab: Lab) -> None:
    # without the cluster's link key no token is right; nginx answers before any service
    for target, status, code in (
        (b"/d/g1/", 403, "forbidden"),
        (b"/d/g1/00/00/0000000000000001", 403, "forbidden"),
        (b"/d/g1/00/00/0000000000000001?e=99999999999&t=AAAAAAAAAAAAAAAAAAAAAA", 403, "forbidden"),
        (b"/d/g1/00/00/0000000000000001?e=soon&t=", 403, "forbidden"),
        (b"/d/g1/.glusterfs/?e=1&t=" + b"A" * 5000, 403, "forbidden"),
        (b"/d/g1/../../etc/passwd?e=99999999999&t=x", 404, "not_found"),  # resolved to /etc/passwd
        (b"/d/../../etc/passwd", 400, "bad_request"),  # above the root
    ):
        expect(raw(lab.url, "GET", target, {}), status, code)


@pytest.fixture(scope="module")
def other_app(lab: Lab) -> Iterator[Client]:
    name = f"sweep-{RUN}"
    secret = admin("app", "create", name).strip()
    yield Client(lab.url, name, secret, ca_file=lab.ca_file)
    admin("app", "delete", name)


def test_tenants_cannot_touch_each_other(lab: Lab, client: Client, other_app: Client, tmp_path: Path) -> None:
    src = tmp_path / "private.txt"
    src.write_bytes(b"demo tenant only\n")
    stored = client.upload(src, USER, "private.txt", overwrite=True)
    node_url = STORAGE[stored["node_id"]]
    path = f"/api/v1/files/{lab.app}/{USER}/private.txt"
    theirs = other_app.token()
    bearer = {"Authorization": f"Bearer {theirs}"}
    for method, base, target, body in (
        ("GET", lab.url, f"/files/{lab.app}/{USER}/private.txt", b""),
        ("GET", lab.url, f"/api/v1/files/{lab.app}/{USER}", b""),
        ("GET", lab.url, f"/api/v1/storages?app={lab.app}&user={USER}", b""),
        ("GET", node_url, path, b""),
        ("PUT", node_url, path + "?overwrite=1", b"overwritten by another tenant"),
        ("POST", node_url, f"/api/v1/files/{lab.app}/{USER}?file_id=private.txt&overwrite=1", b"x"),
        ("DELETE", node_url, path, b""),
    ):
        expect(raw(base, method, target.encode(), bearer, body), 403, "forbidden")
        query = dict(p.split("=", 1) for p in target.split("?", 1)[1].split("&")) if "?" in target else None
        their_sig = signed_headers(other_app.app, other_app.secret, method, target.split("?")[0], query)
        expect(raw(base, method, target.encode(), their_sig, body), 403, "forbidden")
    # a playback URL signed with the other app's secret, a token in the query
    exp = int(time.time()) + 60
    forged = file_signature(other_app.secret, lab.app, USER, "private.txt", exp)
    expect(
        requests.get(f"{lab.url}/files/{lab.app}/{USER}/private.txt?expires={exp}&sig={forged}", timeout=10),
        401,
        "bad_signature",
    )
    expect(
        requests.get(f"{lab.url}/files/{lab.app}/{USER}/private.txt?token={theirs}", timeout=10),
        403,
        "forbidden",
    )
    assert other_app.list(USER) == []
    got = requests.get(client.playback_url(USER, "private.txt"), timeout=10)
    assert got.status_code == 200 and got.content == src.read_bytes()
    client.delete(USER, "private.txt")


# -- slow clients -----------------------------------------------------------------------


def _stall(base: str, head: bytes, first: bytes, out: dict[str, tuple[float, bytes]], name: str) -> None:
    """Send the head and a few bytes, then nothing; note when and how the server ends it."""
    start = time.monotonic()
    data = b""
    try:
        with connect(base, SLOW_BOUND + 5) as s:
            s.sendall(head + first)
            while chunk := s.recv(65536):
                data += chunk
    except OSError as err:  # a reset is an end too; a timeout is not
        if isinstance(err, TimeoutError):
            data = b"<client timeout>"
    out[name] = (time.monotonic() - start, data)


def test_slow_clients_are_cut_off(lab: Lab, storage: str, token: str) -> None:
    """Slow-loris: a few bytes, then silence. nginx ends each within its 15 s timeouts and
    nothing upstream is left holding a part file (checked by the last test)."""
    put = f"/api/v1/files/{lab.app}/{USER}/slow.bin"
    auth = "".join(f"{k}: {v}\r\n" for k, v in signed_headers(lab.app, lab.secret, "PUT", put).items())
    bearer = f"Authorization: Bearer {token}\r\n"
    host_front, host_storage = urlsplit(lab.url).netloc, urlsplit(storage).netloc
    ids = f"POST /api/v1/ids HTTP/1.1\r\nHost: {host_front}\r\n{bearer}"
    jobs = {
        "front headers": (
            lab.url,
            f"GET /api/v1/groups HTTP/1.1\r\nHost: {host_front}\r\n{bearer}".encode(),
            b"X-Sl",
        ),
        "front body": (
            lab.url,
            f"{ids}Content-Length: 1000\r\n\r\n".encode(),
            b"0123456789",
        ),
        "storage headers": (storage, f"PUT {put} HTTP/1.1\r\nHost: {host_storage}\r\n".encode(), b"X-Sl"),
        "storage body": (
            storage,
            f"PUT {put} HTTP/1.1\r\nHost: {host_storage}\r\n{auth}Content-Length: 1000000\r\n\r\n".encode(),
            b"z" * 4096,
        ),
    }
    out: dict[str, tuple[float, bytes]] = {}
    threads = [threading.Thread(target=_stall, args=(*job, out, name)) for name, job in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SLOW_BOUND + 10)
    assert set(out) == set(jobs)
    for name, (took, data) in out.items():
        assert took <= SLOW_BOUND, f"{name}: still open after {took:.1f} s"
        if data:  # an answer is allowed, if it is a clear 4xx
            assert data != b"<client timeout>", name
            ans = _parse(data)
            assert 400 <= ans.status < 500, f"{name}: {ans.status} {ans.body[:200]!r}"
            assert "error" in json.loads(ans.body), name
        print(f"{name}: ended after {took:.1f} s, {len(data)} bytes answered")
    assert sql(f"SELECT COUNT(*) FROM files WHERE user = '{USER}' AND file_id = 'slow.bin'") == [["0"]]


# -- schemathesis -----------------------------------------------------------------------

# Where each operation is served: the storage nodes take uploads, downloads and deletes,
# everything else goes to the cluster address.
_ON_STORAGE = {("PUT", "/api/v1/files/{app}/{user}/{file_id}"), ("POST", "/api/v1/files/{app}/{user}")}
_ON_STORAGE |= {
    ("GET", "/api/v1/files/{app}/{user}/{file_id}"),
    ("DELETE", "/api/v1/files/{app}/{user}/{file_id}"),
}
_NAME_OK = re.compile(r"^[A-Za-z0-9._~@+=-]{1,128}$")
_APP_OK = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ST_RUN: dict[str, int] = {}  # cases sent per operation


def _confine(case: Case, app: str) -> None:
    """Valid apps become the demo app (the token's) and valid users get RUN in front, so
    whatever the fuzzer stores belongs to this run's users; invalid values stay as drawn.
    Path parameters arrive percent-encoded, query values as they are."""
    for where, encoded in ((case.path_parameters, True), (case.query, False)):
        if not isinstance(where, dict):
            continue
        for key in ("app", "user"):
            value = where.get(key)
            if not isinstance(value, str):
                continue
            plain = unquote(value) if encoded else value
            if key == "app" and _APP_OK.match(plain):
                new = app
            elif key == "user" and _NAME_OK.match(plain) and ".." not in plain:
                new = f"st{RUN}-{plain}"[:128]
            else:
                continue
            where[key] = quote(new, safe="") if encoded else new


@pytest.fixture(scope="module")
def api_schema(lab: Lab) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{lab.url}/api/v1/openapi.json", timeout=15)


_VALIDATE = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
    st_checks.response_headers_conformance,
]


def _fuzz(op: APIOperation, mode: GenerationMode, base: str, token: str, app: str) -> None:
    """ST_MAX_EXAMPLES derandomized cases of one operation, not shrunk: bounded and repeatable."""

    @hypothesis.settings(
        max_examples=ST_MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=op.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        _confine(case, app)
        ST_RUN[op.label] = ST_RUN.get(op.label, 0) + 1
        case.call_and_validate(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, checks=_VALIDATE, timeout=15
        )

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_schemathesis(api_schema: BaseSchema, mode: GenerationMode, lab: Lab, token: str) -> None:
    """Every operation of the served description: no 5xx, and statuses, content types,
    headers and bodies as the description says."""
    failures: list[str] = []
    ops = [result.ok() for result in api_schema.get_all_operations()]
    assert len(ops) >= 12, [op.label for op in ops]
    for op in ops:
        base = STORAGE["s1a"] if (op.method.upper(), op.path) in _ON_STORAGE else lab.url
        try:
            _fuzz(op, mode, base, token, lab.app)
        except hypothesis.errors.Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, op.label  # nothing to get wrong, e.g. no input
        except Exception as err:  # every operation runs; the failures are reported together
            failures.append(f"{op.label}: {err}")
    assert not failures, "\n\n".join(failures)


# -- nothing left behind (keep last) ----------------------------------------------------


def test_zz_no_stray_file_or_row(
    lab: Lab, client: Client, baseline: tuple[dict[str, list[str]], tuple[int, int], set[str]]
) -> None:
    """Remove what the sweep stored on purpose (schemathesis' valid uploads, all for RUN
    users) through the API, then the bricks and the files table are as before."""
    print(f"schemathesis: {sum(ST_RUN.values())} cases over {len(ST_RUN)} operations")
    for user, file_id, group in sql(f"SELECT user, file_id, grp FROM files WHERE user LIKE '%{RUN}%'"):
        path = f"/api/v1/files/{lab.app}/{quote(user, safe='')}/{quote(file_id, safe='')}"
        node = GROUPS[group][0]
        resp = requests.delete(
            STORAGE[node] + path,
            headers=signed_headers(lab.app, lab.secret, "DELETE", unquote(path)),
            timeout=15,
        )
        assert resp.status_code == 200, resp.text
    before_bricks, (before_ours, before_total), before_in_flight = baseline

    def changes() -> dict[str, tuple[set[str], set[str]]]:
        """Per node: files that appeared, and files that went other than what dead uploads
        left (parts, in-flight files: the agents remove stale ones whenever they like)."""
        now = bricks()
        return {
            node: (
                set(now[node]) - set(before),
                {
                    f
                    for f in set(before) - set(now[node])
                    if not f.endswith(".part") and f.split("/", 4)[-1] not in before_in_flight
                },
            )
            for node, before in before_bricks.items()
        }

    deadline = time.monotonic() + 15  # a refused upload's part file goes when its request ends
    found = changes()
    while any(a or g for a, g in found.values()) and time.monotonic() < deadline:
        time.sleep(1)
        found = changes()
    for node, (added, gone) in found.items():
        assert not added and not gone, f"{node}: stray {sorted(added)}, gone {sorted(gone)}"
    assert file_rows() == (before_ours, before_total) == (0, before_total)
    assert in_flight() <= before_in_flight  # every refused upload forgot its in-flight row
