"""Bricks never go on a node's root file system unless the inventory says the node has
no other disk (issue 11, item 15). Runs the glusterfs role's brick checks on this machine:
a bricks root on / is refused, one on a file system of its own (tmpfs) is taken."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _bricks(root: pathlib.Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-e", f"glusterfs_bricks_root={root}", *extra,
         "tests/playbooks/bricks.yml"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def on_root() -> Iterator[pathlib.Path]:
    """A directory on this machine's root file system."""
    path = pathlib.Path("/") / f"mediagrid-bricks-test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    assert subprocess.run(["findmnt", "-n", "-o", "TARGET", "--target", str(path)],
                          capture_output=True, text=True, check=True).stdout.strip() == "/"  # fmt: skip
    yield path
    shutil.rmtree(path)


@pytest.fixture
def own_fs() -> Iterator[pathlib.Path]:
    """A directory on a file system of its own (/dev/shm, a tmpfs)."""
    path = pathlib.Path("/dev/shm") / f"mediagrid-bricks-test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    yield path
    shutil.rmtree(path)


def test_bricks_on_the_root_file_system_are_refused(on_root: pathlib.Path) -> None:
    run = _bricks(on_root)
    assert run.returncode != 0
    assert "is on the root file system of localhost" in run.stdout, run.stdout
    assert not (on_root / "t1").exists()


def test_a_missing_bricks_root_is_refused(on_root: pathlib.Path) -> None:
    run = _bricks(on_root / "not-mounted")
    assert run.returncode != 0 and "root file system" in run.stdout, run.stdout


def test_bricks_on_their_own_file_system_are_taken(own_fs: pathlib.Path) -> None:
    run = _bricks(own_fs)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (own_fs / "t1").is_dir()


def test_a_single_disk_node_says_so(on_root: pathlib.Path) -> None:
    run = _bricks(on_root, "-e", "glusterfs_bricks_allow_root_fs=true")
    assert run.returncode == 0, run.stdout + run.stderr
    assert (on_root / "t1").is_dir()
