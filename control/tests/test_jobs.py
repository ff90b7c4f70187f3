"""The media job queue (issue 12) on the loopback MariaDB: priority classes, the most
expensive job that fits a node's budget first, leases that run out and move a job to
another node, SKIP LOCKED claims, attempts that end in a failure, cancellation."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from mediagrid import jobs
from mediagrid.db import Connection
from mediagrid_dev import DevCluster

pytestmark = pytest.mark.integration


@pytest.fixture
def grp() -> str:
    """A group name of this test alone (its nodes are named after it): jobs of other
    tests are not in its way."""
    return f"q{uuid.uuid4().hex[:8]}"


def add(conn: Connection, grp: str, kind: str, klass: int, cost: float, sid: int | None = None) -> None:
    """A job holding as many cores as its cost, so the budget arithmetic reads simply."""
    with conn.cursor() as cur:
        jobs.enqueue(cur, sid or time.monotonic_ns(), "demo", grp, kind, klass, cost, cores=cost)
    conn.commit()


def test_classes_first_then_the_most_expensive_that_fits(conn: Connection, grp: str) -> None:
    add(conn, grp, "ladder-small", jobs.LADDER, 1.0)
    add(conn, grp, "ladder-big", jobs.LADDER, 3.0)
    add(conn, grp, "backfill", jobs.BACKFILL, 9.0)
    add(conn, grp, "first", jobs.FIRST_PLAYABLE, 0.5)
    add(conn, grp, "ladder-huge", jobs.LADDER, 50.0)
    order = []
    while (job := jobs.claim(conn, grp + "-a", grp, budget=10.0, lease=60)) is not None:
        order.append(job.kind)
    # first-playable; then the ladder's most expensive that fits (3.0; then 1.0 fits what
    # is left, 10 - 0.5 - 3); the 50.0 and the 9.0 backfill wait: they do not fit
    assert order == ["first", "ladder-big", "ladder-small"]
    # an idle node takes a job over its budget rather than leave it waiting for ever
    job = jobs.claim(conn, grp + "-b", grp, budget=10.0, lease=60)
    assert job is not None and job.kind == "ladder-huge"


def test_a_dead_workers_job_runs_elsewhere(conn: Connection, grp: str) -> None:
    add(conn, grp, "rendition:720p", jobs.LADDER, 2.0)
    first = jobs.claim(conn, grp + "-a", grp, budget=10.0, lease=0.3)
    assert first is not None and jobs.renew(conn, first, grp + "-a", 0.3, 0.5)
    assert jobs.claim(conn, grp + "-b", grp, budget=10.0, lease=60) is None  # still leased
    time.sleep(0.5)  # node-a's worker dies: no renewal
    second = jobs.claim(conn, grp + "-b", grp, budget=10.0, lease=60)
    assert second is not None and second.id == first.id and second.attempts == 2
    # the old worker learns it lost the job, and cannot publish its output
    assert not jobs.renew(conn, first, grp + "-a", 60, 0.9)
    assert not jobs.finish(conn, first, grp + "-a")
    assert jobs.finish(conn, second, grp + "-b")
    with conn.cursor() as cur:
        cur.execute("SELECT state, node_id, progress FROM media_jobs WHERE id = %s", (first.id,))
        assert cur.fetchone() == {"state": "done", "node_id": grp + "-b", "progress": 1.0}
    conn.commit()


def test_concurrent_claims_take_different_jobs(cluster: DevCluster, grp: str) -> None:
    setup = cluster.db()
    try:
        for i in range(8):
            add(setup, grp, f"k{i}", jobs.LADDER, 1.0)
    finally:
        setup.close()
    got: list[int] = []
    lock = threading.Lock()

    def worker(node: str) -> None:
        c = cluster.db()
        try:
            while (job := jobs.claim(c, node, grp, budget=100.0, lease=60)) is not None:
                with lock:
                    got.append(job.id)
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(f"{grp}-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 8 and len(set(got)) == 8


def test_a_job_that_keeps_killing_workers_fails(conn: Connection, grp: str) -> None:
    add(conn, grp, "poison", jobs.FIRST_PLAYABLE, 1.0)
    for _ in range(3):
        assert jobs.claim(conn, grp + "-a", grp, budget=10.0, lease=0.05, max_attempts=3) is not None
        time.sleep(0.1)
    assert jobs.claim(conn, grp + "-a", grp, budget=10.0, lease=60, max_attempts=3) is None
    with conn.cursor() as cur:
        cur.execute("SELECT state, code, attempts FROM media_jobs WHERE grp = %s", (grp,))
        assert cur.fetchone() == {"state": "failed", "code": "too_many_attempts", "attempts": 3}
    conn.commit()


def test_deleting_the_file_cancels_its_jobs(conn: Connection, grp: str) -> None:
    sid = time.monotonic_ns()
    add(conn, grp, "package", jobs.FIRST_PLAYABLE, 1.0, sid)
    add(conn, grp, "rendition:480p", jobs.LADDER, 1.0, sid)
    running = jobs.claim(conn, grp + "-a", grp, budget=10.0, lease=60)
    assert running is not None
    with conn.cursor() as cur:
        assert jobs.cancel_file(cur, sid) == 2
        assert not jobs.enqueue(cur, sid, "demo", grp, "package", jobs.FIRST_PLAYABLE, 1.0)  # made once
    conn.commit()
    assert not jobs.renew(conn, running, grp + "-a", 60, 0.5)  # the worker stops
    assert jobs.claim(conn, grp + "-b", grp, budget=10.0, lease=60) is None
