"""Live streaming on the loopback dev cluster: ffmpeg publishes to the origins' nginx-rtmp
(the nginx role's rtmp.conf.j2), whose hooks the shims answer; the trackers keep the
registry; the front's edge serves the stream's HLS from its cache."""

from __future__ import annotations

import calendar
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from mediagrid import links, liveviews
from mediagrid.client import Client, MediagridError
from mediagrid_dev import DevCluster
from mediagrid_dev.live import idle_publisher, publishing, refused


def until(check: Callable[[], Any], timeout: float) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - start


def state(client: Client, stream: str) -> str:
    try:
        return str(client.live_stream(stream)["state"])
    except MediagridError as err:
        return err.code


@pytest.fixture(scope="module")
def live(cluster: DevCluster) -> DevCluster:
    cluster.wait_active(4, 30)
    return cluster


def test_publish_play_and_end_on_loopback(live: DevCluster, client: Client) -> None:
    got = client.live_publish("cam1", "alice")
    primary = got["publish"]["primary"]
    assert got["publish"]["backup"]["node_id"][:2] != primary["node_id"][:2]
    play = got["play"]["hls"]
    with publishing(primary["url"]) as proc:
        until(lambda: state(client, "cam1") == "live", 10)
        until(lambda: (client.live_stream("cam1")["ingest"] or {}).get("fps", 0) > 0, 10)
        shown = client.live_stream("cam1")
        assert shown["origin"] == primary["node_id"] and shown["ingest"]["width"] == 320
        # the play URL: 302 to the edge (the front), which caches the origin's HLS
        resp = requests.get(play, allow_redirects=False, timeout=10)
        assert resp.status_code == 302, resp.text
        edge = resp.headers["Location"]
        assert urlsplit(edge).path.startswith("/lhls/")
        until(lambda: "#EXTINF" in requests.get(edge, timeout=10).text, 10)
        listed = requests.get(edge, timeout=10).text
        seg = edge.rsplit("/", 1)[0] + "/" + [ln for ln in listed.splitlines() if ln.endswith(".ts")][-1]
        assert requests.get(seg, timeout=10).status_code == 200
        again = requests.get(seg, timeout=10)
        assert again.headers.get("X-Cache-Status") == "HIT"
        # a player whose origin stopped answering asks for another one (avoid=): none
        alone = requests.get(play + f"&avoid={primary['node_id']}", allow_redirects=False, timeout=10)
        assert (alone.status_code, alone.json()["error"]["code"]) == (404, "no_backup")
        # another publisher of the stream's primary, and keys that do not fit, are refused
        base = primary["url"].partition("?k=")[0]
        assert refused(primary["url"]) != 0
        assert refused(base) != 0
        assert refused(base + "?k=nonsense") != 0
        assert state(client, "cam1") == "live"
        # silence: dropped by nginx-rtmp after 5 s, ended in the registry at once
        os.kill(proc.pid, signal.SIGSTOP)
        took = until(lambda: state(client, "cam1") == "ended", 10)
    assert took <= 6.5
    gone = requests.get(play, allow_redirects=False, timeout=10)
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "stream_offline")
    codes = {e["code"] for e in client.live_events("cam1") if e["event"] == "refused"}
    assert {"already_live", "missing_key", "malformed_key"} <= codes


