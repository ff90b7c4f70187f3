"""CPU time spent by each kind of process on this host (lab containers included) while a
benchmark runs: where an operation's time goes, from /proc, with no profiler installed.
Processes that end within the run (the load generator, say) are not counted."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

# what a process is, by its command name (first match wins); everything else is "other"
KINDS = (
    ("glusterfsd", "GlusterFS bricks"),
    ("glusterfs", "GlusterFS FUSE clients"),
    ("mariadbd", "MariaDB"),
    ("nginx", "nginx"),
    ("gunicorn", "mediagrid services"),
    ("python3", "mediagrid services"),
)


def _kind(comm: str, cmdline: str) -> str:
    for prefix, kind in KINDS:
        if comm.startswith(prefix):
            if prefix == "python3" and "mediagrid" not in cmdline:
                break
            return kind
    return "other"


def sample() -> dict[int, tuple[str, int]]:
    """(kind, CPU ticks so far) of every process that can be read."""
    out: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(entry.name)] = (_kind(comm, cmdline), int(fields[11]) + int(fields[12]))
    return out


def spent(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]]) -> Counter[str]:
    """CPU seconds per kind between two samples (processes started in between count whole)."""
    hz = os.sysconf("SC_CLK_TCK")
    used: Counter[str] = Counter()
    for pid, (kind, ticks) in after.items():
        prev = before.get(pid)
        delta = ticks - (prev[1] if prev and prev[0] == kind else 0)
        if delta > 0:
            used[kind] += delta / hz
    return used
