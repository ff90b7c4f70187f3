"""Validation, authentication and error answers of every service, through Flask's test
client: the codes and statuses the loopback and lab suites see, without MariaDB or nginx."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from mediagrid import apps, auth, cli, signing, storage
from mediagrid.client import Client, MediagridError
from mediagrid.contract import Report

from .conftest import ADMIN, APP, CLUSTER_SECRET, REPORT, SECRETS, token


def expect(resp: TestResponse, status: int, code: str) -> None:
    """The answer is exactly {"error": {"code", "message"}} with this status and code."""
    assert resp.status_code == status, resp.data
    body = resp.get_json()
    assert isinstance(body, dict) and body.keys() == {"error"}, body
    assert body["error"].keys() == {"code", "message"} and body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str)


def node_post(
    client: FlaskClient,
    path: str,
    body: bytes,
    node: str = "s1",
    secret: str | None = None,
    address: str = "127.0.0.1",
    **kw: Any,
) -> TestResponse:
    """POST as a storage node, signed with its own key (``secret`` instead, if given)."""
    key = secret or signing.node_key(CLUSTER_SECRET, node, address)
    headers = {
        **signing.signed_headers(node, key, "POST", path, None, body, cluster=True),
        **kw.pop("headers", {}),
    }
    return client.post(path, data=body, headers={**headers, "Content-Type": "application/json"}, **kw)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", "invalid_app"),
        ("app=Demo&user=u", "invalid_app"),
        ("app=demo", "invalid_user"),
        ("app=demo&user=", "invalid_user"),
        ("app=demo&user=a..b", "invalid_user"),
        ("app=demo&user=a%2Fb", "invalid_user"),
        ("app=demo&user=" + "u" * 129, "invalid_user"),
    ],
)
def test_lookup_refuses_bad_names(client: FlaskClient, query: str, code: str) -> None:
    expect(client.get(f"/api/v1/storages?{query}", headers=token()), 400, code)


def test_lookup_needs_the_app_s_credentials(client: FlaskClient) -> None:
    url = f"/api/v1/storages?app={APP}&user=u1"
    expect(client.get(url), 401, "missing_credentials")
    expect(client.get(url, headers={"Authorization": "Bearer mg1.demo.1.x"}), 401, "bad_token")
    expect(client.get(url, headers=token("other")), 403, "forbidden")


def test_lookup_answers_from_the_node_table(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        app.extensions["mediagrid_nodes"].record(Report.model_validate(REPORT), join=True)
    app.extensions["mediagrid_routes"].put((APP, "u1"), "g1")
    resp = client.get(f"/api/v1/storages?app={APP}&user=u1", headers=token())
    assert resp.status_code == 200, resp.data
    assert resp.get_json() == {
        "app": APP,
        "user": "u1",
        "group": "g1",
        "storages": [{"node_id": "s1", "url": REPORT["url"], "free": REPORT["free"], "load": 0.5}],
    }


@pytest.mark.parametrize("value", ["abc", "0", "-1", "10001", "%C2%B2", "%D9%A1", "9" * 40, "1e3"])
def test_listing_limit(client: FlaskClient, value: str) -> None:
    url = f"/api/v1/files/{APP}/u1?limit={value}"
    expect(client.get(url, headers=token()), 400, "invalid_limit")
    expect(client.get(url), 401, "missing_credentials")  # credentials are checked first


def test_link_ttl_and_links_off(client: FlaskClient) -> None:
    base = f"/api/v1/links/{APP}/u1/a.mp4"
    for ttl in ("0", "604801", "x"):
        expect(client.get(f"{base}?ttl={ttl}", headers=token()), 400, "invalid_ttl")
    expect(client.get(f"{base}?ttl=60", headers=token()), 503, "links_disabled")
    expect(client.get(f"/api/v1/links/{APP}/u1/a..b", headers=token()), 400, "invalid_file_id")


def test_id_count(services: dict[str, Flask]) -> None:
    ids = services["idservice"].test_client()
    for value in ("abc", "0", "1001", "%C2%B2", "9" * 40):
        expect(ids.get(f"/api/v1/ids?count={value}", headers=token()), 400, "invalid_count")
        expect(ids.post(f"/api/v1/ids?count={value}", headers=token()), 400, "invalid_count")
    expect(ids.get("/api/v1/ids?count=abc"), 401, "missing_credentials")


_GOOD = {k: v for k, v in REPORT.items() if k != "node_id"}
BODIES = [
    (b"{not json", "invalid_json"),
    (b"", "invalid_json"),
    (b"null", "invalid_json"),
    (b"[]", "invalid_json"),
    (b"9" * 10000, "invalid_json"),
    (b"[" * 200000, "invalid_json"),
    (json.dumps({"node_id": "s1"}).encode(), "invalid_report"),
    (json.dumps({"node_id": "s1", **_GOOD, "free": "1"}).encode(), "invalid_report"),
    (json.dumps({"node_id": "s1", **_GOOD, "free": True}).encode(), "invalid_report"),
    (json.dumps({"node_id": "s1", **_GOOD, "load": True}).encode(), "invalid_report"),
    (json.dumps({"node_id": "s1", **_GOOD, "heal_source": None}).encode(), "invalid_report"),
    (json.dumps({"node_id": "s1", **_GOOD, "total": 1e400}).encode(), "invalid_report"),
    (json.dumps({"node_id": "s1", **_GOOD, "group": "../g1"}).encode(), "invalid_group"),
    (json.dumps({"node_id": "s1", **_GOOD, "group": "../g1", "free": "1"}).encode(), "invalid_report"),
    (json.dumps({"node_id": "s1", **_GOOD, "url": "file:///etc/passwd"}).encode(), "invalid_report"),
]


@pytest.mark.parametrize("path", ["/api/v1/cluster/join", "/api/v1/cluster/heartbeat"])
@pytest.mark.parametrize(("body", "code"), BODIES, ids=lambda v: repr(v)[:24])
def test_malformed_reports(client: FlaskClient, path: str, body: bytes, code: str) -> None:
    expect(node_post(client, path, body), 400, code)


def test_join_then_heartbeat(client: FlaskClient) -> None:
    body = json.dumps({**REPORT, "load": 1, "extra": "ignored"}).encode()
    expect(node_post(client, "/api/v1/cluster/heartbeat", body), 404, "unknown_node")
    resp = node_post(client, "/api/v1/cluster/join", body)
    assert resp.status_code == 200, resp.data
    assert resp.get_json()["status"] == "joined"
    beat = json.dumps({**REPORT, "seq": 2}).encode()
    assert node_post(client, "/api/v1/cluster/heartbeat", beat).json == {"status": "ok"}


def test_reports_need_the_cluster_secret(client: FlaskClient) -> None:
    body = json.dumps(REPORT).encode()
    path = "/api/v1/cluster/join"
    expect(node_post(client, path, body, node="s2"), 403, "forbidden")
    expect(node_post(client, path, body, secret="wrong"), 401, "bad_cluster_signature")
    expect(client.post(path, data=b"garbage"), 401, "missing_credentials")  # before the body


@pytest.mark.parametrize(
    ("service", "method", "path", "code"),
    [
        ("storage", "PUT", "/api/v1/files/demo/u1/a..b", "invalid_file_id"),
        ("storage", "PUT", "/api/v1/files/Demo/u1/a", "invalid_app"),
        ("storage", "POST", "/api/v1/files/demo/a..b", "invalid_user"),
        ("storage", "GET", "/api/v1/files/demo/u1/a%20b", "invalid_file_id"),
        ("storage", "DELETE", "/api/v1/files/demo/u1/..", "invalid_file_id"),
        ("gateway", "GET", "/files/demo/u1/a%00b", "invalid_file_id"),
        ("tracker", "GET", "/api/v1/files/demo/%C3%A9mile", "invalid_user"),
    ],
)
def test_bad_names_in_paths(
    services: dict[str, Flask], service: str, method: str, path: str, code: str
) -> None:
    expect(services[service].test_client().open(path, method=method, headers=token()), 400, code)


def test_uploads_need_credentials(services: dict[str, Flask]) -> None:
    shim = services["storage"].test_client()
    expect(shim.put("/api/v1/files/demo/u1/a.bin", data=b"x"), 401, "missing_credentials")
    expect(shim.put("/api/v1/files/demo/u1/a.bin", data=b"x", headers=token("other")), 403, "forbidden")


@pytest.mark.parametrize("name", ["tracker", "idservice", "storage", "gateway"])
def test_json_errors_for_unknown_routes_and_methods(services: dict[str, Flask], name: str) -> None:
    c = services[name].test_client()
    expect(c.get("/nowhere"), 404, "not_found")
    expect(c.put("/api/v1/health"), 405, "method_not_allowed")


def test_health_while_mariadb_is_down(client: FlaskClient) -> None:
    body = client.get("/api/v1/health").get_json()
    assert body["db"] == "unavailable" and body["status"] == "ok"
    resp = client.get("/api/v1/health?strict=1")
    assert resp.status_code == 503 and resp.get_json()["status"] == "degraded"


def _signed_at(path: str, query: dict[str, str], ts: int, body: bytes = b"") -> dict[str, str]:
    q = signing.canonical_query(query.items())
    digest = hashlib.sha256(body).hexdigest()
    text = signing.app_request_text("GET", path, q, str(ts), APP, "n1", digest, "")
    sig = signing.sign(SECRETS[APP], text)
    return {
        "X-MG-App": APP,
        "X-MG-Timestamp": str(ts),
        "X-MG-Nonce": "n1",
        signing.CONTENT_SHA256: digest,
        "X-MG-Signature": sig,
    }


def test_signed_requests_are_short_lived_and_single_use(client: FlaskClient) -> None:
    """Item 6: a signature is valid SIGNATURE_MAX_SKEW (60 s, was 300 s) either side of
    its timestamp, and only once; its body digest must match the body."""
    url, q = "/api/v1/storages", {"app": APP, "user": "u1"}
    expect(
        client.get(url, query_string=q, headers=_signed_at(url, q, int(time.time()) - 90)),
        401,
        "expired_signature",
    )
    fresh = _signed_at(url, q, int(time.time()))
    assert client.get(url, query_string=q, headers=fresh).status_code != 401
    expect(client.get(url, query_string=q, headers=fresh), 401, "replayed_signature")
    other = signing.signed_headers(APP, SECRETS[APP], "GET", url, q)
    expect(client.get(url, query_string=q, headers=other, data=b"a body not signed"), 401, "bad_signature")
    unsigned_digest = {k: v for k, v in other.items() if k != signing.CONTENT_SHA256}
    expect(client.get(url, query_string=q, headers=unsigned_digest), 401, "bad_signature")


def _token(scope: signing.Scope | None = None, ttl: int = 600, secret: str = SECRETS[APP]) -> dict[str, str]:
    return {"Authorization": "Bearer " + signing.make_token(APP, secret, int(time.time()) + ttl, scope)}


def test_tokens_live_at_most_token_max_ttl(client: FlaskClient) -> None:
    """Item 7: `mediagrid token --ttl 315360000` was accepted; now the server refuses a
    token that expires more than TOKEN_MAX_TTL (a day) ahead and the CLI mints none."""
    url = f"/api/v1/storages?app={APP}&user=u1"
    expect(client.get(url, headers=_token(ttl=2 * 86400)), 401, "token_too_long")
    assert client.get(url, headers=_token(ttl=3600)).status_code != 401
    with pytest.raises(MediagridError, match="at most 86400 s"):
        Client("http://127.0.0.1:9", APP, SECRETS[APP]).token(315360000)


def test_cli_refuses_a_long_token_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDIAGRID_SECRET", SECRETS[APP])
    assert cli.main(["--app", APP, "token", "--ttl", "315360000"]) == 1
    assert "a token lives at most 86400 s" in capsys.readouterr().err
    assert cli.main(["--app", APP, "token", "--ttl", "600", "--user", "u1", "--read-only"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("mg2.demo.") and signing.Scope.decode(printed.split(".")[3]).read_only


def test_scoped_tokens_reach_only_their_scope(services: dict[str, Flask]) -> None:
    """Item 7: a token limited to a user, to reading, or to a file-id prefix is refused
    (403 out_of_scope) beyond it and accepted within it."""
    tracker, shim, ids = (services[n].test_client() for n in ("tracker", "storage", "idservice"))
    alice = _token(signing.Scope(user="alice"))
    expect(tracker.get(f"/api/v1/storages?app={APP}&user=bob", headers=alice), 403, "out_of_scope")
    expect(tracker.get(f"/api/v1/files/{APP}/bob", headers=alice), 403, "out_of_scope")
    assert tracker.get(f"/api/v1/storages?app={APP}&user=alice", headers=alice).status_code != 403
    expect(tracker.get("/api/v1/groups", headers=alice), 403, "out_of_scope")
    reader = _token(signing.Scope(read_only=True))
    expect(shim.put(f"/api/v1/files/{APP}/u1/a.bin", data=b"x", headers=reader), 403, "out_of_scope")
    expect(shim.delete(f"/api/v1/files/{APP}/u1/a.bin", headers=reader), 403, "out_of_scope")
    expect(ids.post("/api/v1/ids?count=1", headers=reader), 403, "out_of_scope")
    assert shim.get(f"/api/v1/files/{APP}/u1/a.bin", headers=reader).status_code == 503  # auth passed
    clips = _token(signing.Scope(prefix="clip-"))
    expect(tracker.get(f"/api/v1/links/{APP}/u1/song.mp3?ttl=60", headers=clips), 403, "out_of_scope")
    expect(tracker.get(f"/api/v1/links/{APP}/u1/clip-1?ttl=60", headers=clips), 503, "links_disabled")
    expect(shim.post(f"/api/v1/files/{APP}/u1", data=b"x", headers=clips), 403, "out_of_scope")
    # the scope is signed: widening it breaks the token
    forged = alice["Authorization"].split(".")
    forged[3] = signing.Scope().encode()
    expect(
        tracker.get(f"/api/v1/storages?app={APP}&user=bob", headers={"Authorization": ".".join(forged)}),
        401,
        "bad_token",
    )
    expect(
        tracker.get(
            f"/api/v1/storages?app={APP}&user=bob", headers={"Authorization": "Bearer mg1.demo.9999999999.x"}
        ),
        401,
        "bad_token",
    )


def test_two_secrets_are_valid_during_a_rotation(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 7: while an app's secret is rotated both verify (tokens, signatures, URLs)."""
    monkeypatch.setattr(
        auth._secrets,
        "get",
        lambda app: apps.Credentials(("new-secret", SECRETS[APP])) if app == APP else None,
    )
    url, q = "/api/v1/storages", {"app": APP, "user": "u1"}
    for secret in ("new-secret", SECRETS[APP]):
        assert client.get(url, query_string=q, headers=_token(secret=secret)).status_code != 401
        signed = signing.signed_headers(APP, secret, "GET", url, q)
        assert client.get(url, query_string=q, headers=signed).status_code != 401
    expect(client.get(url, query_string=q, headers=_token(secret="retired")), 401, "bad_token")


