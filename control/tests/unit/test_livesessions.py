from __future__ import annotations

from pathlib import Path

import pytest
import requests

from mediagrid import agent, livesessions
from mediagrid.config import ConfigError, Settings
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
    assert (stat.name, stat.width, stat.height, stat.fps) == ("demo.cam1", 320, 240, 25.0)
    assert stat.players == ("10.77.0.11",)  # the edge's pull; the node's own ffmpeg is not
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


# an edge's rtmp_stat (nginx-rtmp 1.2.2, trimmed): three players of a stream it pulls (the
# pull publishes there, from the origin's URL), one of another stream, one of a stream whose
# pull has not begun yet
EDGE_STAT = b"""<?xml version="1.0" encoding="utf-8" ?>
<rtmp><server><application><name>live</name><live>
<stream><name>demo.cam1</name><time>5828</time>
<client><id>6</id><address>10.77.0.21:1935/live/demo.cam1</address><flashver>ngx-local-relay</flashver><publishing/><active/></client>
<client><id>4</id><address>10.77.0.1</address><flashver>LNX 9,0,124,2</flashver><active/></client>
<client><id>3</id><address>10.77.0.1</address><flashver>LNX 9,0,124,2</flashver><active/></client>
<client><id>2</id><address>10.77.0.5</address><flashver>LNX 9,0,124,2</flashver><active/></client>
<nclients>4</nclients><publishing/><active/></stream>
<stream><name>demo.cam2</name><time>10</time>
<client><id>8</id><address>10.77.0.21:1935/live/demo.cam2</address><publishing/><active/></client>
<client><id>9</id><address>10.77.0.7</address><active/></client><nclients>2</nclients></stream>
<stream><name>demo.cam3</name><time>1</time>
<client><id>10</id><address>10.77.0.7</address></client><nclients>1</nclients></stream>
</live></application>
<application><name>other</name><live><stream><name>demo.cam1</name>
<client><id>11</id><address>10.77.0.8</address></client></stream></live></application></server></rtmp>"""


def test_an_edge_s_players_are_its_clients_that_do_not_publish() -> None:
    assert livesessions.players(EDGE_STAT) == {"demo.cam1": 3, "demo.cam2": 1, "demo.cam3": 1}


class _Edges:
    """The edges' /_edge/rtmp-stat, as an origin's agent reads them: one answer each."""

    def __init__(self, answers: dict[str, bytes | None]) -> None:
        self.answers, self.asked = answers, list[str]()

    def get(self, url: str, timeout: float) -> requests.Response:
        self.asked.append(url)
        body = self.answers[url]
        if body is None:
            raise requests.ConnectionError("refused")
        resp = requests.Response()
        resp.status_code, resp._content = 200, body
        return resp


def test_an_edge_s_pull_counts_that_edge_s_players(tmp_path: Path) -> None:
    one, two = "http://10.77.0.11:80/_edge/rtmp-stat", "http://10.77.0.12:80/_edge/rtmp-stat"
    conf = Settings(node_id="s1a", live_sessions_dir=str(tmp_path), live_edge_stats=[one, two])
    origin = agent.LiveOrigin(conf)
    origin.http = _Edges({one: EDGE_STAT, two: None})  # type: ignore[assignment]
    seen: agent.EdgeStats = {}
    # the first edge's three players; a relay from another origin (10.77.0.22) is nobody
    assert origin.rtmp_viewers("demo.cam1", ("10.77.0.11", "10.77.0.22"), seen) == 3
    assert origin.rtmp_viewers("demo.cam2", ("10.77.0.11",), seen) == 1
    assert origin.rtmp_viewers("demo.gone", ("10.77.0.11",), seen) == 0  # its players left
    # an edge whose statistics cannot be read: its pull stands for one player
    assert origin.rtmp_viewers("demo.cam1", ("10.77.0.12",), seen) == 1
    assert origin.http.asked == [one, two]  # type: ignore[attr-defined]  # each once a heartbeat
    # with no edge statistics configured, each player from another host is one
    plain = agent.LiveOrigin(Settings(node_id="s1a", live_sessions_dir=str(tmp_path)))
    assert plain.rtmp_viewers("demo.cam1", ("10.77.0.11", "10.77.0.22"), {}) == 2


def test_edge_statistics_are_http_urls() -> None:
    with pytest.raises(ConfigError, match="LIVE_EDGE_STATS"):
        Settings(live_edge_stats=["10.77.0.11:80/_edge/rtmp-stat"])


def test_faults_are_read_from_what_nginx_rtmp_saw() -> None:
    def stat(**kw: object) -> livesessions.Stat:
        base: dict[str, object] = dict(name="a.b", client="1", bw_in=0, fps=0.0, width=0, height=0)
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
