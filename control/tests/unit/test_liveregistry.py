from __future__ import annotations

import sqlite3
from pathlib import Path

from mediagrid.contract import LiveSession
from mediagrid.liveregistry import _SCHEMA, START_GRACE, LiveTable


def session(client: str, started: float, stream: str = "cam1", role: str = "primary") -> LiveSession:
    return LiveSession.model_validate(
        {"app": "demo", "stream": stream, "role": role, "client": client, "started": started, "fps": 25.0}
    )


def test_a_pushed_end_is_not_undone_by_an_older_heartbeat(tmp_path: Path) -> None:
    table = LiveTable(str(tmp_path / "t.sqlite"))
    s = session("1", 100.0)
    table.start("s1a", s)
    assert [e.ended for e in table.entries("demo")] == [None]
    assert table.end("s1a", s, 150.0)
    table.beat("s1a", [s], 149.5)  # collected just before the drop
    assert [e.ended for e in table.entries("demo")] == [150.0]
    # a new session of the same stream (another client) replaces it
    table.beat("s1a", [session("3", 160.0)], 170.0)
    [entry] = table.entries("demo", "cam1")
    assert (entry.client, entry.ended) == ("3", None)


def test_a_heartbeat_ends_what_it_no_longer_lists(tmp_path: Path) -> None:
    table = LiveTable(str(tmp_path / "t.sqlite"))
    table.start("s1a", session("1", 100.0))
    table.start("s1a", session("2", 200.0 - START_GRACE / 2, stream="cam2"))
    table.start("s2a", session("1", 100.0, role="backup"))
    table.beat("s1a", [], 200.0)
    ended = {(e.stream, e.role): e.ended for e in table.entries("demo")}
    # cam1 ended; cam2 started within the grace (its push raced the heartbeat); s2a's untouched
    assert ended == {("cam1", "primary"): 200.0, ("cam1", "backup"): None, ("cam2", "primary"): None}
    assert {e.stream for e in table.all_live()} == {"cam1", "cam2"}
    table.prune(older_than=300.0)
    assert {(e.stream, e.role) for e in table.entries("demo")} == {("cam1", "backup"), ("cam2", "primary")}


def test_the_edges_pulling_a_copy_are_kept_while_live(tmp_path: Path) -> None:
    table = LiveTable(str(tmp_path / "t.sqlite"))
    pulled = LiveSession.model_validate(
        {"app": "demo", "stream": "cam1", "role": "primary", "client": "1", "started": 100.0,
         "edges": ["10.77.0.12", "10.77.0.11"]}
    )  # fmt: skip
    table.start("s1a", pulled)
    [entry] = table.entries("demo", "cam1")
    assert entry.pulled_by == ["10.77.0.11", "10.77.0.12"]
    assert entry.public(True)["edges"] == ["10.77.0.11", "10.77.0.12"]
    assert entry.public(False)["edges"] == []  # an ended stream is copied nowhere
    table.beat("s1a", [session("1", 100.0)], 200.0)  # the edges' players left
    assert table.entries("demo", "cam1")[0].pulled_by == []


def test_a_table_of_an_older_tracker_gains_the_edges(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(_SCHEMA.replace("    edges TEXT NOT NULL DEFAULT '[]',\n", ""))
        conn.execute(
            "INSERT INTO live (app, stream, role, node_id, client, started, updated)"
            " VALUES ('demo', 'cam1', 'primary', 's1a', '1', 100.0, 100.0)"
        )
    conn.close()
    table = LiveTable(str(path))
    assert table.entries("demo", "cam1")[0].pulled_by == []
    table.beat("s1a", [session("1", 100.0)], 200.0)
    assert [e.client for e in table.all_live()] == ["1"]
