"""Everything a playbook run needs before any host is contacted: the playbook loaded and
validated, each play's hosts chosen (limit, retired hosts, `--resume`), extra vars parsed."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machineroom.errors import InputErrors, UsageError
from machineroom.runs.workspace import Workspace, with_recorded_keys

if TYPE_CHECKING:
    from machineroom.inventory.model import Host, Inventory
    from machineroom.playbook.model import Playbook
    from machineroom.runs.play_inputs import Prompt
    from machineroom.state import StateStore


@dataclass
class Prepared:
    """A validated playbook and the hosts of each of its plays."""

    playbook: Playbook
    play_hosts: list[list[Host]]
    extra_vars: dict[str, Any]
    extra_sources: dict[str, str]
    playbook_dir: str
    server_res: dict[str, dict[str, Any]]
    vault_in_vars: bool = False  # some variable holds a vault value: decrypt as used


def roles_path(playbook: str) -> list[str]:
    """Where roles are looked for besides the playbook's own `roles/`: the folder above it
    (`playbooks/site.yml` -> `roles/`), the repository's top, the current folder."""
    from machineroom.runs.settings import current_settings

    folder = Path(playbook).resolve().parent
    configured = current_settings().get("roles_path") or []  # ansible.cfg, machineroom.yml
    candidates = [*(Path(p) for p in configured), folder.parent / "roles", Path.cwd() / "roles"]
    top = repository_top(folder)
    if top is not None:
        candidates.append(top / "roles")
    seen: list[str] = []
    for candidate in candidates:
        if candidate.is_dir() and str(candidate) not in seen:
            seen.append(str(candidate))
    return seen


def _git(folder: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def repository_top(folder: Path) -> Path | None:
    """The git work tree `folder` is in (the nearest folder up with a `.git`), found without
    running git: a start-up cost of every run."""
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def git_commit(playbook: str) -> str | None:
    """The commit of the playbook's repository, with `-dirty` when it has local changes
    (untracked files count); one `git status`, none outside a repository."""
    folder = Path(playbook).resolve().parent
    if repository_top(folder) is None:
        return None
    status = _git(folder, "status", "--porcelain=v2", "--branch")
    if status is None:
        return None
    lines = status.splitlines()
    commit = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), None)
    if commit is None or commit == "(initial)":
        return None
    if any(not line.startswith("#") for line in lines):
        commit += "-dirty"
    return commit


def prepare(
    workspace: Workspace,
    playbook_path: str,
    limit: str | None,
    stages: frozenset[str],
    extra_vars: tuple[str, ...],
    only_hosts: set[str] | None = None,
    prompt: Prompt | None = None,
) -> Prepared:
    """Load and validate everything before any host is contacted (errors: exit 4).
    `prompt` asks vars_prompt questions on a terminal (None: their defaults)."""
    from machineroom.executor.inventory_changes import changes_inventory
    from machineroom.inventory import missing_key_files, select_hosts
    from machineroom.playbook.deferred import warning_text
    from machineroom.playbook.load import load_playbook, select_stages
    from machineroom.runs.play_inputs import in_order, settle_plays
    from machineroom.vars import parse_extra_vars

    playbook = load_playbook(playbook_path, roles_path=roles_path(playbook_path))
    for warning in playbook.warnings:  # once per run, before any host (not once per host)
        workspace.warn(f"warning: {warning_text(warning)}")
    if stages:
        playbook = select_stages(playbook, stages)
    values, sources = parse_extra_vars(list(extra_vars))
    playbook = settle_plays(playbook, values, prompt)  # vars_prompt, hosts templates
    workspace.use_playbook_vars(playbook_path)
    inventory = workspace.inventory
    allowed = {h.id for h in select_hosts(inventory, limit)} if limit else None
    res = workspace.server_res()
    retired = workspace.retired_ids(res)
    play_hosts = []
    made_later = changes_inventory(playbook.plays)
    for play in playbook.plays:
        hosts = in_order(play_hosts_of(inventory, play.hosts, made_later), play.order)
        hosts = [
            h
            for h in hosts
            if (allowed is None or h.id in allowed)
            and h.id not in retired
            and (only_hosts is None or h.id in only_hosts)
        ]
        if play.connection == "local":
            hosts = [dataclasses.replace(h, connection="local") for h in hosts]
        play_hosts.append(with_recorded_keys(hosts, res))
    missing = missing_key_files({h.id: h for hs in play_hosts for h in hs}.values())
    if missing:
        raise InputErrors(missing)
    return Prepared(
        playbook,
        play_hosts,
        values,
        sources,
        str(Path(playbook_path).resolve().parent),
        res,
        vault_in_vars=uses_vault(inventory, playbook),
    )


def pending_for(
    workspace: Workspace, playbook: str, store: StateStore
) -> dict[str, dict[str, Any]]:
    """The `next_action` of each host a run of `playbook` left pending. Hosts left pending
    by another playbook are not resumed by this one: its stages are not theirs."""
    wanted = os.path.realpath(playbook)
    pending, elsewhere = {}, {}
    for row in store.servers():
        action = row.next_action
        if not action.get("stage"):
            continue
        recorded = action.get("playbook")
        if recorded is None or recorded == wanted:  # no playbook: an older record
            pending[row.id] = action
        else:
            elsewhere[row.id] = str(recorded)
    if elsewhere and not pending:
        by_playbook: dict[str, list[str]] = {}
        for host, path in elsewhere.items():
            by_playbook.setdefault(path, []).append(host)
        where = "; ".join(
            f"{', '.join(sorted(hosts))} in {_shown_path(path)}"
            for path, hosts in sorted(by_playbook.items())
        )
        raise UsageError(
            f"--resume: no host is pending in {playbook}; hosts stopped in another playbook: "
            f"{where} (resume that one: machineroom apply PLAYBOOK --resume)"
        )
    if elsewhere:
        workspace.warn(
            f"not resumed here (pending in another playbook): {', '.join(sorted(elsewhere))}"
        )
    return pending


def _shown_path(path: str) -> str:
    """A recorded playbook path, relative to the current folder when it is below it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def play_hosts_of(inventory: Inventory, pattern: str, made_later: bool = False) -> list[Host]:
    """The play's hosts; `localhost` is this workstation even when the inventory lacks it.
    `made_later`: add_host / group_by may make the hosts and groups the pattern names (then
    none now is no error: the run chooses them, executor/play.py `later_hosts`)."""
    from machineroom.errors import InputError
    from machineroom.inventory import select_hosts
    from machineroom.inventory.model import Host

    if not pattern:
        return []
    if pattern in ("localhost", "127.0.0.1") and pattern not in inventory.hosts:
        return [Host(id="localhost", host="127.0.0.1", connection="local", groups=("all",))]
    try:
        return select_hosts(inventory, pattern)
    except InputError:
        if made_later:
            return []
        raise


def uses_vault(inventory: Inventory, playbook: Playbook) -> bool:
    """Whether any variable (inventory, play, role defaults and vars) holds a vault value."""
    from machineroom.playbook.load import iter_tasks
    from machineroom.vault import contains_vault

    if any(contains_vault(dict(h.vars)) for h in inventory.hosts.values()):
        return True
    for play in playbook.plays:
        if contains_vault(dict(play.vars)):
            return True
        roles = {id(t.role): t.role for s in play.stages for t in iter_tasks(s.items) if t.role}
        for role in roles.values():
            if contains_vault(dict(role.defaults)) or contains_vault(dict(role.vars)):
                return True
    return False