def test_viewers_are_the_play_sessions_fetching_the_playlist(live: DevCluster, client: Client) -> None:
    """Each play through the tracker's redirect is one viewer while its player fetches the
    playlist from the edge (cache hits count too); one who stops leaves the count."""
    got = client.live_publish("crowd1", "alice")
    with publishing(got["publish"]["primary"]["url"]):
        until(lambda: state(client, "crowd1") == "live", 10)
        plays = [requests.get(got["play"]["hls"], allow_redirects=False, timeout=10) for _ in range(3)]
        edges = [p.headers["Location"] for p in plays]
        assert len({urlsplit(e).query for e in edges}) == 3  # a session for each play
        until(lambda: "#EXTINF" in requests.get(edges[0], timeout=10).text, 10)
        counts: list[int] = []

        def watched_by(players: list[str], viewers: int) -> bool:
            for edge in players:
                requests.get(edge, timeout=10).raise_for_status()
            counts.append(int(client.live_stream("crowd1")["viewers"]))
            time.sleep(0.4)
            return counts[-1] == viewers

        until(lambda: watched_by(edges, 3), 10)
        assert max(counts) == 3, counts
        # as the README's `mediagrid live ls` shows it
        env = {**os.environ, "MEDIAGRID_CLIENT_CONFIG": str(live.root / "client.toml")}
        cli = [sys.executable, "-m", "mediagrid.cli", "live", "ls"]
        listed = subprocess.run(cli, env=env, capture_output=True, text=True, check=True).stdout.splitlines()
        assert [ln.split()[-2:] for ln in listed if ln.startswith("crowd1 ")] == [["3", "viewers"]]
        counts.clear()
        until(lambda: watched_by(edges[:1], 1), liveviews.WINDOW + 5)  # two players stop
        assert min(counts) >= 1 and max(counts) <= 3, counts
    until(lambda: state(client, "crowd1") == "ended", 10)


def test_play_errors(live: DevCluster, client: Client) -> None:
    got = client.live_publish("quiet", "alice")
    play = got["play"]["hls"]
    path = urlsplit(play).path
    assert requests.get(play, timeout=10).json()["error"]["code"] == "stream_offline"
    unknown = requests.get(live.url + "/live/demo/nobody.m3u8?" + urlsplit(play).query, timeout=10)
    assert unknown.json()["error"]["code"] == "forbidden"  # the token is the stream's
    forged = requests.get(f"{live.url}{path}?token=1-{got['play']['token'].split('-', 1)[1]}", timeout=10)
    assert (forged.status_code, forged.json()["error"]["code"]) == (403, "forbidden")

    def token(stream: str, expires: int) -> str:
        return f"{expires}-{links.token(live.link_key, f'/live/demo/{stream}', expires)}"

    old = int(time.time()) - 10
    expired = requests.get(f"{live.url}{path}?token={token('quiet', old)}", timeout=10)
    assert (expired.status_code, expired.json()["error"]["code"]) == (403, "token_expired")
    never = requests.get(f"{live.url}/live/demo/nobody.m3u8?token={token('nobody', old + 3600)}", timeout=10)
    assert (never.status_code, never.json()["error"]["code"]) == (404, "unknown_stream")
    assert never.headers["Access-Control-Allow-Origin"] == "*"
    # the edge's own refusal of a forged HLS URL: a JSON error a player on any page can read
    node = got["publish"]["primary"]["node_id"]
    edge = requests.get(f"{live.url}/lhls/{'A' * 22}/{old + 3600}/{node}/demo.quiet/index.m3u8", timeout=10)
    assert (edge.status_code, edge.json()["error"]["code"]) == (403, "forbidden")
    assert edge.headers["Access-Control-Allow-Origin"] == "*"
    with pytest.raises(MediagridError) as taken:
        client.live_publish("quiet", "bob")
    assert taken.value.code == "stream_taken"


def test_rtmp_play_through_the_edge_pulls_from_the_origin(live: DevCluster, client: Client) -> None:
    got = client.live_publish("rtmp1", "alice")
    token = got["play"]["token"]
    edge = f"rtmp://127.0.0.1:{live.front_rtmp_port}/live/demo.rtmp1"

    def probe(url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ffprobe", "-v", "error", "-rw_timeout", "8000000", "-show_entries", "stream=codec_name,width",
             "-of", "csv=p=0", url], capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

    offline = probe(f"{edge}?token={token}")
    assert offline.returncode != 0  # the edge's on_play: 404, the player fails at once
    with publishing(got["publish"]["primary"]["url"]):
        until(lambda: state(client, "rtmp1") == "live", 10)
        played = probe(f"{edge}?token={token}")
        assert played.returncode == 0 and "h264,320" in played.stdout, played.stderr
        assert probe(edge).returncode != 0  # no token, no play