def test_unknown_app_is_answered_as_a_wrong_signature(client: FlaskClient) -> None:
    """Item 16: `unknown_app` told an attacker which app names exist; an unknown app now
    gets the very answer of a wrong secret, for signed requests and for tokens."""
    url = "/api/v1/storages"
    answers = []
    for app in ("ghost", APP):
        q = {"app": app, "user": "u1"}
        resp = client.get(url, query_string=q, headers=signing.signed_headers(app, "wrong", "GET", url, q))
        expect(resp, 401, "bad_signature")
        answers.append(resp.get_json())
    assert answers[0] == answers[1]
    answers = []
    for app in ("ghost", APP):
        bearer = signing.make_token(app, "wrong", int(time.time()) + 600)
        q = {"app": app, "user": "u1"}
        resp = client.get(url, query_string=q, headers={"Authorization": f"Bearer {bearer}"})
        expect(resp, 401, "bad_token")
        answers.append(resp.get_json())
    assert answers[0] == answers[1]


def test_topology_only_for_admin_credentials(client: FlaskClient) -> None:
    """Item 16: any app's token listed every node, address and capacity; now only an
    admin app (or a node) sees /api/v1/groups."""
    expect(client.get("/api/v1/groups", headers=token(APP)), 403, "forbidden")
    assert client.get("/api/v1/groups", headers=token(ADMIN)).status_code == 200
    key = signing.node_key(CLUSTER_SECRET, "s1", "127.0.0.1")
    node = signing.signed_headers("s1", key, "GET", "/api/v1/groups", cluster=True)
    assert client.get("/api/v1/groups", headers=node).status_code == 200


