"""The views an origin's agent hears from nginx (``liveviews``): the last fetch of each live
playlist, and each stream's viewer sessions, from real UDP syslog lines as nginx sends them."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from mediagrid import liveviews


@pytest.fixture
def views() -> Iterator[liveviews.Views]:
    got = liveviews.Views(0)  # an ephemeral port, on loopback
    yield got
    got.sock.close()


def test_a_syslog_line_of_the_origin_counts_as_a_fetch(views: liveviews.Views) -> None:
    # what nginx sends with syslog:server=...,tag=mgviews,nohostname and log_format '$mg_rendition'
    assert views.note(b"<190>Dec  4 20:10:00 mgviews: demo.cam1.240p") == "demo.cam1.240p"
    assert views.last("demo.cam1.240p") is not None
    assert views.last("demo.cam1.360p") is None
    assert views.viewers("demo.cam1") == 0  # the edge's cache fetching is nobody
    views.forget("demo.cam1.240p")
    assert views.last("demo.cam1.240p") is None


def test_an_edge_line_counts_its_session_once_renditions_included(views: liveviews.Views) -> None:
    # the edge's log_format '$lhls_name $arg_v'
    for line in (
        b"demo.cam1 AAAAAAAAAAAAAAAA",
        b"demo.cam1 AAAAAAAAAAAAAAAA",
        b"demo.cam1.480p BBBBBBBBBBBBBBBB",
    ):
        assert views.note(b"<190>Dec  4 20:10:00 mgviews: " + line)
    views.note(b"<190>Dec  4 20:10:00 mgviews: demo.cam2 AAAAAAAAAAAAAAAA")
    assert views.viewers("demo.cam1") == 2
    assert views.viewers("demo.cam2") == 1
    assert views.last("demo.cam1.480p") is not None  # the rendition is watched


def test_a_session_not_seen_for_the_window_is_let_go(
    views: liveviews.Views, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr("mediagrid.liveviews.time.monotonic", lambda: now[0])
    views.note(b"<190>x mgviews: demo.cam1 AAAAAAAAAAAAAAAA")
    now[0] += liveviews.WINDOW / 2
    views.note(b"<190>x mgviews: demo.cam1 BBBBBBBBBBBBBBBB")
    assert views.viewers("demo.cam1") == 2
    now[0] += liveviews.WINDOW / 2 + 0.1
    assert views.viewers("demo.cam1") == 1
    now[0] += liveviews.WINDOW
    views.sweep()
    assert views.viewers("demo.cam1") == 0 and not views._sessions
    assert views.last("demo.cam1") is not None  # kept a while for the transcodes
    now[0] += liveviews.SEEN_KEPT
    views.sweep()
    assert views.last("demo.cam1") is None


def test_sessions_past_the_bound_are_not_counted(
    views: liveviews.Views, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(liveviews, "MAX_SESSIONS", 3)
    for i in range(5):
        views.note(f"<190>x mgviews: demo.cam1 session{i:04d}".encode())
    assert views.viewers("demo.cam1") == 3
    views.note(b"<190>x mgviews: demo.cam1 session0000")  # a held one is refreshed still
    assert views.viewers("demo.cam1") == 3


@pytest.mark.parametrize(
    "line",
    [
        b"<190>Dec  4 20:10:00 other: demo.cam1.240p",
        b"<190>Dec  4 20:10:00 mgviews: ",
        b"<190>Dec  4 20:10:00 mgviews: ../etc/passwd/x",
        b"<190>Dec  4 20:10:00 mgviews: demo.cam1.240x",
        b"<190>Dec  4 20:10:00 mgviews: demo.cam1 short",
        b"<190>Dec  4 20:10:00 mgviews: demo.cam1 AAAAAAAA/AAAAAAA",
    ],
)
def test_other_lines_are_ignored(views: liveviews.Views, line: bytes) -> None:
    assert views.note(line) is None
    assert not views._seen and not views._sessions


def _serve(views: liveviews.Views) -> Iterator[threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=views.serve, args=(stop,), daemon=True)
    thread.start()
    yield stop
    stop.set()
    thread.join(3)


def _wait(views: liveviews.Views, name: str) -> bool:
    for _ in range(50):
        if views.last(name) is not None:
            return True
        threading.Event().wait(0.05)
    return False


def test_the_listener_hears_nginx_on_loopback(views: liveviews.Views) -> None:
    assert views.sock.getsockname()[0] == "127.0.0.1"  # no edges named: loopback only
    for _ in _serve(views):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            out.sendto(b"<190>Dec  4 20:10:00 mgviews: demo.cam2.480p", views.sock.getsockname())
        assert _wait(views, "demo.cam2.480p")


def test_lines_from_a_host_that_is_no_edge_are_dropped() -> None:
    # the edges are named: the port listens beyond loopback, and takes their lines only
    views = liveviews.Views(0, ["192.0.2.7"])
    try:
        assert views.sock.getsockname()[0] == "0.0.0.0"
        views.sources = {"192.0.2.7"}  # loopback stands for a host that is not an edge
        for _ in _serve(views):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
                out.sendto(
                    b"<190>x mgviews: demo.cam3 AAAAAAAAAAAAAAAA", ("127.0.0.1", views.sock.getsockname()[1])
                )
            assert not _wait(views, "demo.cam3")
    finally:
        views.sock.close()