@pytest.mark.parametrize(
    "name", ["demo.a..b", "demo", "demo.", "demo.-x", "demo." + "x" * 65, "Demo.cam1", "demo.cam%2F1"]
)
# nginx-rtmp's HLS refuses a name with ".." itself, before any hook ("hls: bad stream
# name" in its error log): the publish is refused, with nothing for the shim to log
def test_names_that_are_no_stream_are_refused_and_logged(
    live: DevCluster, client: Client, conn: Any, name: str
) -> None:
    primary = client.live_publish("named", "alice")["publish"]["primary"]
    key, port = primary["url"].partition("?k=")[2], live.storage_nodes[primary["node_id"]]["rtmp_port"]
    with conn.cursor() as cur:
        cur.execute("SELECT COALESCE(MAX(id), 0) AS id FROM live_events")
        last = cur.fetchone()["id"]
    assert refused(f"rtmp://127.0.0.1:{port}/live/{name}?k={key}") != 0
    conn.commit()
    with conn.cursor() as cur:
        # refusals only: other tests' streams may still be logging their ends
        cur.execute("SELECT code FROM live_events WHERE id > %s AND event = 'refused'", (last,))
        logged = [r["code"] for r in cur.fetchall()]
    assert logged == ([] if ".." in name else ["invalid_stream"])
    assert state(client, "named") == "idle"


def _drain(sock: socket.socket) -> None:
    """Read what nginx-rtmp says until it closes the connection (5 s at most)."""
    sock.settimeout(5)
    try:
        while sock.recv(4096):
            pass
    except (TimeoutError, ConnectionResetError):
        pass


def test_audio_only_and_garbage_publishers(live: DevCluster, client: Client) -> None:
    """Audio alone is a live stream without a picture; a client that speaks no RTMP is
    closed by nginx-rtmp and leaves nothing behind; the other streams go on."""
    got = client.live_publish("radio", "alice")
    url = got["publish"]["primary"]["url"]
    host, port = urlsplit(url).hostname, urlsplit(url).port
    audio = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i", "sine", "-c:a", "aac", "-t", "30",
         "-f", "flv", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        until(lambda: state(client, "radio") == "live", 10)
        until(lambda: (client.live_stream("radio")["ingest"] or {}).get("bitrate", 0) > 0, 10)
        assert client.live_stream("radio")["ingest"]["width"] == 0
        # garbage on the RTMP port: closed, no session, the audio stream still live
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(os.urandom(4096))
            _drain(sock)
        assert state(client, "radio") == "live"
        assert "radio" in [s["stream"] for s in client.live_streams() if s["state"] == "live"]
    finally:
        audio.kill()
        audio.wait(timeout=10)


