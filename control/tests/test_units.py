"""Unit tests of pure pieces: names, paths, signatures, allocation, strategies, config."""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mediagrid import assign, config, names, signing
from mediagrid.config import Settings
from mediagrid.contract import Report
from mediagrid.errors import APIError
from mediagrid.idalloc import SegmentAllocator
from mediagrid.nodes import ACTIVE, OFFLINE, SYNCING, NodeTable

SEQ = itertools.count(1)  # report counters: each report newer than the last


@pytest.mark.parametrize("bad", ["", "a/b", "..", "a..b", "x\x00y", "a" * 201, "sp ace", "back\\slash", "é"])
def test_bad_file_ids_are_rejected(bad: str) -> None:
    with pytest.raises(APIError) as err:
        names.check_file_id(bad)
    assert err.value.status == 400
    assert err.value.code == "invalid_file_id"


@pytest.mark.parametrize("good", ["movie.mp4", "0000000000000001", "a_b-c~d@e+f=g", "x" * 200])
def test_good_file_ids_pass(good: str) -> None:
    assert names.check_file_id(good) == good


def test_storage_path_layout() -> None:
    assert names.storage_path(0x1A2B3C, ".mp4") == "00/1a/00000000001a2b3c.mp4"
    assert names.storage_path(2**63 - 1) == "ff/ff/7fffffffffffffff"
    with pytest.raises(ValueError):
        names.storage_path(0)


@pytest.mark.parametrize(
    "rel",
    [
        "../00/1a/00000000001a2b3c",  # a way out
        "/00/1a/00000000001a2b3c",  # absolute
        "00/1b/00000000001a2b3c",  # not the id's directory
        "00/1a/00000000001a2b3c.MP4",  # not an extension storage_path makes
        "00/1a/00000000001a2b3c\n",  # a trailing newline
        "00/1a/00000000001a2b3c/x",
        "00/1a/000000001a2b3c",
        "00/00/0000000000000000",  # id 0 is never handed out
        ".tmp/abc.part",
    ],
)
def test_storage_sid_refuses_what_storage_path_never_makes(rel: str) -> None:
    assert names.storage_sid(rel) is None


def test_storage_sid_reads_storage_paths() -> None:
    for sid, ext in ((0x1A2B3C, ".mp4"), (2**63 - 1, ""), (1, ".bin")):
        assert names.storage_sid(names.storage_path(sid, ext)) == sid


def test_extension_is_sanitised() -> None:
    assert names.extension("Movie.MP4") == ".mp4"
    assert names.extension("noext") == ""
    assert names.extension("evil.mp4/../x") == ""
    assert names.extension(".hidden") == ""


def test_token_and_file_signatures_differ_per_input() -> None:
    t1 = signing.make_token("demo", "s3cret", 100)
    assert t1.startswith("mg2.demo.100.")
    assert t1 != signing.make_token("demo", "other", 100)
    a = signing.file_signature("k", "demo", "alice", "f1", 100)
    assert a != signing.file_signature("k", "demo", "alice", "f2", 100)
    assert a != signing.file_signature("k", "demo", "bob", "f1", 100)
    assert "=" not in a


def test_signed_headers_cover_query_order_independently() -> None:
    text1 = signing.request_text("GET", "/p", signing.canonical_query([("b", "2"), ("a", "1")]), "1", "x")
    text2 = signing.request_text("GET", "/p", signing.canonical_query([("a", "1"), ("b", "2")]), "1", "x")
    assert text1 == text2


def test_allocator_never_overlaps_across_threads() -> None:
    lock = threading.Lock()
    top = [0]

    def reserve() -> tuple[int, int]:
        with lock:
            lo = top[0] + 1
            top[0] += 500
            return lo, top[0]

    alloc = SegmentAllocator(reserve)
    got: list[int] = []
    got_lock = threading.Lock()

    def worker() -> None:
        for n in (1, 7, 333, 1000):
            ids = alloc.take(n)
            assert ids == sorted(ids) and len(ids) == n
            with got_lock:
                got.extend(ids)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 8 * 1341


def test_node_table_states(tmp_path: Path) -> None:
    table = NodeTable(str(tmp_path / "t.sqlite"), offline_after=0.3, snapshot_ttl=0.0)
    base = {"group": "g1", "url": "http://x", "free": 10, "total": 20, "reserve": 0, "load": 0.5}
    table.record(
        Report.model_validate({**base, "seq": next(SEQ), "node_id": "a", "heal_pending": 0}), join=True
    )
    table.record(
        Report.model_validate({**base, "seq": next(SEQ), "node_id": "b", "heal_pending": 3, "load": 0.1}),
        join=True,
    )
    states = {n.node_id: n.state for n in table.nodes()}
    assert states == {"a": ACTIVE, "b": SYNCING}
    group = table.groups()["g1"]
    assert [n.node_id for n in group.active] == ["a"]
    time.sleep(0.4)
    assert {n.state for n in table.nodes()} == {OFFLINE}
    assert not table.groups()["g1"].writable
    # a second handle (another worker) sees the same table
    other = NodeTable(str(tmp_path / "t.sqlite"), offline_after=5, snapshot_ttl=0.0)
    assert {n.node_id for n in other.nodes()} == {"a", "b"}


