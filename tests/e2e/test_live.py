"""Live streaming on the lab (issue 13): publish with a key, the registry, play through an
edge, the end of a stream, refusals, a dead origin.

ffmpeg publishes its test sources to the origin the tracker picked (an RTMP URL with a
key), ffprobe plays what a viewer would (the play URL, followed through its 302 to an
edge), and the registry is read through the API as an app would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests

from mediagrid.client import Client, MediagridError
from mediagrid_dev.browser import freezes
from mediagrid_dev.lab import front_spki_hashes
from mediagrid_dev.live import Encoder, publishing, refused

from .conftest import Lab, admin, docker
from .drills import FRONT, VIP, holders, record


def wait_for(what: Any, timeout: float, every: float = 0.2) -> tuple[Any, float]:
    start = time.monotonic()
    while True:
        got = what()
        if got:
            return got, time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(every)


def state(client: Client, stream: str) -> dict[str, Any]:
    try:
        return client.live_stream(stream)
    except MediagridError as err:
        return {"state": err.code}


def new_stream() -> str:
    return "t" + uuid.uuid4().hex[:10]


def test_publish_register_play_and_end(lab: Lab, client: Client) -> None:
    stream = new_stream()
    got = client.live_publish(stream, "alice")
    primary, backup = got["publish"]["primary"], got["publish"]["backup"]
    assert primary["url"].startswith("rtmp://") and "?k=" in primary["url"]
    # the backup is on an origin of the other group
    assert backup is not None and backup["node_id"][:2] != primary["node_id"][:2]
    play = got["play"]["hls"]
    assert requests.get(lab.http + urlsplit(play).path + "?" + urlsplit(play).query, allow_redirects=False,
                        timeout=10).json()["error"]["code"] == "stream_offline"  # fmt: skip

    with publishing(primary["url"]) as proc:
        live, took = wait_for(lambda: (s := state(client, stream))["state"] == "live" and s, 15)
        assert live["origin"] == primary["node_id"] and live["user"] == "alice"
        assert took < 10, f"the registry took {took:.1f} s to list the stream"
        # the origin's heartbeats bring nginx-rtmp's figures
        live, _ = wait_for(lambda: (s := state(client, stream))["ingest"]["fps"] > 0 and s, 10)
        assert live["ingest"]["width"] == 320 and live["ingest"]["height"] == 240
        assert 20 <= live["ingest"]["fps"] <= 30 and live["ingest"]["bitrate"] > 0
        assert any(s["stream"] == stream and s["state"] == "live" for s in client.live_streams())

        # a viewer's play URL: 302 to the stream's HLS on an edge, with CORS for other pages
        url = lab.http + urlsplit(play).path + "?" + urlsplit(play).query
        resp, _ = wait_for(
            lambda: (r := requests.get(url, allow_redirects=False, timeout=10)).status_code == 302 and r, 10
        )
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        edge = resp.headers["Location"]
        assert "/lhls/" in edge and urlsplit(edge).path.endswith("/index.m3u8")
        playlist, _ = wait_for(
            lambda: (r := requests.get(edge, timeout=10)).status_code == 200 and "#EXTINF" in r.text and r, 15
        )
        # two plays fetching the playlist through the edge are two viewers: the edge tells
        # the origin's agent of each fetch, the agent counts the play sessions
        other = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]

        def viewers() -> int:
            for player in (edge, other):
                requests.get(player, timeout=10).raise_for_status()
            return int(state(client, stream)["viewers"])

        wait_for(lambda: viewers() == 2, 10, every=0.4)
        assert playlist.headers["Content-Type"] == "application/vnd.apple.mpegurl"
        segment = (
            edge.rsplit("/", 1)[0] + "/" + [ln for ln in playlist.text.splitlines() if ln.endswith(".ts")][-1]
        )
        first = requests.get(segment, timeout=10)
        again = requests.get(segment, timeout=10)
        assert first.status_code == again.status_code == 200 and first.content == again.content
        assert again.headers["X-Cache-Status"] == "HIT"
        # ffprobe plays it as a viewer would, through the redirect
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
             "-of", "csv=p=0", url], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        # (HLS lists the stream once per program too)
        assert set(probe.stdout.split()) == {"320,240"}, probe.stderr

        # the app's view of the same decision
        decision = client.live_play(stream)
        assert decision["origin"] == primary["node_id"] and "/lhls/" in decision["hls"]

        # the publisher stops sending (its connection stays open): dropped after 5 s
        os.kill(proc.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        wait_for(lambda: state(client, stream)["state"] == "ended", 15, every=0.1)
        ended_after = time.monotonic() - stopped
    assert ended_after <= 6.5, f"the end took {ended_after:.1f} s"
    err = requests.get(url, allow_redirects=False, timeout=10)
    assert err.status_code == 404 and err.json()["error"]["code"] == "stream_offline"
    print(f"\nregistry listed the stream after {took:.2f} s; ended {ended_after:.2f} s after the last packet")


def test_rtmp_players_behind_an_edge_are_each_a_viewer(lab: Lab, client: Client) -> None:
    """RTMP players on the cluster address play through an edge, which pulls the stream from
    the origin once for all of them; the origin's agent reads that edge's statistics, so
    each player is a viewer in the registry, and one who leaves is not."""
    stream = new_stream()
    got = client.live_publish(stream, "alice")
    with publishing(got["publish"]["primary"]["url"]):
        wait_for(lambda: state(client, stream)["state"] == "live", 15)
        rtmp = client.live_play(stream)["rtmp"]
        assert rtmp.startswith(f"rtmp://{urlsplit(lab.url).hostname}/live/demo.{stream}?token=")
        argv = ["ffmpeg", "-nostdin", "-v", "error", "-rw_timeout", "8000000", "-i", rtmp, "-t", "40"]
        players = [
            subprocess.Popen([*argv, "-f", "null", "-"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(3)
        ]
        try:
            seen: list[int] = []

            def viewers(want: int) -> bool:
                seen.append(int(state(client, stream)["viewers"]))
                return seen[-1] == want

            _, took = wait_for(lambda: viewers(3), 15, every=0.5)
            assert all(p.poll() is None for p in players), "a player stopped"
            # the registry knows where the stream is copied: the edge that holds the VIP
            shown = state(client, stream)
            [holder] = holders(VIP, list(FRONT))
            assert shown["edges"] == shown["publishers"][0]["edges"] == [FRONT[holder]], shown
            for p in players[1:]:
                p.kill()
            _, left = wait_for(lambda: viewers(1), 10, every=0.5)
            assert max(seen) == 3, seen
        finally:
            for p in players:
                p.kill()
                p.wait(timeout=10)
    print(f"\n3 RTMP players counted within {took:.1f} s, 2 gone within {left:.1f} s")


def test_refused_publishes_are_logged_with_their_code(lab: Lab, client: Client) -> None:
    stream, other = new_stream(), new_stream()
    got = client.live_publish(stream, "alice")
    url = got["publish"]["primary"]["url"]
    base, _, key = url.partition("?k=")
    other_key = client.live_publish(other, "alice")["publish"]["primary"]["url"].partition("?k=")[2]
    mac_flipped = key[:-1] + ("A" if key[-1] != "A" else "B")

    for bad in (base, f"{base}?k=garbage", f"{base}?k={mac_flipped}", f"{base}?k={other_key}"):
        rc = refused(bad)
        assert rc != 0, bad
    # another user may not take the stream's name; a name with a dot is no stream
    with pytest.raises(MediagridError) as taken:
        client.live_publish(stream, "bob")
    assert (taken.value.status, taken.value.code) == (409, "stream_taken")
    with pytest.raises(MediagridError) as bad_name:
        client.live_publish("a.b", "alice")
    assert bad_name.value.code == "invalid_stream"

    # a second primary publisher of a live stream is refused; the first stays live
    with publishing(url):
        wait_for(lambda: state(client, stream)["state"] == "live", 15)
        rc = refused(url)
        assert rc != 0
        assert state(client, stream)["state"] == "live"

    codes = [e["code"] for e in client.live_events(stream) if e["event"] == "refused"]
    for code in ("missing_key", "malformed_key", "bad_key", "key_for_other_stream"):
        assert code in codes, codes
    assert "already_live" in codes or codes.count("bad_key") >= 1


def test_a_dead_origin_s_streams_leave_the_registry(lab: Lab, client: Client) -> None:
    stream = new_stream()
    got = client.live_publish(stream, "alice")
    node = got["publish"]["primary"]["node_id"]
    with publishing(got["publish"]["primary"]["url"]):
        wait_for(lambda: state(client, stream)["state"] == "live", 15)
        docker("pause", node)
        try:
            _, took = wait_for(lambda: state(client, stream)["state"] == "ended", 20, every=0.2)
        finally:
            docker("unpause", node)
    assert took <= 10, f"a dead origin's stream stayed {took:.1f} s"
    lab.wait_states({node: "ACTIVE"}, 60)
    print(f"\na paused origin's stream left the registry after {took:.2f} s")


def test_kick_then_ban(lab: Lab, client: Client) -> None:
    stream = new_stream()
    url = client.live_publish(stream, "alice")["publish"]["primary"]["url"]
    with publishing(url):
        wait_for(lambda: state(client, stream)["state"] == "live", 15)
        client.live_kick(stream)
        _, kicked_after = wait_for(lambda: state(client, stream)["state"] == "ended", 10, every=0.1)
    # a kick is not a ban: the key publishes again
    with publishing(url):
        wait_for(lambda: state(client, stream)["state"] == "live", 15)
        admin("live", "ban", lab.app, stream)
        _, banned_after = wait_for(lambda: state(client, stream)["state"] == "ended", 10, every=0.1)
    rc = refused(url)
    assert rc != 0
    assert "key_banned" in [e["code"] for e in client.live_events(stream)]
    assert kicked_after <= 5 and banned_after <= 5
    print(f"\nkick took {kicked_after:.2f} s, ban {banned_after:.2f} s")


def _duration(url: str) -> float:
    run = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", url],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return float(run.stdout.strip())


def _parts(client: Client, stream: str) -> list[dict[str, Any]]:
    return sorted((f for f in client.list("alice") if f["file_id"].startswith(f"{stream}-")),
                  key=lambda f: f["file_id"])  # fmt: skip


def test_recording_parts_become_the_owner_s_files(lab: Lab, client: Client) -> None:
    """A recorded stream of 14 s with the lab's 10 s parts: two MP4 files of the owner in
    the owner's group, whose durations add up to the stream's within a GOP, stored within
    15 s of the end and packaged by the VOD pipeline; the backup's parts are not kept.
    Snapshots every 2 s are listed newest first and served by direct link."""
    stream = new_stream()
    got = client.live_publish(stream, "alice", record=True, snapshot_every=2)
    primary, backup = got["publish"]["primary"], got["publish"]["backup"]
    with publishing(primary["url"], seconds=14) as proc, publishing(backup["url"], seconds=14):
        wait_for(lambda: state(client, stream)["state"] == "live", 15)
        assert state(client, stream)["recording"] is True
        snaps, _ = wait_for(lambda: len(s := client.live_snapshots(stream)) >= 3 and s, 20)
        assert [s["at"] for s in snaps] == sorted((s["at"] for s in snaps), reverse=True)
        assert all(s["node_id"] == primary["node_id"] for s in snaps)
        img = requests.get(snaps[0]["url"], timeout=10, verify=lab.ca_file or True)
        assert img.status_code == 200 and img.headers["Content-Type"] == "image/jpeg"
        assert img.content[:2] == b"\xff\xd8"
        assert state(client, stream)["snapshot"]
        proc.wait(timeout=40)
    ended = time.monotonic()
    parts, _ = wait_for(lambda: len(p := _parts(client, stream)) == 2 and p, 30, every=0.5)
    stored_after = time.monotonic() - ended
    group = client.storages("alice")["group"]
    assert {p["group"] for p in parts} == {group}
    durations = [_duration(client.playback_url("alice", p["file_id"])) for p in parts]
    assert abs(sum(durations) - 14) <= 1.0, durations
    assert 9 <= durations[0] <= 11, durations
    recorded = sorted(e["code"] for e in client.live_events(stream) if e["event"] == "recorded")
    assert recorded == [p["file_id"] for p in parts]  # the backup's were dropped
    media = client.wait_playable("alice", parts[0]["file_id"], timeout=180)
    assert media.get("hls"), media
    assert stored_after <= 15, f"the last part was a file {stored_after:.1f} s after the end"
    print(f"\nrecording: parts {durations} s; the last one a file {stored_after:.2f} s after the end")


def test_a_stored_part_outlives_its_origin(lab: Lab, client: Client) -> None:
    """The part nginx-rtmp closed is a file while the stream goes on: the origin dying
    afterwards loses at most the part it was writing."""
    stream = new_stream()
    got = client.live_publish(stream, "alice", record=True, snapshot_every=0)
    node = got["publish"]["primary"]["node_id"]
    with publishing(got["publish"]["primary"]["url"], seconds=40):
        wait_for(lambda: state(client, stream)["state"] == "live", 15)
        parts, _ = wait_for(lambda: _parts(client, stream), 25, every=0.5)
        docker("pause", node)
        try:
            url = client.playback_url("alice", parts[0]["file_id"])
            assert 9 <= _duration(url) <= 11
        finally:
            docker("unpause", node)
    lab.wait_states({node: "ACTIVE"}, 60)


def test_a_lower_rendition_is_transcoded_while_watched(lab: Lab, client: Client) -> None:
    """Flow 7: a viewer asks for 240p of a 360p stream; the origin transcodes it once (its
    agent's ffmpeg, within the media budget), the edge serves it, and it stops when nobody
    fetched its playlist for LIVE_TRANSCODE_IDLE (10 s on the lab)."""
    stream = new_stream()
    got = client.live_publish(stream, "alice")
    origin = got["publish"]["primary"]["node_id"]
    play = got["play"]["hls"]
    url = lab.http + urlsplit(play).path + "?" + urlsplit(play).query + "&rendition=240p"
    with publishing(got["publish"]["primary"]["url"], size="640x360"):
        wait_for(lambda: (state(client, stream).get("ingest") or {}).get("height") == 360, 20)
        start = time.monotonic()
        resp = requests.get(url, allow_redirects=False, timeout=30)
        first = time.monotonic() - start
        assert resp.status_code == 302, resp.text
        edge = resp.headers["Location"]
        assert f"/{origin}/{lab.app}.{stream}.240p/index.m3u8" in edge
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
             "-of", "csv=p=0", edge], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert set(probe.stdout.split()) == {"426,240"}, probe.stderr
        assert state(client, stream)["renditions"] == ["240p"]
        # watched through the edge for longer than the idle time: kept
        until = time.monotonic() + 14
        while time.monotonic() < until:
            assert requests.get(edge, timeout=10).status_code == 200
            time.sleep(0.5)
        assert state(client, stream)["renditions"] == ["240p"]
        # nobody watches: stopped, its files removed at the origin
        _, stopped = wait_for(lambda: state(client, stream)["renditions"] == [], 20)
        folder, out = f"{lab.app}.{stream}.240p", "/var/lib/mediagrid-live/renditions"
        wait_for(lambda: folder not in docker("exec", origin, "ls", "-A", out), 10)
    print(f"\nlive 240p: first play after {first:.2f} s; stopped {stopped:.1f} s after the last fetch")


def test_dual_hot_the_player_keeps_playing_through_the_primary_s_death(lab: Lab, client: Client) -> None:
    """Flow 8: the primary encoder dies and comes back while headless Chromium plays the
    stream on the player page; its origin relays the backup meanwhile (liverelay). The
    5-kill figure is bench/live.py's (--only dualhot)."""
    stream = new_stream()
    got = client.live_publish(stream, "alice")
    primary = got["publish"]["primary"]
    encoder = Encoder(primary["url"])
    page = f"{lab.url}/player/#src={quote(got['play']['hls'], safe='')}"
    with publishing(got["publish"]["backup"]["url"], seconds=300):
        encoder.start()
        try:
            wait_for(lambda: state(client, stream).get("backup") == got["publish"]["backup"]["node_id"], 20)
            watching: list[int] = []  # the registry's viewers as the kill comes: the page

            def kill() -> None:
                watching.append(int(state(client, stream)["viewers"]))
                encoder.kill()

            windows = freezes(page, front_spki_hashes(), [("kill", kill), ("return", encoder.start)], 10)
            shown = state(client, stream)
            events = [e["event"] for e in client.live_events(stream)]
        finally:
            encoder.kill()
    figures = {w.label: w.__dict__ for w in windows}
    record("live_dual_hot", figures)
    assert shown["origin"] == primary["node_id"] and "relay" in events, (shown, events)
    # hls.js reloads the playlist from the edge URL the redirect gave it: one viewer session
    assert watching == [1], watching
    # the primary's death: the player goes on (bench l5 holds it to 1 s over 5 kills)
    kill = figures["kill"]
    assert kill["fatal"] == 0 and kill["advanced_s"] >= 7 and kill["freeze_s"] <= 2.0, figures
    # its return is recorded, not held to a bound: the relay is dropped when the encoder
    # connects, before its first keyframe is out (up to 2.1 s of freeze seen in l5)
    assert events.index("publish") < events.index("relay")  # newest first: taken back


def test_an_origin_s_death_the_player_page_goes_on_from_the_backup(lab: Lab, client: Client) -> None:
    """Flow 8, an origin's death: the primary's origin freezes (docker pause) while headless
    Chromium plays the stream on the player page. At the first playlist late from the edge
    the page warms a second player on the play URL with avoid=<that origin>, which the
    tracker answers with the backup's origin, and shows it from its first frame; once the
    origin is back and the registry leads to it again, the page goes back the same way.
    The freezes are recorded (drills.json ``live_origin_death``)."""
    stream = new_stream()
    got = client.live_publish(stream, "alice")
    node, backup = got["publish"]["primary"]["node_id"], got["publish"]["backup"]["node_id"]
    page = f"{lab.url}/player/#src={quote(got['play']['hls'], safe='')}"
    # the primary encoder connects again when its origin, back, resets its connection
    encoder = Encoder(got["publish"]["primary"]["url"], reconnect=True)
    with publishing(got["publish"]["backup"]["url"], seconds=300):
        encoder.start()
        wait_for(lambda: state(client, stream).get("backup") == backup, 20)
        shown: list[dict[str, Any]] = []

        def back() -> None:
            shown.append(state(client, stream))  # the registry, as the origin returns
            docker("unpause", node)

        try:
            events = [("death", lambda: docker("pause", node)), ("back", back)]
            windows = freezes(page, front_spki_hashes(), events, 30)
        finally:
            docker("unpause", node, check=False)  # (done already, unless the window failed)
            encoder.kill()
    lab.wait_states({node: "ACTIVE"}, 60)
    figures = {w.label: w.__dict__ for w in windows}
    record("live_origin_death", figures)
    death = figures["death"]
    assert shown[0]["origin"] == backup, shown
    # the backup's picture from its first frame, within flow 8's second, and no error
    assert death["failovers"] == 1 and death["fatal"] == 0, figures
    assert death["freeze_s"] <= 1.0, figures
    # the origin back, the registry leads to it again: the page goes back the same way
    back = figures["back"]
    assert back["returns"] == 1 and back["fatal"] == 0 and back["freeze_s"] <= 1.0, figures
