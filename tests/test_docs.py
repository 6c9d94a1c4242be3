"""Every command the CLI offers has its section in docs/cli.md, and README links resolve."""

from __future__ import annotations

import re
from pathlib import Path

from machineroom.cli import ALIASES, COMMANDS

ROOT = Path(__file__).resolve().parent.parent


def test_every_command_is_documented() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    missing = [name for name in COMMANDS if f"## `machineroom {name}" not in text]
    assert missing == []
    for alias in ALIASES:
        assert f"`{alias}`" in text, alias


def test_readme_links_point_at_files() -> None:
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert (ROOT / target).exists(), target


def test_every_module_has_a_page_and_is_in_the_index() -> None:
    from machineroom.modules import MODULES

    index = (ROOT / "docs" / "modules.md").read_text()
    for name in MODULES:
        assert (ROOT / "docs" / "modules" / f"{name}.md").exists(), name
        assert f"(modules/{name}.md)" in index, name
