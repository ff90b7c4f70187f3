"""Bricks refuse to fill their file system (issue 11, item 15): every volume keeps
storage.reserve free on its bricks' file system. With the reserve raised past what is free,
an upload to the group is refused with the JSON 507 and leaves neither a row nor a file."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from mediagrid.client import MediagridError

from .conftest import GROUPS, Lab, docker, sql

RUN = uuid.uuid4().hex[:6]


def reserve(group: str) -> str:
    out = docker("exec", GROUPS[group][0], "gluster", "volume", "get", group, "storage.reserve")
    return out.splitlines()[-1].split()[1]


def test_volumes_keep_a_reserve() -> None:
    for group in GROUPS:
        assert reserve(group) == "5"


def test_upload_past_the_reserve_is_refused(lab: Lab, tmp_path: Path) -> None:
    client = lab.client()
    user = next(u for u in (f"rsv{i}-{RUN}" for i in range(200)) if client.storages(u)["group"] == "g1")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(256 << 10))
    node, before = GROUPS["g1"][0], reserve("g1")
    docker("exec", node, "gluster", "volume", "set", "g1", "storage.reserve", "99")
    try:
        time.sleep(1)
        with pytest.raises(MediagridError) as err:
            client.upload(src, user, "big.bin")
        assert (err.value.status, err.value.code) == (507, "insufficient_storage")
    finally:
        docker("exec", node, "gluster", "volume", "set", "g1", "storage.reserve", before)
    assert client.list(user) == []
    assert sql(f"SELECT COUNT(*) FROM files WHERE user='{user}'") == [["0"]]
    # and the group takes uploads again once there is room (the mount's free space is
    # re-read within seconds)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.upload(src, user, "big.bin")
            break
        except MediagridError as again:
            assert again.status == 507 and time.monotonic() < deadline, again
            time.sleep(1)
    client.delete(user, "big.bin")
