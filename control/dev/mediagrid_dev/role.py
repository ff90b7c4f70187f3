"""An Ansible role's templates, rendered here as Ansible renders them on a node.

The dev cluster runs what the roles deploy: their templates with their defaults and vars
(roles/<name>/defaults/main.yml, vars/main.yml), the cluster's own values over them.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import yaml

REPO = Path(__file__).resolve().parents[3]
MANAGED = "Rendered from roles/ by the dev cluster (mediagrid_dev); do not edit."


def _comment(text: str, style: str = "plain") -> str:
    """Ansible's ``comment`` filter, for the styles the roles' templates use."""
    lines = "".join(f"{' - ' if style == 'xml' else '# '}{line}\n" for line in text.splitlines())
    if style == "xml":
        return f"<!--\n -\n{lines} -\n-->"
    return f"#\n{lines}#"


def _quote(text: Any) -> str:
    """Ansible's ``quote`` filter (shell quoting)."""
    return shlex.quote(str(text))


class Role:
    def __init__(self, name: str, extra_templates: Path | None = None) -> None:
        self.path = REPO / "roles" / name
        if not (self.path / "defaults" / "main.yml").is_file():
            raise RuntimeError(f"no role at {self.path}: install the dev cluster editable (make venv)")
        search = [self.path / "templates", *([extra_templates] if extra_templates else [])]
        # as Ansible's template module: trailing newlines kept, a block tag's newline dropped
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(search),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
        )
        self.env.filters["comment"] = _comment
        self.env.filters["quote"] = _quote

    def _load(self, sub: str) -> dict[str, Any]:
        path = self.path / sub / "main.yml"
        return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}

    def vars(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The role's defaults and vars with the given values over them; values that are
        themselves templates ("{{ other_var }}") are rendered, as Ansible does."""
        variables = {
            "ansible_managed": MANAGED,
            "role_path": str(self.path),
            **self._load("defaults"),
            **self._load("vars"),
            **overrides,
        }
        return {key: self._resolve(value, variables) for key, value in variables.items()}

    def _resolve(self, value: Any, variables: Mapping[str, Any]) -> Any:
        if isinstance(value, str) and "{{" in value:
            try:
                rendered = self.env.from_string(value).render(variables)
            except jinja2.UndefinedError as err:
                # Ansible resolves lazily: a value nobody uses may refer to what is not set
                return self.env.undefined(hint=f"{value!r}: {err.message}")
            return self._resolve(rendered, variables)
        if isinstance(value, dict):
            return {k: self._resolve(v, variables) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v, variables) for v in value]
        return value

    def render(self, template: str, overrides: Mapping[str, Any]) -> str:
        return self.env.get_template(template).render(self.vars(overrides))
