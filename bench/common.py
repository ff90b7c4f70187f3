"""Helpers shared by the loopback benchmark (bench/run.py) and the lab one (bench/lab.py)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path


def users_lua(prefix: str, count: int, app: str = "demo", delay_ms: int = 0) -> str:
    """A wrk script asking the tracker for ``count`` users in turn (prefix0..prefixN-1),
    each connection pausing ``delay_ms`` between requests (see :func:`paced_lua`)."""
    return f"""
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/api/v1/storages?app={app}&user={prefix}" .. (n % {count}))
end
""" + (paced_lua(delay_ms) if delay_ms else "")


def paced_lua(delay_ms: int) -> str:
    """A wrk script making each connection wait ``delay_ms`` before every request: a bounded
    offered load (about conns * 1000 / delay_ms requests/s), so the latency percentiles are
    those of the service, not of a run queue saturated by wrk itself."""
    return f"delay = function() return {delay_ms} end\n"


def wrk(
    url: str,
    conns: int,
    duration: int,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
    threads: int = 2,
) -> dict[str, float]:
    """Run wrk; requests/s, p99 (ms) and the number of requests. Any non-2xx/3xx fails."""
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency"]
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    if script:
        argv += ["-s", str(script)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    if not (rps and total and p99):
        raise RuntimeError(f"cannot parse wrk's output for {url}:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} failed requests\n{out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {
        "rps": float(rps.group(1)),
        "p99_ms": float(p99.group(1)) * scale,
        "requests": int(total.group(1)),
    }


def curl_time(url: str) -> float:
    """Seconds curl spends on a whole GET (its own clock, not process start-up)."""
    out = subprocess.run(
        ["curl", "-sf", "-o", "/dev/null", "-w", "%{time_total}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out)


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """A Markdown table."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(row) + " |" for row in rows],
    ]


def write_between(path: Path, start: str, end: str, text: str) -> None:
    """Replace what lies between the markers ``start`` and ``end`` in ``path`` with ``text``;
    without the markers, append them (and ``text``) at the end. Nothing else is touched."""
    old = path.read_text() if path.exists() else ""
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in old and end in old.split(start, 1)[1]:
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new)
