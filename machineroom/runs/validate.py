"""What `machineroom validate` checks without connecting: the inventory (key files, its
warnings) and each playbook loaded as `apply` would load it. Each check raises the errors it
finds (naming file and line) or returns what to print; the CLI prints and picks the exit code.
The fleet files beside the inventory (alerts.yml, schedules.yml): fleet/validate.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from machineroom.runs.workspace import Workspace


@dataclass(frozen=True)
class Finding:
    """A line of a check's report: a warning (printed as one, and counted by `--strict`) or
    the summary of what was found valid."""

    text: str
    warning: bool = False


def validate_inventory(workspace: Workspace) -> list[Finding]:
    """The workspace's inventory, loaded and checked: its warnings, then a summary line.
    Raises InputErrors for every host whose key file is missing."""
    from machineroom.errors import InputErrors
    from machineroom.inventory import missing_key_files

    inventory = workspace.inventory
    missing = missing_key_files(inventory.hosts.values())
    if missing:
        raise InputErrors(missing)
    findings = [Finding(str(warning), warning=True) for warning in inventory.warnings]
    findings.append(
        Finding(
            f"{', '.join(workspace.inventory_paths)}: {len(inventory.hosts)} host(s), "
            f"{len(inventory.groups)} group(s), {len(inventory.tunnels)} tunnel profile(s): valid"
            + (f", {len(inventory.warnings)} warning(s)" if inventory.warnings else "")
        )
    )
    return findings


def validate_playbook(path: str, strict: bool) -> list[Finding]:
    """Load a playbook as `apply` would (roles, imports, every module's arguments, the
    template files of `template:` tasks compiled): its
    warnings (tasks machineroom cannot run behind a condition), then a summary line; under
    `strict` the warnings are raised as InputErrors instead."""
    from machineroom.errors import InputErrors
    from machineroom.executor.template_check import compile_templates
    from machineroom.playbook.deferred import strict_error, warning_text
    from machineroom.playbook.load import iter_tasks, load_playbook
    from machineroom.runs.prepare import roles_path

    playbook = load_playbook(path, roles_path=roles_path(path))
    compile_templates(playbook, str(Path(path).resolve().parent))
    if strict and playbook.warnings:
        raise InputErrors(strict_error(w) for w in playbook.warnings)
    findings = [Finding(warning_text(w), warning=True) for w in playbook.warnings]
    tasks = sum(
        1 for play in playbook.plays for stage in play.stages for _ in iter_tasks(stage.items)
    )
    findings.append(
        Finding(
            f"{path}: {len(playbook.plays)} play(s), {tasks} task(s): valid"
            + (f", {len(playbook.warnings)} warning(s)" if playbook.warnings else "")
        )
    )
    return findings
