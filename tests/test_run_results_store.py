"""What the run pages read from a real SQLite state database: the audit log's module calls
kept from their start, ignored failures recorded as such, and the queries of big runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from machineroom.state import open_state


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with open_state(tmp_path / ".machineroom" / "state.db") as opened:
        yield opened


def test_a_long_programs_audit_action_keeps_its_first_task_calls(store: Any) -> None:
    run = store.start_run("apply", "machineroom apply site.yml")
    calls = [f"command: echo step {n:03d} of a long program" for n in range(300)]
    store.record_command(run, "web1", "sh -c ...", 0, 0.1, action="\n".join(calls))
    action = store.audit(run_id=run)[0]["action"]
    lines = action.splitlines()
    assert lines[0] == "command: echo step 000 of a long program"
    assert lines[1] == "command: echo step 001 of a long program"
    assert len(action) <= 4 * 1024 + 20
    kept = len(lines) - 1
    assert lines[-1] == f"[... {300 - kept} more]"
    assert lines[-2] == calls[kept - 1]
