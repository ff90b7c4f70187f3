"""The namespace survives the loss of the database (issue 11, item 3), as an operator would
recover: files are uploaded, `make db-backup` stores a backup on the backup store (a node
other than db1), more files are uploaded and one is overwritten, then db1's data directory
is destroyed. `make db-restore` restores the newest backup and rebuilds from the volumes
what it lacks; every acknowledged upload then downloads byte-identical."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import time
import uuid
from pathlib import Path

import requests

from mediagrid.client import Client

from .conftest import GROUPS, ROOT, Lab, docker, sql
from .drills import record, wait_until

RUN = uuid.uuid4().hex[:6]
STORE = ("tracker2", "/var/backups/mediagrid/db")  # the last front node keeps the backups


def make(target: str) -> str:
    """A make target of the README's, run as an operator would; its output."""
    run = subprocess.run(["make", "-C", str(ROOT), target], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def users_in_every_group(client: Client) -> list[str]:
    found: dict[str, str] = {}
    for i in range(400):
        user = f"bk{i}-{RUN}"
        found.setdefault(client.storages(user)["group"], user)
        if len(found) == len(GROUPS):
            return list(found.values())
    raise AssertionError(f"no user of this run landed in every group: {found}")


def stored(node: str, path: str) -> list[str]:
    return sorted(docker("exec", node, "ls", "-1", path).split())


def test_database_destroyed_restored_and_rebuilt(lab: Lab, tmp_path: Path) -> None:
    client = lab.client()
    users = users_in_every_group(client)
    acknowledged: dict[tuple[str, str], bytes] = {}

    def upload(user: str, file_id: str, size: int) -> None:
        data = os.urandom(size)
        src = tmp_path / "src.bin"
        src.write_bytes(data)
        client.upload(src, user, file_id, overwrite=True)
        acknowledged[(user, file_id)] = data

    for user in users:
        for i in range(3):
            upload(user, f"before-{i}.bin", 50_000 + i)
    out = make("db-backup")
    names = [n for n in stored(*STORE) if n.endswith(".mbstream")]
    assert names and f"stored {names[-1]}" in out and f"{names[-1]}.sha256" in stored(*STORE)
    # db1 keeps no copy: the backup lives only on the store
    assert docker("exec", "db1", "ls", "-A", "/var/lib/mediagrid-backup").strip() == ""

    # after the backup: new files, and a file overwritten (a new storage id for its name)
    for user in users:
        upload(user, "after.bin", 70_000)
        upload(user, "before-0.bin", 60_000)

    # the database is lost
    start = time.monotonic()
    docker("exec", "db1", "systemctl", "stop", "mariadb")
    docker("exec", "db1", "sh", "-c", "rm -rf /var/lib/mysql/* /var/lib/mysql/.[!.]*")
    docker("exec", "db1", "systemctl", "start", "mariadb", check=False)  # nothing to start from
    failed = requests.get(client.playback_url(users[0], "after.bin"), timeout=30)
    assert failed.status_code >= 500

    out = make("db-restore")
    assert "restored db-" in out
    recovered = time.monotonic() - start

    def downloads(user: str, file_id: str) -> bytes:
        buf = io.BytesIO()
        client.download(user, file_id, buf)
        return buf.getvalue()

    wait_until("service back after the restore", lambda: downloads(users[0], "after.bin") is not None, 60)
    for (user, file_id), data in acknowledged.items():
        got = downloads(user, file_id)
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), (user, file_id)
    for user in users:
        assert sorted(f["file_id"] for f in client.list(user)) == [
            "after.bin",
            "before-0.bin",
            "before-1.bin",
            "before-2.bin",
        ]
    # new uploads take storage ids above every restored one: nothing is overwritten
    upload(users[0], "later.bin", 10_000)
    assert downloads(users[0], "later.bin") == acknowledged[(users[0], "later.bin")]
    for (user, file_id), data in acknowledged.items():
        assert downloads(user, file_id) == data
    highest = int(sql("SELECT MAX(sid) FROM files")[0][0])
    record(
        "backup_restore_rebuild",
        {"files": len(acknowledged), "outage_s": round(recovered, 1), "highest_sid": highest},
    )
    for user in users:
        for f in client.list(user):
            client.delete(user, f["file_id"])
