from __future__ import annotations

from pathlib import Path

import pytest

from mediagrid import agent, livesessions
from mediagrid.config import Settings
from mediagrid.livesessions import Session

# nginx-rtmp 1.2.2's rtmp_stat for one publisher (ffmpeg), an edge's pull and a player on
# loopback (the node's own ffmpeg: a snapshot), trimmed
STAT = b"""<?xml version="1.0" encoding="utf-8" ?>
<rtmp><nginx_version>1.22.1</nginx_version><server><application><name>live</name><live>
<stream><name>demo.cam1</name><time>5735</time><bw_in>0</bw_in><bytes_in>142387</bytes_in>
<client><id>2</id><address>127.0.0.1</address><time>1670</time><flashver>LNX 9</flashver><active/></client>
<client><id>3</id><address>10.77.0.11</address><time>1600</time><flashver>LNX.11,1,102,55</flashver><active/></client>
<client><id>1</id><address>127.0.0.1</address><time>5911</time><flashver>FMLE/3.0</flashver><publishing/><active/></client>
<meta><video><width>320</width><height>240</height><frame_rate>25</frame_rate><codec>H264</codec></video>
<audio><codec>AAC</codec></audio></meta><nclients>3</nclients><publishing/><active/></stream>
<stream><name>demo.idle</name><time>10</time><bw_in>0</bw_in><bytes_in>0</bytes_in>
<client><id>7</id><address>10.0.0.9</address><time>10</time><active/></client><nclients>1</nclients></stream>
<nclients>4</nclients></live></application>
<application><name>other</name><live><stream><name>x.y</name><time>1</time>
<client><id>9</id><publishing/></client></stream></live></application></server></rtmp>"""


def test_publishers_of_the_live_application_with_their_figures() -> None:
    stats = livesessions.parse_stat(STAT)
    assert list(stats) == ["1"]  # the player-only stream and the other application are not
    stat = stats["1"]
    assert (stat.name, stat.width, stat.height, stat.fps, stat.viewers) == ("demo.cam1", 320, 240, 25.0, 1)
    # bw_in is 0 for the first 10 s: the average since the start stands in
    assert stat.bw_in == 142387 * 8000 // 5735


def test_a_session_is_live_while_nginx_rtmp_has_its_publisher(tmp_path: Path) -> None:
    kept = Session("demo", "cam1", "primary", "kid", "1", started=100.0)
    gone = Session("demo", "cam2", "primary", "kid2", "5", started=100.0)
    young = Session("demo", "cam3", "backup", "kid3", "6", started=199.0)
    for s in (kept, gone, young):
        livesessions.save(tmp_path, s)
    live = livesessions.live(tmp_path, livesessions.parse_stat(STAT), grace=5.0, now=200.0)
    assert [s for s, _ in live] == [kept]
    # nginx-rtmp no longer has client 5: its file goes; client 6 was admitted 1 s ago: kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.json", "6.json"]
    assert livesessions.holder(tmp_path, "demo", "cam3", "backup") == young
    assert livesessions.drop(tmp_path, "6") == young and livesessions.drop(tmp_path, "6") is None


def test_client_ids_are_numbers_only(tmp_path: Path) -> None:
    assert livesessions.drop(tmp_path, "../x") is None
    assert not livesessions.valid_client("1/2")


def test_faults_are_read_from_what_nginx_rtmp_saw() -> None:
    def stat(**kw: object) -> livesessions.Stat:
        base: dict[str, object] = dict(name="a.b", client="1", bw_in=0, fps=0.0, width=0, height=0, viewers=0)
        return livesessions.Stat(**{**base, **kw})  # type: ignore[arg-type]

    assert livesessions.parse_stat(STAT)["1"].video and livesessions.parse_stat(STAT)["1"].audio
    # nothing yet, 1 s in: not yet; 3 s in: no media
    assert livesessions.fault(stat(age=1.0)) is None
    assert livesessions.fault(stat(age=3.0))[0] == "no_media"  # type: ignore[index]
    # audio alone is a stream; a picture is judged once nginx-rtmp measured a full window
    assert livesessions.fault(stat(audio=True, age=60.0)) is None
    assert livesessions.fault(stat(video=True, audio=True, age=11.0)) is None
    assert livesessions.fault(stat(video=True, audio=True, age=14.0))[0] == "no_video"  # type: ignore[index]
    assert livesessions.fault(stat(video=True, bw_video=5520, age=60.0, fps=0.0)) is None


def test_an_nginx_rtmp_that_stays_silent_carries_no_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # its statistics on a closed port: a read that fails is one slow read at first (the
    # trackers keep what they had), then nginx-rtmp is taken for dead, with its streams
    conf = Settings(
        node_id="s1a", live_sessions_dir=str(tmp_path), rtmp_stat_url="http://127.0.0.1:9/rtmp-stat"
    )
    now = [1000.0]
    monkeypatch.setattr("mediagrid.agent.time.monotonic", lambda: now[0])
    origin = agent.LiveOrigin(conf)
    assert origin.sessions() is None
    now[0] += agent.STAT_LOST + 0.1
    assert origin.sessions() == []
