"""The player page and its QoS reports on the loopback cluster (issue 12): the media API's
``player`` URL opens the nginx role's page, which plays with hls.js in headless Chromium,
switches rungs, seeks, and reports to POST /api/v1/qos, whose rows land in qos_reports."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
import yaml

from mediagrid import links
from mediagrid.client import Client
from mediagrid.db import Connection
from mediagrid_dev import DevCluster
from mediagrid_dev.browser import CHROMIUM, chromium_args
from mediagrid_dev.role import REPO

from .media import H264_AAC, clip
from .test_worker import drain, upload, user_of

pytestmark = pytest.mark.integration

NGINX_DEFAULTS = yaml.safe_load((REPO / "roles" / "nginx" / "defaults" / "main.yml").read_text())
CSP = (
    "default-src 'self'; media-src 'self' blob:; img-src 'self' data:; connect-src 'self';"
    " script-src 'self'; style-src 'self'; frame-ancestors 'none'"
)
# nothing but loopback resolves: a refused page could not reach another origin anyway
CHROMIUM_ARGS = chromium_args(extra=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
PLAYER = "window.mediagridPlayer"


@pytest.fixture(scope="session")
def hlsjs() -> Path:
    """hls.js for the page (the dev cluster links it from build/player/): made if missing."""
    path = REPO / "build" / "player" / "hls.light.min.js"
    if not path.is_file():
        subprocess.run(["make", "-C", str(REPO), "player"], check=True, timeout=600)
    return path


@pytest.fixture(scope="module")
def video(
    hlsjs: Path, client: Client, cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A 480p H.264 video with its ladder made (source and 360p): its files row and media."""
    src = clip(tmp_path_factory.mktemp("player") / "player.mp4", *H264_AAC, size="854x480", secs=4)
    conn = cluster.db()
    try:
        row = upload(client, cluster, conn, src)
        drain(cluster, conn, row["grp"], row["sid"])
        user = user_of(conn, row["sid"])
    finally:
        conn.close()
    return {**row, "user": user, "file_id": src.name, "media": client.media(user, src.name)}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def wait_until(page: Any, expression: str, timeout: float = 20) -> None:
    """Poll ``expression`` in the page until it is true. (Playwright's wait_for_function
    evaluates its predicate with eval, which the page's CSP forbids, as it should.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {expression}; {page.evaluate(PLAYER)}")
        page.wait_for_timeout(100)


def qos_rows(conn: Connection, sid: int) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM qos_reports WHERE sid = %s ORDER BY id", (sid,))
        rows = list(cur.fetchall())
    conn.commit()
    return rows


def wait_rows(conn: Connection, sid: int, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(rows := qos_rows(conn, sid)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return rows


def test_the_media_api_gives_the_player_url(cluster: DevCluster, video: dict[str, Any]) -> None:
    got = video["media"]
    assert got["hls"] and got["player"] == f"{cluster.url}/player/#src={quote(got['hls'], safe='')}"
    master = requests.get(got["hls"], timeout=5).text
    assert master.count("#EXT-X-STREAM-INF") >= 2, master  # the source and 360p


def test_the_player_plays_switches_seeks_and_reports(
    cluster: DevCluster, conn: Connection, video: dict[str, Any], browser: Any
) -> None:
    page = browser.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    page.goto(video["media"]["player"])
    wait_until(page, "document.getElementById('video').currentTime > 0.5")
    wait_until(page, f"{PLAYER}.firstFrameMs !== null", 10)
    measured = page.evaluate(PLAYER)
    assert isinstance(measured["firstFrameMs"], int) and measured["firstFrameMs"] > 0, measured
    assert measured["refused"] is None and len(measured["levels"]) >= 2, measured
    assert page.is_hidden("#message")
    assert page.evaluate("document.getElementById('video').poster").endswith("/poster.jpg")
    # the report after the first frame
    rows = wait_rows(conn, video["sid"], 1)
    assert len(rows) == 1 and rows[0]["app"] == video["app"], rows
    assert rows[0]["first_frame_ms"] == measured["firstFrameMs"]
    assert rows[0]["event"] == "first_frame" and rows[0]["view_id"] == measured["view"], rows

    # a fixed rung from the menu, then a seek: it plays on from there at that rung
    page.evaluate("document.getElementById('video').pause()")
    current = page.evaluate(f"{PLAYER}.currentLevel")
    other = next(level["index"] for level in measured["levels"] if level["index"] != current)
    page.select_option("#quality", str(other))
    page.evaluate("(() => { const v = document.getElementById('video'); v.currentTime = 2; v.play(); })()")
    video_el = "document.getElementById('video')"
    playing_on = f"!{video_el}.seeking && {video_el}.currentTime > 2.2"
    wait_until(page, f"{PLAYER}.currentLevel === {other} && !{PLAYER}.autoLevel && {playing_on}")
    assert page.evaluate(f"{PLAYER}.switches") >= 1
    assert page.evaluate("document.getElementById('video').error") is None
    page.select_option("#quality", "-1")
    assert page.evaluate(f"{PLAYER}.autoLevel") is True
    assert not [text for text in console if "Content Security Policy" in text], console

    # leaving the page sends the last report: the view's row holds its latest numbers
    switches = page.evaluate(f"{PLAYER}.switches")
    page.goto("about:blank")
    deadline = time.monotonic() + 10
    while (rows := qos_rows(conn, video["sid"]))[0]["event"] != "end" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(rows) == 1 and rows[0]["event"] == "end" and rows[0]["switches"] == switches, rows
    assert rows[0]["first_frame_ms"] == measured["firstFrameMs"]
    page.close()


def test_the_scrub_bar_previews_and_seeks(video: dict[str, Any], browser: Any) -> None:
    """The thumbnails track (thumbs.vtt beside the master) gives the page a scrub bar: a
    pointer over it shows the sprite's tile for that time; a click seeks there."""
    assert video["media"]["thumbnails_vtt"] == video["media"]["hls"].replace("master.m3u8", "thumbs.vtt")
    page = browser.new_page()
    page.goto(video["media"]["player"])
    wait_until(page, f"{PLAYER}.thumbnails > 0 && document.getElementById('video').duration > 0")
    bar = page.locator("#scrub")
    box = bar.bounding_box()
    assert box is not None and box["width"] > 100
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    page.wait_for_selector("#preview", state="visible", timeout=5000)
    duration = page.evaluate("document.getElementById('video').duration")
    assert abs(page.evaluate(f"{PLAYER}.previewAt") - duration / 2) < 0.2
    picture = page.evaluate("getComputedStyle(document.getElementById('preview-picture')).backgroundImage")
    assert "/sprite.jpg" in picture, picture
    page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)
    wait_until(page, f"Math.abs(document.getElementById('video').currentTime - {duration * 0.75}) < 1")
    page.mouse.move(box["x"], box["y"] - 200)
    page.wait_for_selector("#preview", state="hidden", timeout=5000)
    page.close()


