"""The origin agent's side of live transcoding that needs no nginx or MariaDB: the views
nginx sends as syslog lines, the names and costs of renditions."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from mediagrid import livetranscode


@pytest.fixture
def views() -> Iterator[livetranscode.Views]:
    got = livetranscode.Views(0)  # an ephemeral port
    yield got
    got.sock.close()


def test_a_syslog_line_of_nginx_counts_as_a_fetch(views: livetranscode.Views) -> None:
    # what nginx sends with syslog:server=...,tag=mgviews,nohostname and log_format '$mg_rendition'
    assert views.note(b"<190>Dec  4 20:10:00 mgviews: demo.cam1.240p") == "demo.cam1.240p"
    assert views.last("demo.cam1.240p") is not None
    assert views.last("demo.cam1.360p") is None
    views.forget("demo.cam1.240p")
    assert views.last("demo.cam1.240p") is None


@pytest.mark.parametrize(
    "line",
    [
        b"<190>Dec  4 20:10:00 other: demo.cam1.240p",
        b"<190>Dec  4 20:10:00 mgviews: ",
        b"<190>Dec  4 20:10:00 mgviews: ../etc/passwd/x",
    ],
)
def test_other_lines_are_ignored(views: livetranscode.Views, line: bytes) -> None:
    assert views.note(line) is None


def test_the_listener_hears_nginx_on_loopback(views: livetranscode.Views) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=views.serve, args=(stop,), daemon=True)
    thread.start()
    port = views.sock.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        out.sendto(b"<190>Dec  4 20:10:00 mgviews: demo.cam2.480p", ("127.0.0.1", port))
    for _ in range(50):
        if views.last("demo.cam2.480p") is not None:
            break
        stop.wait(0.05)
    stop.set()
    thread.join(3)
    assert views.last("demo.cam2.480p") is not None


def test_renditions_are_ladder_rungs_with_a_cost() -> None:
    assert livetranscode.rendition_name("demo", "cam1", "240p") == "demo.cam1.240p"
    assert livetranscode.rung_of("480p").height == 480
    with pytest.raises(ValueError):
        livetranscode.rung_of("123p")
    assert livetranscode.cores(livetranscode.rung_of("480p")) == 1.0
    assert livetranscode.cores(livetranscode.rung_of("1080p")) > 1.0
