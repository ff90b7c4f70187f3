"""The services' TOML configuration files, written with a real TOML writer (tomli-w):
values with quotes, backslashes or newlines come back as they were written."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w


def write(path: Path, conf: Mapping[str, Any]) -> Path:
    """Write ``conf`` to ``path``, readable by its owner only (it holds secrets)."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(tomli_w.dumps(dict(conf)))
    return path


def read(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def update(path: Path, extra: Mapping[str, Any]) -> None:
    """Add or change settings in an existing file."""
    write(path, {**read(path), **extra})