@pytest.mark.parametrize(
    "src",
    [
        "http://example.com/hls/AAAAAAAAAAAAAAAAAAAAAA/1/g1/00/00/0000000000000001.mp4.hls/master.m3u8",
        "//example.com/hls/x/master.m3u8",
        "/api/v1/health",
        "/hls/../api/v1/health.m3u8",
        "javascript:alert(1)",
        "",
    ],
)
def test_the_player_refuses_other_origins_and_paths(cluster: DevCluster, browser: Any, src: str) -> None:
    page = browser.new_page()
    asked: list[str] = []
    page.on("request", lambda req: asked.append(req.url))
    page.goto(f"{cluster.url}/player/#src={quote(src, safe='')}")
    page.wait_for_selector("#message", state="visible", timeout=10000)
    text = page.text_content("#message") or ""
    assert ("Refused" in text or "No video" in text) and page.evaluate(f"{PLAYER}.refused") == text
    page.wait_for_timeout(300)
    loaded = [url.split("#")[0] for url in asked]
    assert all(url.startswith(f"{cluster.url}/player/") for url in loaded), loaded
    assert page.evaluate("document.getElementById('video').currentSrc") == ""
    page.close()


def test_the_player_page_has_its_csp(cluster: DevCluster, hlsjs: Path) -> None:
    # the role's default, rendered with no live edges besides this origin
    assert "connect-src {{" in NGINX_DEFAULTS["nginx_player_csp"]
    page = requests.get(f"{cluster.url}/player/", timeout=5)
    assert page.status_code == 200 and "player.js" in page.text
    assert page.headers["Content-Security-Policy"] == CSP
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    script = requests.get(f"{cluster.url}/player/hls.light.min.js", timeout=5)
    assert script.status_code == 200 and "javascript" in script.headers["Content-Type"]
    assert script.content == hlsjs.read_bytes()
    assert script.headers["Content-Security-Policy"] == CSP
    assert requests.get(f"{cluster.url}/player/hls.js-LICENSE.txt", timeout=5).status_code == 200