def test_a_peer_holding_heals_keeps_a_rejoined_node_syncing(tmp_path: Path) -> None:
    # b was cut off: its own check cannot see a's brick and says 0, but a counted the writes
    # b missed, so b stays out of uploads until a has healed it; a itself stays ACTIVE
    table = NodeTable(str(tmp_path / "t.sqlite"), offline_after=0.3, snapshot_ttl=0.0)
    base = {"group": "g1", "url": "http://x", "free": 10, "total": 20, "reserve": 0, "load": 0.0}
    table.record(
        Report.model_validate(
            {**base, "seq": next(SEQ), "node_id": "a", "heal_pending": 0, "heal_source": 61}
        ),
        join=True,
    )
    table.record(
        Report.model_validate({**base, "seq": next(SEQ), "node_id": "b", "heal_pending": 0}), join=True
    )
    table.record(
        Report.model_validate({**base, "seq": next(SEQ), "group": "g2", "node_id": "c", "heal_pending": 0}),
        join=True,
    )
    assert {n.node_id: n.state for n in table.nodes()} == {"a": ACTIVE, "b": SYNCING, "c": ACTIVE}
    assert [n.node_id for n in table.groups()["g1"].active] == ["a"]
    table.record(
        Report.model_validate(
            {**base, "seq": next(SEQ), "node_id": "a", "heal_pending": 0, "heal_source": 0}
        ),
        join=False,
    )
    assert {n.state for n in table.nodes()} == {ACTIVE}
    # an OFFLINE peer's stale count holds no one back
    table.record(
        Report.model_validate(
            {**base, "seq": next(SEQ), "node_id": "a", "heal_pending": 0, "heal_source": 5}
        ),
        join=False,
    )
    time.sleep(0.4)
    table.record(
        Report.model_validate({**base, "seq": next(SEQ), "node_id": "b", "heal_pending": 0}), join=False
    )
    assert {n.node_id: n.state for n in table.nodes() if n.group == "g1"} == {"a": OFFLINE, "b": ACTIVE}


def test_node_table_made_by_an_older_tracker_gains_heal_source(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "t.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE nodes (node_id TEXT PRIMARY KEY, grp TEXT NOT NULL, url TEXT NOT NULL,"
            " free INTEGER NOT NULL, total INTEGER NOT NULL, reserve INTEGER NOT NULL, load REAL NOT NULL,"
            " heal_pending INTEGER NOT NULL, joined REAL NOT NULL, last_seen REAL NOT NULL)"
        )
        now = time.time()
        conn.execute("INSERT INTO nodes VALUES ('a', 'g1', 'http://x', 1, 2, 0, 0.0, 0, ?, ?)", (now, now))
    conn.close()
    table = NodeTable(str(path), offline_after=5, snapshot_ttl=0.0)
    assert [(n.node_id, n.heal_source, n.state) for n in table.nodes()] == [("a", 0, ACTIVE)]


def test_snapshot_ends_when_a_live_member_turns_offline(tmp_path: Path) -> None:
    # a snapshot far longer than the silence allowed must not keep a silent node in lookups
    table = NodeTable(str(tmp_path / "t.sqlite"), offline_after=0.3, snapshot_ttl=60.0)
    base = {"group": "g1", "url": "http://x", "free": 10, "total": 20, "reserve": 0, "load": 0.0}
    table.record(
        Report.model_validate({**base, "seq": next(SEQ), "node_id": "a", "heal_pending": 0}), join=True
    )
    assert [n.node_id for n in table.groups()["g1"].active] == ["a"]
    first = table.groups()
    assert table.groups() is first  # still cached while nothing can change
    time.sleep(0.4)
    assert table.groups()["g1"].active == []
    assert {n.state for n in table.nodes()} == {OFFLINE}


