"""Running the `machineroom` CLI as a user does: a subprocess in a folder of one's choosing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def machineroom(
    *args: str, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`machineroom ARGS...` in `cwd`, output captured as text; wide columns so tables do not
    wrap."""
    return subprocess.run(
        [sys.executable, "-m", "machineroom", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