def test_uploads_past_max_upload_bytes_are_413(config: dict[str, Any]) -> None:
    """Item 15: no upload size limit existed; a body declared (or streamed) past
    MAX_UPLOAD_BYTES is refused with 413 file_too_large, before any of it is stored."""
    shim = storage.create_app({**config, "MAX_UPLOAD_BYTES": 100}).test_client()
    resp = shim.put("/api/v1/files/demo/u1/a.bin", data=b"x" * 101, headers=token())
    expect(resp, 413, "file_too_large")
    assert not any(Path(config["DATA_DIR"]).rglob("*.bin"))


def test_node_keys_are_per_node_and_bound_to_the_address(client: FlaskClient) -> None:
    """Item 8: one cluster secret on every node let any node (or anyone who took it from
    one) report for any other. Each node now signs with its own key, bound to its id and
    address; the master key itself signs nothing."""
    body = json.dumps(REPORT).encode()
    path = "/api/v1/cluster/join"
    other = signing.node_key(CLUSTER_SECRET, "s2", "127.0.0.1")
    expect(node_post(client, path, body, secret=other), 401, "bad_cluster_signature")
    expect(node_post(client, path, body, secret=CLUSTER_SECRET), 401, "bad_cluster_signature")
    elsewhere = {"REMOTE_ADDR": "10.0.0.9"}
    expect(node_post(client, path, body, environ_base=elsewhere), 401, "bad_cluster_signature")
    assert node_post(client, path, body, address="10.0.0.9", environ_base=elsewhere).status_code == 200
    # behind our own nginx (on loopback), the address it saw: the last forwarded entry
    forwarded = {"X-Forwarded-For": "10.0.0.7, 10.0.0.9"}
    body = json.dumps({**REPORT, "seq": 2}).encode()
    expect(node_post(client, path, body, address="10.0.0.7", headers=forwarded), 401, "bad_cluster_signature")


def test_replayed_or_stale_reports_are_refused(client: FlaskClient) -> None:
    """Item 8: the tracker stamped its own time on whatever arrived, so a captured
    heartbeat could be replayed; a report must now be newer than the last one taken."""

    def report(seq: int) -> bytes:
        return json.dumps({**REPORT, "seq": seq}).encode()

    assert node_post(client, "/api/v1/cluster/join", report(5)).status_code == 200
    expect(node_post(client, "/api/v1/cluster/heartbeat", report(5)), 409, "stale_report")
    assert node_post(client, "/api/v1/cluster/heartbeat", report(6)).status_code == 200
    expect(node_post(client, "/api/v1/cluster/heartbeat", report(6)), 409, "stale_report")
    expect(node_post(client, "/api/v1/cluster/join", report(3)), 409, "stale_report")