def test_most_free_and_hashed_strategies(tmp_path: Path) -> None:
    table = NodeTable(str(tmp_path / "t.sqlite"), offline_after=5, snapshot_ttl=0.0)
    for node, group, free in (("a", "g1", 100), ("b", "g2", 500), ("c", "g2", 300)):
        table.record(
            Report.model_validate(
                {
                    "node_id": node,
                    "group": group,
                    "url": "http://x",
                    "free": free,
                    "total": 1000,
                    "reserve": 50,
                    "load": 0.0,
                    "heal_pending": 0,
                    "seq": next(SEQ),
                }
            ),
            join=True,
        )
    groups = list(table.groups().values())
    assert {assign.most_free(groups, "app", f"u{i}") for i in range(20)} == {"g2"}  # 250 > 50
    table.record(
        Report.model_validate(
            {
                "node_id": "d",
                "group": "g3",
                "url": "http://x",
                "free": 290,
                "total": 1000,
                "reserve": 50,
                "load": 0.0,
                "heal_pending": 0,
                "seq": next(SEQ),
            }
        ),
        join=True,
    )
    near = list(table.groups().values())  # g3 (240) is within 5% of g2 (250): both take users
    assert {assign.most_free(near, "app", f"u{i}") for i in range(50)} == {"g2", "g3"}
    picks = {assign.hashed(groups, "app", f"u{i}") for i in range(50)}
    assert picks == {"g1", "g2"}
    assert assign.resolve("mediagrid.assign:hashed") is assign.hashed
    with pytest.raises(ValueError):
        assign.resolve("nope")


def test_config_layers(tmp_path: Path) -> None:
    conf_file = tmp_path / "c.toml"
    conf_file.write_text('DB_PORT = 3307\nGROUP = "g1"\n')
    conf = config.load(
        {"MEDIAGRID_CONFIG": str(conf_file), "MEDIAGRID_GROUP": "g2", "MEDIAGRID_TRACKERS": '["a"]'}
    )
    assert conf["DB_PORT"] == 3307
    assert conf["GROUP"] == "g2"
    assert conf["TRACKERS"] == ["a"]
    assert conf["OFFLINE_AFTER"] <= 6


def test_gluster_heal_counts_what_the_peers_hold_for_this_node() -> None:
    from mediagrid.agent import gluster_heals

    out = (
        "Brick 10.77.0.21:/bricks/g1\nStatus: Connected\nTotal Number of entries: 3\n"
        "Number of entries in heal pending: 3\n\n"
        "Brick 10.77.0.22:/bricks/g1\nStatus: Connected\nTotal Number of entries: 2\n\n"
        "Brick 10.77.0.23:/bricks/g1\nStatus: Transport endpoint is not connected\n"
        "Total Number of entries: -\n"
    )
    assert gluster_heals(out, "10.77.0.21") == (2, 3)  # its own 3 are heals it is the source of
    assert gluster_heals(out, "10.77.0.22") == (3, 2)
    assert gluster_heals(out, "10.77.0.23") == (5, 0)
    with pytest.raises(ValueError):
        gluster_heals("Volume g1 does not exist", "10.77.0.21")


def test_stale_upload_parts_are_swept(tmp_path: Path) -> None:

    from mediagrid.agent import sweep_parts

    tmp = tmp_path / ".tmp"
    tmp.mkdir()
    old, live, other = tmp / "a.part", tmp / "b.part", tmp / "c.keep"
    for f in (old, live, other):
        f.write_bytes(b"x")
    os.utime(old, (1000, 1000))
    os.utime(other, (1000, 1000))
    assert sweep_parts(str(tmp_path), 900, now=1000 + 901) == 1
    assert not old.exists() and live.exists() and other.exists()
    assert sweep_parts(str(tmp_path / "missing"), 900) == 0


def test_heal_watcher_keeps_the_last_answer_when_a_check_fails(tmp_path: Path) -> None:
    from mediagrid.agent import HealWatcher

    answer = tmp_path / "pending"
    watcher = HealWatcher(Settings(heal_check_command=f"cat {answer}"), stale_after=60)
    assert watcher.pending() == 1  # nothing known yet: syncing
    answer.write_text("0")
    watcher.check_once()
    assert watcher.pending() == 0
    answer.unlink()  # the check fails: the last answer stands
    watcher.check_once()
    assert watcher.pending() == 0
    answer.write_text("7")
    watcher.check_once()
    assert watcher.pending() == 7
    watcher.stale_after = 0  # no answer for too long: syncing again
    answer.unlink()
    watcher.check_once()
    time.sleep(0.01)
    assert watcher.pending() == 1


def test_agent_reports_an_unreadable_volume_as_unusable(tmp_path: Path) -> None:
    from mediagrid.agent import HealWatcher, report

    conf = Settings(node_id="n", group="g", public_url="http://x", data_dir=str(tmp_path / "gone"))
    heal = HealWatcher(Settings())
    heal.check_once()
    beat = report(conf, heal)
    assert (beat.free, beat.heal_pending) == (0, 1)
    assert report(replace(conf, data_dir=str(tmp_path)), heal).heal_pending == 0
