"""`machineroom add-cert` that fails on a host leaves nothing for `apply --resume`: its
playbook is a temporary file gone when the command ends, so the dashboard must not suggest
resuming it. A real lab host whose deploy user's ~/.ssh is a file, so the cert stage fails."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from test_stages_basic import Project, machineroom

from machineroom.lab import Lab


def test_a_failed_add_cert_leaves_no_pending_apply(
    tmp_path: Path, hermetic: Path, lab: Lab
) -> None:
    project = Project(tmp_path, lab, -2)
    project.root_sh("rm -rf ~deploy/.ssh && touch ~deploy/.ssh")
    try:
        project.inventory("deploy", password="deploy-pass")
        out = machineroom("add-cert", "all", cwd=project.root)
        assert out.returncode == 2, out.stdout + out.stderr
    finally:
        project.root_sh("rm -f ~deploy/.ssh")
    with sqlite3.connect(project.root / ".machineroom" / "state.db") as db:
        (action,) = db.execute(
            "SELECT next_action FROM server_room WHERE id = ?", [project.name]
        ).fetchone()
        (kind, status) = db.execute("SELECT kind, status FROM runs ORDER BY id DESC").fetchone()
    assert (kind, status) == ("add-cert", "failed")
    assert json.loads(action or "{}") == {}  # nothing says `apply /tmp/... --resume`
