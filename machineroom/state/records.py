"""What the state store hands out and the small text rules it applies before writing.

Rows are frozen dataclasses with their JSON columns already parsed; capping, clock,
process-liveness and row-conversion helpers live here, so `store.py` reads as its operations.
"""

from __future__ import annotations

import getpass
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from machineroom.errors import StateError

# One status vocabulary everywhere (STYLE.md); a run adds its own lifecycle words.
TASK_STATUSES = frozenset({"ok", "changed", "skipped", "failed", "unreachable"})
RUN_STATUSES = frozenset({"running", "ok", "failed", "unreachable", "interrupted", "error"})
FINAL_RUN_STATUSES = RUN_STATUSES - {"running"}

# The only shapes the `pass` column accepts: nothing, "the inventory's vault", or the name of an
# environment variable. Anything else could be a password, so it is refused.
PASS_REF = re.compile(r"(?:|vault|env:[A-Za-z_][A-Za-z0-9_]*)")

# Output is capped so that a chatty task cannot grow the database without bound.
TASK_OUTPUT_LIMIT = 64 * 1024
AUDIT_TAIL_LIMIT = 4 * 1024
MESSAGE_LIMIT = 16 * 1024


@dataclass(frozen=True)
class ServerRow:
    """One row of `server_room`; `pass_ref` is the `pass` column (a reference, never a secret)."""

    id: str
    host: str
    user: str
    pass_ref: str
    port: int
    description: str | None
    res: dict[str, Any] = field(default_factory=dict)
    next_action: dict[str, Any] = field(default_factory=dict)

    @property
    def retired(self) -> bool:
        """True once `machineroom retire` has set `res.retired`."""
        return bool(self.res.get("retired"))


@dataclass(frozen=True)
class RunRow:
    """One row of `runs`: an apply, ad-hoc run, import, scan or facts collection."""

    id: int
    kind: str
    command: str
    user: str
    workstation: str
    pid: int
    started_at: str
    finished_at: str | None
    status: str
    playbook: str | None
    inventory: str | None
    git_commit: str | None
    args: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    trigger: str | None = None  # what started it when not a person: schedule:NAME, web:...

    def seconds(self) -> float | None:
        """How long the run took (its recorded duration, else finish - start); None while it
        runs or when the times cannot be read."""
        duration = self.summary.get("duration")
        if isinstance(duration, int | float):
            return float(duration)
        if not self.finished_at:
            return None
        try:
            start = datetime.fromisoformat(self.started_at.replace("Z", "+00:00"))
            end = datetime.fromisoformat(self.finished_at.replace("Z", "+00:00"))
        except ValueError:
            return None
        return max((end - start).total_seconds(), 0.0)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a Z, the same text as SQLite's
    `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`, so stored times sort and compare as text."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def from_unix(seconds: int) -> datetime:
    """A unix time (the unit of `samples.at`) as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def sql_where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """` WHERE a = ? AND b < ?` and its parameters from (clause, value) pairs, leaving out
    those whose value is None. Clauses are our own constants, never the caller's values."""
    used = [(clause, value) for clause, value in conditions if value is not None]
    if not used:
        return "", []
    return " WHERE " + " AND ".join(c for c, _ in used), [v for _, v in used]


# The line the connection leaves where it dropped output (connection/output.py `not_kept`).
_NOT_KEPT = re.compile(r"\[\.\.\. (\d+) bytes not kept \.\.\.\]")


def _cut_note(cut: str) -> str:
    """What stands for `cut`: its length, plus the bytes the connection already dropped."""
    dropped = sum(int(n) for n in _NOT_KEPT.findall(cut))
    if not dropped:
        return f"[... {len(cut)} characters cut ...]"
    return f"[... {len(_NOT_KEPT.sub('', cut).encode()) + dropped} bytes not kept ...]"


def cap_middle(text: str, limit: int) -> str:
    """Keep the head and the tail of long output (the command's start and its last errors)."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n{_cut_note(text[half:-half])}\n{text[-half:]}"


def cap_tail(text: str, limit: int) -> str:
    """Keep only the last `limit` characters, where the error usually is."""
    if len(text) <= limit:
        return text
    return f"{_cut_note(text[:-limit])}\n{text[-limit:]}"


def cap_lines_head(text: str, limit: int) -> str:
    """Keep the first whole lines that fit in `limit` characters (a program's first task
    calls), then a `[... N more]` line counting the lines left out."""
    if len(text) <= limit:
        return text
    lines = text.splitlines()
    kept: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > limit:
            break
        kept.append(line)
        size += len(line) + 1
    if not kept:  # one line longer than the limit: its start
        return f"{lines[0][: limit - 1]}…\n[... {len(lines) - 1} more]"
    return "\n".join([*kept, f"[... {len(lines) - len(kept)} more]"])


def _json_default(value: object) -> object:
    # Facts and args may hold sets, paths or datetimes; store their plain-text form.
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, datetime):
        return iso(value)
    return str(value)


def dump_json(value: Any) -> str:
    """JSON text for a column."""
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def load_object(text: str | None, what: str) -> dict[str, Any]:
    """Parse a JSON-object column; a hand-edited, broken value is a StateError naming it."""
    if text is None or text == "":
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise StateError(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise StateError(f"{what} is not a JSON object")
    return value


def process_start(pid: int) -> str | None:
    """The kernel's start time of process `pid` (Linux /proc), or None where unknown.

    Stored beside the pid so that a pid reused by an unrelated process is not taken for the run.
    """
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = data.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def process_alive(pid: int, started: str | None) -> bool:
    """Whether the process that wrote a run is still running on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux): the signal check is all we have
    if state in {"Z", "X"}:
        return False  # killed, not yet reaped by its parent
    current = process_start(pid)
    return started is None or current is None or current == started


def server_row(row: dict[str, Any]) -> ServerRow:
    where = f"server_room {row['id']!r}"
    return ServerRow(
        id=row["id"],
        host=row["host"],
        user=row["user"],
        pass_ref=row["pass"],
        port=int(row["port"]),
        description=row["description"],
        res=load_object(row["res"], f"{where} res"),
        next_action=load_object(row["next_action"], f"{where} next_action"),
    )


def run_row(row: dict[str, Any]) -> RunRow:
    return RunRow(
        id=int(row["id"]),
        kind=row["kind"],
        command=row["command"],
        user=row["user"],
        workstation=row["workstation"],
        pid=int(row["pid"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        status=row["status"],
        playbook=row["playbook"],
        inventory=row["inventory"],
        git_commit=row["git_commit"],
        args=load_object(row["args"], f"runs {row['id']} args"),
        summary=load_object(row["summary"], f"runs {row['id']} summary"),
        trigger=row.get("trigger"),
    )


def login_name() -> str:
    # getpass.getuser() raises where neither the environment nor the passwd file names us
    # (some containers); the uid still says who.
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"
