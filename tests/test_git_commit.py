"""The commit a run records for its playbook's repository, read with one real `git status`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from machineroom.runs.prepare import git_commit, repository_top, roles_path


def _git(folder: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "HOME": str(folder)}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True, env=env
    )
    return out.stdout.strip()


def test_the_commit_and_whether_the_tree_has_changes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "playbooks" / "web").mkdir(parents=True)
    (repo / "roles").mkdir()
    playbook = repo / "playbooks" / "web" / "site.yml"
    playbook.write_text("- hosts: all\n")
    assert git_commit(str(playbook)) is None  # not a repository

    _git(repo, "init", "-q")
    assert repository_top(playbook.parent) == repo
    assert git_commit(str(playbook)) is None  # no commit yet
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "HEAD")
    assert git_commit(str(playbook)) == head

    (repo / "notes.txt").write_text("untracked\n")
    assert git_commit(str(playbook)) == head + "-dirty"
    (repo / "notes.txt").unlink()
    playbook.write_text("- hosts: web\n")
    assert git_commit(str(playbook)) == head + "-dirty"

    # the repository's top roles/ is where roles are looked for, found without git
    assert str(repo / "roles") in roles_path(str(playbook))
