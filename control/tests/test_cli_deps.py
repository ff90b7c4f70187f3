"""The CLI and the client library run where only requests is installed: the services'
dependencies (Flask, Werkzeug, gunicorn, PyMySQL, spectree, pydantic) are the "server" extra."""

from __future__ import annotations

import subprocess
import sys

SERVER_ONLY = ("flask", "werkzeug", "jinja2", "gunicorn", "pymysql", "spectree", "pydantic")

# Run in a fresh interpreter where importing any server dependency fails, as it would
# in a venv with `pip install mediagrid` (no extra).
_PROBE = f"""
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {SERVER_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Block())
import mediagrid.cli
from mediagrid.client import Client
from mediagrid.signing import signed_headers

client = Client("http://127.0.0.1:9", "demo", "s3cret")
assert client.playback_url("alice", "a.mp4", 60).startswith("http://127.0.0.1:9/files/demo/alice/a.mp4?")
assert signed_headers("demo", "s3cret", "GET", "/api/v1/storages")["X-MG-App"] == "demo"
try:
    mediagrid.cli.main(["--help"])
except SystemExit as done:
    assert done.code == 0
print("ok")
"""


def test_the_cli_imports_without_the_server_dependencies() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_the_probe_does_block_them() -> None:
    """The probe would pass vacuously if blocking did not work: the services must fail."""
    probe = _PROBE.replace("import mediagrid.cli\n", "import mediagrid.storage\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "(blocked)" in out.stderr