def _probe(url: str, *args: str) -> list[str]:
    """ffprobe's answer for ``url``, one value per line (csv, no section names)."""
    run = subprocess.run(
        ["ffprobe", "-v", "error", *args, "-of", "csv=p=0", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return run.stdout.split()


def _duration(url: str) -> float:
    return float(_probe(url, "-show_entries", "format=duration")[0])


def _parts(client: Client, user: str, stream: str) -> list[dict[str, Any]]:
    return [f for f in client.list(user) if f["file_id"].startswith(f"{stream}-")]


def _parts_left(live: DevCluster, stream: str) -> list[str]:
    """The parts of ``stream`` being written or waiting for the agent on any origin."""
    left = []
    for node in live.storage_nodes.values():
        root = node["live_record_dir"]
        ready = os.path.join(root, "ready")
        left += [p for p in os.listdir(root) if f".{stream}-" in p]
        left += [p for p in os.listdir(ready) if stream in p] if os.path.isdir(ready) else []
    return left


def test_recording_becomes_files_and_snapshots_are_listed(live: DevCluster, client: Client) -> None:
    got = client.live_publish("rec1", "alice", record=True, snapshot_every=1)
    assert got["record"] is True
    primary, backup = got["publish"]["primary"], got["publish"]["backup"]
    # both publishers of a dual hot stream: only the primary is recorded
    with publishing(primary["url"], seconds=12) as proc, publishing(backup["url"], seconds=12):
        until(lambda: state(client, "rec1") == "live", 10)
        assert client.live_stream("rec1")["recording"] is True
        until(lambda: len(client.live_snapshots("rec1")) >= 2, 15)
        snaps = client.live_snapshots("rec1")
        assert snaps[0]["at"] > snaps[1]["at"]  # newest first
        img = requests.get(snaps[0]["url"], timeout=10)
        assert img.status_code == 200, img.text
        assert img.headers["Content-Type"] == "image/jpeg" and img.content[:2] == b"\xff\xd8"
        assert client.live_stream("rec1")["snapshot"]
        proc.wait(timeout=30)
    # 12 s at 10 s a part: two parts, each a file of the owner named by stream and start
    until(lambda: len(_parts(client, "alice", "rec1")) == 2, 20)
    parts = sorted(f["file_id"] for f in _parts(client, "alice", "rec1"))
    durations = [_duration(client.playback_url("alice", fid)) for fid in parts]
    assert abs(sum(durations) - 12) <= 1.0, durations  # within a GOP (1 s)
    assert 9 <= durations[0] <= 11
    recorded = [e for e in client.live_events("rec1") if e["event"] == "recorded"]
    assert sorted(e["code"] for e in recorded) == parts

    # nothing is left on the origins: the backup's parts were dropped (by its agent, within
    # a round or two of the end), the others stored
    until(lambda: not _parts_left(live, "rec1"), 10)


def test_an_unrecorded_stream_leaves_no_part(live: DevCluster, client: Client) -> None:
    got = client.live_publish("norec", "alice", snapshot_every=0)
    with publishing(got["publish"]["primary"]["url"], seconds=3) as proc:
        until(lambda: state(client, "norec") == "live", 10)
        proc.wait(timeout=30)
    until(lambda: state(client, "norec") == "ended", 10)
    time.sleep(2)
    assert not _parts(client, "alice", "norec")
    assert client.live_snapshots("norec") == []
    assert not _parts_left(live, "norec")


def test_a_picture_over_the_limit_is_dropped_and_logged(live: DevCluster, client: Client) -> None:
    # the dev cluster's LIVE_MAX_PIXELS is 640x480; the origin's agent reads the picture's
    # size from nginx-rtmp's figures and drops the publisher
    url = client.live_publish("huge", "alice")["publish"]["primary"]["url"]
    proc = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=800x608:rate=5",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "5", "-pix_fmt", "yuv420p", "-t", "40", "-f", "flv",
         url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        until(lambda: "picture_too_large" in [e["code"] for e in client.live_events("huge")], 20)
        until(lambda: state(client, "huge") == "ended", 10)
        assert proc.wait(timeout=15) != 0  # ffmpeg's connection was closed under it
    finally:
        proc.kill()
        proc.wait()
    # the other streams are not touched: a stream of the normal size publishes at once
    got = client.live_publish("small", "alice")
    with publishing(got["publish"]["primary"]["url"], seconds=5):
        until(lambda: state(client, "small") == "live", 10)


def test_a_publisher_that_sends_nothing_is_dropped_and_logged(live: DevCluster, client: Client) -> None:
    """A client that connects and publishes with a good key but sends no media: its
    origin's agent drops it (before nginx-rtmp's own 5 s idle drop, which has no code),
    logs no_media, and no recording part is left of it although the stream records."""
    got = client.live_publish("mute", "alice", record=True, snapshot_every=0)
    with idle_publisher(got["publish"]["primary"]["url"]) as sock:
        until(lambda: "publish" in [e["event"] for e in client.live_events("mute")], 10)
        took = until(lambda: "no_media" in [e["code"] for e in client.live_events("mute")], 10)
        _drain(sock)
    assert took <= 5
    until(lambda: state(client, "mute") != "live", 10)
    until(lambda: not _parts_left(live, "mute"), 20)
    assert not _parts(client, "alice", "mute")


def test_a_picture_that_stops_0_fps_is_dropped_and_logged(live: DevCluster, client: Client) -> None:
    """A stream whose picture stops, 0 fps (one frame, then none; its sound goes on):
    once nginx-rtmp has measured a full 10 s of it without video, the agent drops it and
    logs no_video. Another stream publishing meanwhile is not touched."""
    frozen = client.live_publish("frozen", "alice", snapshot_every=0)["publish"]["primary"]["url"]
    other = client.live_publish("moving", "alice", snapshot_every=0)["publish"]["primary"]["url"]
    proc = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
         "-re", "-f", "lavfi", "-i", "sine", "-filter_complex", "[0:v]trim=end_frame=1[v]", "-map", "[v]",
         "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-max_interleave_delta", "100000", "-t", "60",
         "-f", "flv", frozen],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with publishing(other, seconds=60):
            until(lambda: state(client, "frozen") == "live", 10)
            until(lambda: "no_video" in [e["code"] for e in client.live_events("frozen")], 30)
            until(lambda: state(client, "frozen") == "ended", 10)
            assert proc.wait(timeout=15) != 0  # its connection was closed under it
            assert state(client, "moving") == "live"
            assert "no_video" not in [e["code"] for e in client.live_events("moving")]
    finally:
        proc.kill()
        proc.wait()


def test_a_part_no_hook_handed_over_is_adopted(live: DevCluster, client: Client) -> None:
    """nginx-rtmp killed mid-part (or the shim down when it called on_record_done): the
    part stays in the record directory; once untouched for a minute the agent hands it
    over itself, under the stream's recorded key, and stores it."""
    got = client.live_publish("orphan", "alice", record=True)
    node = live.storage_nodes[got["publish"]["primary"]["node_id"]]
    time.sleep(1.1)  # the part begins after its key was issued
    began = int(time.time())
    part = os.path.join(node["live_record_dir"], f"{client.app}.orphan-{began}.flv")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
         "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-f", "flv", part],
        check=True, timeout=60,
    )  # fmt: skip
    os.utime(part, (time.time() - 120, time.time() - 120))
    until(lambda: len(_parts(client, "alice", "orphan")) == 1, 30)
    assert not os.path.exists(part)
    (stored,) = _parts(client, "alice", "orphan")
    assert abs(_duration(client.playback_url("alice", stored["file_id"])) - 3) < 0.5


