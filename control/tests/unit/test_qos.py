"""The player's QoS endpoint (POST /api/v1/qos) in the fast layer: the body's bounds and the
token of ``src``, checked before MariaDB (down here) is reached; and links.verify_hls."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from mediagrid import links, names, tracker

KEY = "unit-link-key"
PATH = names.storage_path(0x1234, ".mp4")


@pytest.fixture
def qos(config: dict[str, Any]) -> FlaskClient:
    return tracker.create_app({**config, "LINK_KEY": KEY}).test_client()


def src(ttl: int = 3600, now: float | None = None, key: str = KEY, file: str = "master.m3u8") -> str:
    return "http://cluster" + links.hls(key, "/hls", "g1", PATH, ttl, now)["base"] + file


def report(**over: Any) -> dict[str, Any]:
    numbers = {"first_frame_ms": 412.5, "stalls": 1, "stall_ms": 250, "switches": 2, "errors": 0}
    return {"src": src(), **numbers, **over}


def error(resp: Any) -> tuple[int, str]:
    return resp.status_code, resp.json["error"]["code"]


def test_a_valid_report_reaches_the_database(qos: FlaskClient) -> None:
    # MariaDB is down in this layer: a report that passed every check is its 503
    assert error(qos.post("/api/v1/qos", json=report())) == (503, "db_unavailable")
    rung = {"src": src(file="360p/index.m3u8")}  # any file under the renditions; numbers default to 0
    assert error(qos.post("/api/v1/qos", json=rung)) == (503, "db_unavailable")


def test_a_late_report_of_an_expired_url_is_taken(qos: FlaskClient) -> None:
    late = src(ttl=60, now=time.time() - 3600)  # expired an hour ago, within HLS_TTL
    assert error(qos.post("/api/v1/qos", json=report(src=late))) == (503, "db_unavailable")


@pytest.mark.parametrize(
    "bad",
    [
        src(key="another-key"),  # forged
        src(ttl=60, now=time.time() - 86400 - 3600),  # expired longer ago than HLS_TTL
        src().replace("/g1/", "/g2/"),  # the token of another video
        src().replace("/hls/", "/d/"),  # not under the HLS prefix
        "http://cluster/hls/g1/" + PATH + ".hls/master.m3u8",  # no token
        "/api/v1/health",
        "not a url at all",
    ],
)
def test_src_must_be_a_valid_hls_url(qos: FlaskClient, bad: str) -> None:
    assert error(qos.post("/api/v1/qos", json=report(src=bad))) == (403, "bad_qos_source")


def test_no_link_key_takes_no_report(client: FlaskClient) -> None:
    assert error(client.post("/api/v1/qos", json=report())) == (403, "bad_qos_source")


@pytest.mark.parametrize(
    "body",
    [
        {"first_frame_ms": 1},  # no src
        report(stalls=-1),
        report(stalls=1.5),
        report(stalls="3"),  # strict: numbers are numbers
        report(first_frame_ms=10**9),
        report(stall_ms=-0.5),
        report(errors=10**6),
        report(src=""),
        report(src="x" * 2049),
    ],
)
def test_invalid_reports(qos: FlaskClient, body: dict[str, Any]) -> None:
    assert error(qos.post("/api/v1/qos", json=body)) == (400, "invalid_qos")


def test_not_json_and_too_large(qos: FlaskClient) -> None:
    assert error(qos.post("/api/v1/qos", data=b"[1, 2]", content_type="application/json")) == (
        400,
        "invalid_json",
    )
    assert error(qos.post("/api/v1/qos", data=b"src=x", content_type="text/plain")) == (400, "invalid_json")
    big = json.dumps(report(padding="x" * 5000))
    assert error(qos.post("/api/v1/qos", data=big, content_type="application/json")) == (
        413,
        "payload_too_large",
    )


def test_verify_hls() -> None:
    now = time.time()
    base = links.hls(KEY, "/hls", "g1", PATH, 60, now)["base"]
    for file in ("master.m3u8", "source/index.m3u8", "poster.jpg", "360p/seg_00001.ts"):
        assert links.verify_hls(KEY, "/hls", base + file, now) == ("g1", PATH)
    assert links.verify_hls(KEY, "/hls", base + "master.m3u8", now + 61) is None  # expired
    assert links.verify_hls(KEY, "/hls", base + "master.m3u8", now + 61 - 3600) == ("g1", PATH)
    assert links.verify_hls("other", "/hls", base + "master.m3u8", now) is None
    assert links.verify_hls("", "/hls", base + "master.m3u8", now) is None
    assert links.verify_hls(KEY, "/video", base + "master.m3u8", now) is None
    assert links.verify_hls(KEY, "/hls", base, now) is None  # no file under the renditions
    assert links.verify_hls(KEY, "/hls", base + "../../x.hls/master.m3u8", now) is None
    # a path that is not what storage_path makes for its id (another directory)
    odd = links.hls(KEY, "/hls", "g1", "ff/ff/0000000000001234.mp4", 60, now)["base"]
    assert links.verify_hls(KEY, "/hls", odd + "master.m3u8", now) is None