def test_qos_reports_through_nginx(cluster: DevCluster, conn: Connection, video: dict[str, Any]) -> None:
    url = f"{cluster.url}/api/v1/qos"
    before = len(qos_rows(conn, video["sid"]))
    body = {"src": video["media"]["hls"], "first_frame_ms": 321.0, "stalls": 2, "stall_ms": 150.5}
    body["switches"] = 1
    ok = requests.post(url, json=body, timeout=5)
    assert ok.status_code == 204 and ok.content == b""
    row = qos_rows(conn, video["sid"])[-1]
    assert len(qos_rows(conn, video["sid"])) == before + 1
    numbers = [row[k] for k in ("first_frame_ms", "stalls", "stall_ms", "switches", "errors")]
    assert row["app"] == video["app"] and numbers == [321.0, 2, 150.5, 1, 0], row
    # a path alone is taken too (the player sends the whole URL)
    path_only = {**body, "src": "/hls/" + video["media"]["hls"].split("/hls/", 1)[1]}
    assert requests.post(url, json=path_only, timeout=5).status_code == 204

    def refused(payload: Any, **kwargs: Any) -> tuple[int, str]:
        resp = requests.post(url, json=payload, timeout=5, **kwargs)
        return resp.status_code, resp.json()["error"]["code"]

    hls = video["media"]["hls"]
    parts = hls.split("/")
    at = parts.index("hls") + 1
    forged = "/".join([*parts[:at], "A" * 22, *parts[at + 1 :]])
    assert refused({**body, "src": forged}) == (403, "bad_qos_source")
    old = links.hls(cluster.link_key, "/hls", video["grp"], video["path"], 60, time.time() - 7 * 86400)
    assert refused({**body, "src": cluster.url + old["base"] + "master.m3u8"}) == (403, "bad_qos_source")
    assert refused({**body, "stalls": -1}) == (400, "invalid_qos")
    # larger than nginx's bound for this location: nginx's own JSON 413
    assert refused({**body, "padding": "x" * 8192}) == (413, "payload_too_large")
    assert refused({**body, "view": "short"}) == (400, "invalid_qos")
    assert refused({**body, "event": "other"}) == (400, "invalid_qos")
    assert len(qos_rows(conn, video["sid"])) == before + 2
    # a view's reports: one row, the first frame kept, the counts the latest
    view = {**body, "view": "v" * 32, "event": "first_frame", "stalls": 0, "first_frame_ms": 400.0}
    assert requests.post(url, json=view, timeout=5).status_code == 204
    last = {**view, "event": "end", "stalls": 3, "first_frame_ms": None}
    assert requests.post(url, json=last, timeout=5).status_code == 204
    rows = qos_rows(conn, video["sid"])
    assert len(rows) == before + 3
    assert (rows[-1]["event"], rows[-1]["stalls"], rows[-1]["first_frame_ms"]) == ("end", 3, 400.0)


def test_qos_reports_are_rate_limited_per_address(cluster: DevCluster) -> None:
    """The last test of the module: it spends this address's burst of reports."""
    codes = [requests.post(f"{cluster.url}/api/v1/qos", json={"src": "/hls/x"}, timeout=5) for _ in range(30)]
    assert {r.status_code for r in codes} == {403, 429}
    limited = next(r for r in codes if r.status_code == 429)
    assert limited.json()["error"]["code"] == "too_many_requests"


def test_the_player_plays_a_live_stream(
    cluster: DevCluster, client: Client, hlsjs: Path, browser: Any
) -> None:
    """The page takes a live stream's play URL; the tracker's 302 to the edge (here the
    front itself) is followed and hls.js plays the origin's HLS through the edge cache."""
    from mediagrid_dev.live import publishing

    from .test_live import state, until

    got = client.live_publish("onpage", "alice")
    with publishing(got["publish"]["primary"]["url"]):
        until(lambda: state(client, "onpage") == "live", 10)
        # the origin's first segment is out (the page opens a stream that plays)
        until(lambda: "#EXTINF" in requests.get(got["play"]["hls"], timeout=10).text, 10)
        page = browser.new_page()
        console: list[str] = []
        page.on("console", lambda msg: console.append(msg.text))
        page.goto(f"{cluster.url}/player/#src={quote(got['play']['hls'], safe='')}")
        wait_until(page, "document.getElementById('video').currentTime > 1", 30)
        measured = page.evaluate(PLAYER)
        assert measured["refused"] is None and measured["firstFrameMs"] > 0, measured
        assert not [text for text in console if "Content Security Policy" in text], console
        page.close()