def _height(url: str) -> int:
    # an HLS input lists its program's streams too: the first line is the stream's
    return int(_probe(url, "-select_streams", "v:0", "-show_entries", "stream=height")[0])


def test_a_lower_rendition_is_transcoded_while_watched(live: DevCluster, client: Client) -> None:
    got = client.live_publish("ladder1", "alice")
    origin = got["publish"]["primary"]["node_id"]
    renditions = live.root / "live" / origin / "renditions"
    play = got["play"]["hls"]
    with publishing(got["publish"]["primary"]["url"], size="640x360"):
        until(lambda: (client.live_stream("ladder1")["ingest"] or {}).get("height", 0) == 360, 15)
        # a rung that is not one, and one no lower than the stream: no transcode
        bad = requests.get(play + "&rendition=123p", allow_redirects=False, timeout=10)
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "unknown_rendition")
        same = requests.get(play + "&rendition=480p", allow_redirects=False, timeout=10)
        assert same.status_code == 302 and ".480p/" not in same.headers["Location"]
        # the first viewer of 240p waits for its first segment, then plays it from the edge
        start = time.monotonic()
        resp = requests.get(play + "&rendition=240p", allow_redirects=False, timeout=20)
        first = time.monotonic() - start
        assert resp.status_code == 302, resp.text
        edge = resp.headers["Location"]
        assert f"/{origin}/demo.ladder1.240p/index.m3u8" in edge
        assert _height(edge) == 240
        assert client.live_stream("ladder1")["renditions"] == ["240p"]
        # another viewer shares the same transcode
        again = client.live_play("ladder1", "240p")
        assert again["rendition"] == "240p" and "demo.ladder1.240p" in again["hls"]
        assert [p.name for p in renditions.iterdir() if not p.name.startswith(".")] == ["demo.ladder1.240p"]
        # watched through the edge for longer than LIVE_TRANSCODE_IDLE (6 s): kept
        end = time.monotonic() + 9
        while time.monotonic() < end:
            assert requests.get(edge, timeout=10).status_code == 200
            time.sleep(0.5)
        assert client.live_stream("ladder1")["renditions"] == ["240p"]
        # nobody watches: stopped, its files removed
        took = until(lambda: client.live_stream("ladder1")["renditions"] == [], 15)
        until(lambda: not (renditions / "demo.ladder1.240p").exists(), 10)  # ffmpeg ends first
    assert took <= 10
    print(f"live 240p: first play answered after {first:.2f} s; stopped {took:.1f} s after the last fetch")


