"""The example vault's placeholders fail the preflight (issue 11, item 16); the lab's
(real, if lab-only) secrets pass. Runs ansible-playbook locally: no lab, no Docker."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "inventory" / "production.example" / "group_vars" / "all" / "vault.yml.example"
LAB = REPO / "inventory" / "lab" / "group_vars" / "all" / "vault.yml"


def _preflight(vault: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            "localhost,",
            "-e",
            f"vault_file={vault}",
            "tests/playbooks/preflight.yml",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_example_placeholders_fail_the_preflight() -> None:
    run = _preflight(EXAMPLE)
    assert run.returncode != 0
    assert "vault_mediagrid_cluster_secret" in run.stdout and "vault_mariadb_app_password" in run.stdout


@pytest.mark.parametrize("vault", [LAB])
def test_real_secrets_pass_the_preflight(vault: pathlib.Path) -> None:
    run = _preflight(vault)
    assert run.returncode == 0, run.stdout + run.stderr
