"""Facts of the lab cluster (`make lab`) that its tests and its benchmarks share: the admin
app's credentials, the front nodes' certificate keys, and the docker command that reaches
its containers. The lab's addresses and
containers are the e2e suite's (tests/e2e/conftest.py); the files read here are the ones
`make lab` writes or keeps in the repository."""

from __future__ import annotations

import base64
import hashlib
import subprocess

from .role import REPO

# The lab's admin app (sees the topology, /api/v1/groups): inventory/lab/group_vars/all/.
ADMIN_APP = "ops"
LAB_VAULT = REPO / "inventory" / "lab" / "group_vars" / "all" / "vault.yml"


def docker(*args: str, check: bool = True, timeout: float = 60) -> str:
    """``docker <args>``'s output; a RuntimeError with its message when it fails (``check``)."""
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def admin_secret() -> str:
    """The lab's admin app secret (LAB ONLY, in plain text in the lab inventory)."""
    for line in LAB_VAULT.read_text().splitlines():
        if line.startswith("vault_mediagrid_ops_secret:"):
            return line.split(":", 1)[1].strip()
    raise LookupError(f"no vault_mediagrid_ops_secret in {LAB_VAULT}")


def front_spki_hashes() -> list[str]:
    """The SPKI hashes (base64 SHA-256) of the front nodes' lab certificates: Chromium keeps
    its own trust store, so the browser tests pin the cluster's keys instead
    (--ignore-certificate-errors-spki-list): the VIP's certificate is still checked."""
    hashes = []
    for crt in sorted((REPO / "build" / "lab" / "pki").glob("tracker*.crt")):
        pub = subprocess.run(
            ["openssl", "x509", "-in", str(crt), "-pubkey", "-noout"], capture_output=True, check=True
        )
        der = subprocess.run(
            ["openssl", "pkey", "-pubin", "-outform", "der"],
            input=pub.stdout,
            capture_output=True,
            check=True,
        )
        hashes.append(base64.b64encode(hashlib.sha256(der.stdout).digest()).decode())
    return hashes
