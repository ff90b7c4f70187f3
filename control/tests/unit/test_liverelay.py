"""The origin's side of dual hot streams that needs no nginx, tracker or MariaDB: the relay
requests the shim writes and the agent reads, the one-time nonce a relay publishes with,
and when the agent relays nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediagrid import liverelay, livesessions
from mediagrid.config import Settings


def _session(started: float = 100.0) -> livesessions.Session:
    return livesessions.Session("demo", "cam1", "primary", "kid00000001", "7", started)


def test_a_request_is_written_read_and_cancelled(tmp_path: Path) -> None:
    liverelay.ask(tmp_path, _session())
    (request,) = liverelay.pending(tmp_path)
    assert (request.name, request.kid, request.started) == ("demo.cam1", "kid00000001", 100.0)
    assert request.nonce == ""
    assert liverelay.read(tmp_path, "demo.cam1") == request
    liverelay.cancel(tmp_path, "demo.cam1")
    assert liverelay.pending(tmp_path) == []
    liverelay.cancel(tmp_path, "../etc")  # not a stream name: nothing happens


def test_only_the_running_attempt_s_nonce_admits_a_relay(tmp_path: Path) -> None:
    liverelay.ask(tmp_path, _session())
    assert liverelay.admits(tmp_path, "demo.cam1", "") is None  # no attempt yet
    request = liverelay.read(tmp_path, "demo.cam1")
    assert request is not None
    liverelay.write(tmp_path, liverelay.Request(**{**request.__dict__, "nonce": "n" * 22}))
    assert liverelay.admits(tmp_path, "demo.cam1", "n" * 22) is not None
    assert liverelay.admits(tmp_path, "demo.cam1", "m" * 22) is None
    assert liverelay.admits(tmp_path, "demo.cam2", "n" * 22) is None


@pytest.mark.parametrize(
    ("verdict", "source"),
    [
        ((False, None), None),  # no backup is live: nothing to relay
        ((True, None), "rtmp://10.0.0.2:1935/live/demo.cam1"),  # the key is banned
        ((False, 150.0), "rtmp://10.0.0.2:1935/live/demo.cam1"),  # kicked after it started
    ],
)
def test_a_request_with_nothing_to_relay_is_withdrawn(
    tmp_path: Path, verdict: tuple[bool, float | None], source: str | None
) -> None:
    conf = Settings(node_id="s1a", live_sessions_dir=str(tmp_path), rtmp_url="rtmp://10.0.0.1:1935")
    asked: list[str] = []

    def find(request: liverelay.Request) -> str | None:
        asked.append(request.name)
        return source

    relay = liverelay.LiveRelay(conf, find, lambda kids: {kid: verdict for kid in kids})
    liverelay.ask(tmp_path, _session())
    relay.round()
    assert liverelay.pending(tmp_path) == [] and relay.running == {}
    assert asked == ([] if source else ["demo.cam1"])