def _sequence(playlist: str) -> int:
    return int(playlist.split("#EXT-X-MEDIA-SEQUENCE:")[1].split()[0])


def test_a_rendition_outlives_a_restart_of_its_agent(live: DevCluster, client: Client) -> None:
    """The origin's agent restarts (a deploy) while a rendition is watched: the next agent
    resumes its transcode, whose playlist goes on after a discontinuity; its media
    sequence never goes back, so the viewers' players go on too."""
    got = client.live_publish("ladder3", "alice", snapshot_every=0)
    origin = got["publish"]["primary"]["node_id"]
    with publishing(got["publish"]["primary"]["url"], size="640x360"):
        until(lambda: (client.live_stream("ladder3")["ingest"] or {}).get("height", 0) == 360, 15)
        resp = requests.get(got["play"]["hls"] + "&rendition=240p", allow_redirects=False, timeout=20)
        assert resp.status_code == 302, resp.text
        edge = resp.headers["Location"]
        until(lambda: requests.get(edge, timeout=10).text.count("#EXTINF") >= 2, 10)
        seen = [_sequence(requests.get(edge, timeout=10).text)]
        live.stop_service(f"agent-{origin}")
        live.start_service(f"agent-{origin}")

        def resumed() -> bool:
            playlist = requests.get(edge, timeout=10).text
            seen.append(_sequence(playlist))
            return bool(_last_break(playlist)[1])

        took = until(resumed, 20)
        assert seen == sorted(seen), seen  # never back
        assert client.live_stream("ladder3")["renditions"] == ["240p"]
    print(f"\nlive 240p: resumed {took:.1f} s after the agent's restart began")


def test_a_rendition_over_the_media_budget_is_refused(live: DevCluster, client: Client) -> None:
    """The dev agents have one core of media budget: a second live transcode on the origin
    is refused with 503 no_capacity while the first runs, and admitted once it stopped."""
    got = client.live_publish("ladder2", "alice")
    with publishing(got["publish"]["primary"]["url"], size="640x480"):  # LIVE_MAX_PIXELS here
        until(lambda: (client.live_stream("ladder2")["ingest"] or {}).get("height", 0) == 480, 15)
        play = got["play"]["hls"]
        assert client.live_play("ladder2", "240p")["rendition"] == "240p"
        full = requests.get(play + "&rendition=360p", allow_redirects=False, timeout=20)
        assert (full.status_code, full.json()["error"]["code"]) == (503, "no_capacity")
        until(lambda: client.live_stream("ladder2")["renditions"] == [], 20)
        room = requests.get(play + "&rendition=360p", allow_redirects=False, timeout=20)
        assert room.status_code == 302 and ".360p/" in room.headers["Location"]


def _first_frame_is_key(url: str) -> bool:
    return _probe(url, "-select_streams", "v:0", "-show_entries", "packet=flags")[0].startswith("K")


