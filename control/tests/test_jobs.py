"""The media job queue (issue 12) on the loopback MariaDB: priority classes, the most
expensive job that fits a node's budget first, leases that run out and move a job to
another node, SKIP LOCKED claims, attempts that end in a failure, cancellation."""

from __future__ import annotations

import json
import subprocess
import sys
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


def test_an_app_at_its_quota_waits_while_others_run(cluster: DevCluster, conn: Connection, grp: str) -> None:
    busy, calm = f"busy{grp}", f"calm{grp}"
    cluster.add_app(busy)
    cluster.add_app(calm)
    with conn.cursor() as cur:
        assert jobs.set_quota(cur, busy, 1, None)
        for i in range(3):  # the busy app's jobs are the most expensive: first, were it not held
            jobs.enqueue(cur, time.monotonic_ns(), busy, grp, f"big{i}", jobs.LADDER, 10.0, 1.0)
        for i in range(2):
            jobs.enqueue(cur, time.monotonic_ns(), calm, grp, f"small{i}", jobs.LADDER, 1.0, 1.0)
    conn.commit()
    taken = []
    while (job := jobs.claim(conn, grp + "-a", grp, budget=100.0, lease=60)) is not None:
        taken.append(job)
    # one of the busy app's (its limit), then the calm app's go ahead of its other two
    assert [(j.app, j.kind) for j in taken] == [(busy, "big0"), (calm, "small0"), (calm, "small1")]
    with conn.cursor() as cur:
        assert jobs.blocked_apps(cur, busy) == {busy: jobs.APP_MAX_JOBS}
        view = jobs.overview(cur, busy)
    conn.commit()
    assert [j["waiting"] for j in view["jobs"] if j["state"] == "queued"] == ["app_max_jobs"] * 2
    assert jobs.finish(conn, taken[0], grp + "-a")  # its slot frees: the next one runs
    again = jobs.claim(conn, grp + "-a", grp, budget=100.0, lease=60)
    assert again is not None and (again.app, again.kind) == (busy, "big1")
    # a CPU-seconds-per-day quota: the work done today counts (cores x seconds)
    time.sleep(0.2)
    assert jobs.finish(conn, again, grp + "-a")
    with conn.cursor() as cur:
        jobs.set_quota(cur, busy, None, 0.1)
        assert jobs.blocked_apps(cur, busy) == {busy: jobs.APP_CPU_DAY}
    conn.commit()
    assert jobs.claim(conn, grp + "-a", grp, budget=100.0, lease=60) is None
    with conn.cursor() as cur:
        jobs.set_quota(cur, busy, None, None)
    conn.commit()
    last = jobs.claim(conn, grp + "-a", grp, budget=100.0, lease=60)
    assert last is not None and last.kind == "big2"


def test_two_nodes_never_both_take_an_app_s_last_slot(
    cluster: DevCluster, conn: Connection, grp: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two claims race for an app's one concurrent slot: this node's claim has begun (it
    has read the queue) when another node takes the slot. Holding the app's row, this
    claim's re-check must see that claim, not what its transaction first read."""
    busy = f"busy{grp}"
    cluster.add_app(busy)
    with conn.cursor() as cur:
        assert jobs.set_quota(cur, busy, 1, None)
        for i in range(2):
            jobs.enqueue(cur, time.monotonic_ns(), busy, grp, f"big{i}", jobs.LADDER, 1.0, 1.0)
    conn.commit()
    other = cluster.db()
    real = jobs.blocked_apps
    raced: list[jobs.Job | None] = []

    def racing(cur: object, app: str | None = None) -> dict[str, str]:
        found = real(cur, app)
        if app is None and not raced:  # this claim's first look at the quotas
            raced.append(None)
            raced[0] = jobs.claim(other, grp + "-b", grp, budget=100.0, lease=60)
        return found

    monkeypatch.setattr(jobs, "blocked_apps", racing)
    try:
        mine = jobs.claim(conn, grp + "-a", grp, budget=100.0, lease=60)
    finally:
        other.close()
    assert raced[0] is not None and raced[0].kind == "big0"  # the other node took the slot
    assert mine is None  # and this one waits: the app runs one job
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM media_jobs WHERE grp = %s AND state = 'running'", (grp,))
        row = cur.fetchone()
    conn.commit()
    assert row is not None and row["n"] == 1


def test_the_admin_view_retries_and_cancels(
    cluster: DevCluster, conn: Connection, grp: str, admin_env: dict[str, str]
) -> None:
    app = f"adm{grp}"
    cluster.add_app(app)
    with conn.cursor() as cur:
        jobs.enqueue(cur, time.monotonic_ns(), app, grp, "hls:720p", jobs.LADDER, 5.0, 1.0)
        jobs.enqueue(cur, time.monotonic_ns(), app, grp, "sprite", jobs.BACKFILL, 1.0, 1.0)
    conn.commit()
    running = jobs.claim(conn, grp + "-a", grp, budget=1.0, lease=60)
    assert running is not None and running.kind == "hls:720p"
    admin = [sys.executable, "-m", "mediagrid.admin"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*admin, *args], env=admin_env, capture_output=True, text=True, timeout=60)

    view = json.loads(run("jobs", "--app", app, "--json").stdout)
    assert view["nodes"] == [{"node_id": grp + "-a", "jobs": 1, "cores": 1.0}]
    assert [(j["kind"], j["state"], j["waiting"]) for j in view["jobs"]] == [
        ("hls:720p", "running", None),
        ("sprite", "queued", "queue"),
    ]
    text = run("jobs", "--app", app).stdout
    assert "hls:720p" in text and "waiting: queue" in text
    assert run("jobs", "cancel", str(running.id)).returncode == 0
    assert not jobs.renew(conn, running, grp + "-a", 60, 0.5)  # its worker stops
    assert run("jobs", "cancel", str(running.id)).returncode == 1  # nothing left to cancel
    assert run("jobs", "retry", str(running.id)).returncode == 1  # its file is not a file here
    out = run("app", "quota", app, "--media-max-jobs", "2")
    assert out.returncode == 0 and "media_max_jobs=2" in out.stdout, out.stderr