def _last_break(playlist: str) -> tuple[int, list[str]]:
    """The media sequence number of the first segment after the playlist's last
    discontinuity, and the segments from there on; (-1, []) unless segments of the session
    before it are listed too (a stream's first segment comes after one)."""
    lines = playlist.splitlines()
    segments = [i for i, ln in enumerate(lines) if ln.endswith(".ts")]
    breaks = [i for i, ln in enumerate(lines) if ln == "#EXT-X-DISCONTINUITY"]
    if not breaks or not segments or segments[0] > breaks[-1]:
        return -1, []
    after = [i for i in segments if i > breaks[-1]]
    first = _sequence(playlist)
    return first + len(segments) - len(after), [lines[i] for i in after]


def test_a_dead_primary_is_fed_from_the_backup_then_taken_back(live: DevCluster, client: Client) -> None:
    got = client.live_publish("hot1", "alice", record=True, snapshot_every=0)
    primary, backup = got["publish"]["primary"], got["publish"]["backup"]
    with publishing(backup["url"]), publishing(primary["url"]) as first:
        until(lambda: client.live_stream("hot1")["backup"] == backup["node_id"], 10)
        edge = requests.get(got["play"]["hls"], allow_redirects=False, timeout=10).headers["Location"]
        # a player whose origin stopped answering asks for the stream's other one (avoid=)
        for avoid, other in ((primary, backup), (backup, primary)):
            asked = got["play"]["hls"] + f"&avoid={avoid['node_id']}"
            then = requests.get(asked, allow_redirects=False, timeout=10)
            assert f"/{other['node_id']}/" in then.headers["Location"]
        base = edge.rsplit("/", 1)[0] + "/"
        until(lambda: requests.get(edge, timeout=10).text.count("#EXTINF") >= 2, 10)
        before = requests.get(edge, timeout=10).text
        # the primary encoder dies: its origin plays the backup from the backup's origin
        # and goes on publishing the stream under its name, after a discontinuity
        first.kill()
        killed = time.time()
        took = until(lambda: _last_break(requests.get(edge, timeout=10).text)[1], 6)
        print(f"\nfirst relayed segment listed {took:.2f} s after the kill")
        after = requests.get(edge, timeout=10).text
        sequence = _sequence(after)
        assert sequence >= _sequence(before)
        shown = client.live_stream("hot1")
        assert (shown["state"], shown["origin"]) == ("live", primary["node_id"])
        assert "relay" in [e["event"] for e in client.live_events("hot1")]
        relayed_at, relayed = _last_break(after)
        assert requests.get(base + relayed[0], timeout=10).status_code == 200
        time.sleep(2)  # a relayed span that starts a recording part of its own second
        back_at = time.time()
        # the primary encoder is back: it takes the stream back, at its first keyframe,
        # and the relay ends
        with publishing(primary["url"]):
            until(lambda: client.live_events("hot1")[0]["event"] == "publish", 10)
            until(lambda: _last_break(requests.get(edge, timeout=10).text)[0] > relayed_at, 10)
            back = _last_break(requests.get(edge, timeout=10).text)[1]
            assert _first_frame_is_key(base + back[0])
            events = client.live_events("hot1")
            assert "already_live" not in {e["code"] for e in events}
            until(lambda: subprocess.run(["pgrep", "-f", "relay="], check=False).returncode == 1, 10)
            assert client.live_stream("hot1")["origin"] == primary["node_id"]

    # the stream records: the relayed span is a part of its own, stored as the owner's
    # file like the primary's (its parts carry the primary's key id)
    def relayed_part() -> bool:
        began = [
            calendar.timegm(time.strptime(e["code"].rpartition("-")[2], "%Y%m%dT%H%M%SZ"))
            for e in client.live_events("hot1")
            if e["event"] == "recorded"
        ]
        return any(killed - 1 <= b < back_at - 1 for b in began)

    until(relayed_part, 30)
