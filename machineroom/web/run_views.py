"""What the run pages show: the runs list (duration, check mode, filters), a run as a task x
host matrix with identical hosts folded into one column, the changes across runs, and the
audit log's rows. Plain dicts for the templates; no FastAPI here, so the logic is testable
without a server.

Counts are the CLI recap's: `ok` includes the changed tasks and the ignored failures, as
Ansible's recap does (the run's recorded summary when there is one, else the task rows counted
the same way).

Hosts fold into one column only when every result is the same: status, message, whether the
failure was ignored, and the stdout, stderr and diff (compared by a hash the database computes:
the page reads the whole output only of the results it shows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machineroom.state.records import RunRow
from machineroom.web.data import natural_key, run_dict

if TYPE_CHECKING:
    from machineroom.state import StateStore

RUN_STATUSES = ("running", "ok", "failed", "unreachable", "interrupted", "error")
RUN_KINDS = (
    "apply",
    "collect",
    "run",
    "facts",
    "scan-docker",
    "scanports",
    "add-cert",
    "collector-install",
    "import",
    "forget",
)
RECAP_WORDS = ("ok", "changed", "failed", "unreachable", "skipped")
# The run page's filters: tasks with at least one result of these statuses.
ONLY = ("changed", "failed", "unreachable")
# Letters of the matrix cells (the legend under the matrix spells them out).
CELL_TEXT = {
    "ok": "ok",
    "changed": "chg",
    "failed": "FAIL",
    "unreachable": "unr",
    "skipped": "skip",
    "ignored": "ign",
}
MAX_COLUMNS = 60  # host columns of the matrix (folded); more are left to the host filter
MAX_IGNORED = 20  # ignored failures listed under the matrix
DETAIL_LINES = 20  # lines of stdout/stderr shown under the matrix (the result page has all)
SINCE = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
PAGE = 50  # runs a page
CHANGES_PAGE = 100  # changed results a page
AUDIT_ACTIONS = 8  # module calls shown on an audit row (a program's tasks); the rest folded


# -- the runs list -------------------------------------------------------------------------


def format_seconds(seconds: float | None) -> str:
    """`0.42s`, `12.3s`, `3m05s`, `1h02m03s` (the CLI recap's format); '' for None."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def is_check(run: RunRow) -> bool:
    """Whether the run was a check-mode (dry) run."""
    return bool(run.summary.get("check") or run.args.get("check"))


def host_count(run: RunRow) -> int:
    """How many hosts the run's summary names (an apply's recap; a collection's count)."""
    hosts = run.summary.get("hosts")
    if isinstance(hosts, dict):
        return len(hosts)
    return hosts if isinstance(hosts, int) and not isinstance(hosts, bool) else 0


def recap_counts(run: RunRow, raw: dict[str, int] | None = None) -> dict[str, int]:
    """The run's counts as the CLI recap prints them (ok includes changed): its recorded
    totals, else `raw` (task results by status) counted the same way."""
    totals = run.summary.get("totals")
    if isinstance(totals, dict) and any(isinstance(v, int) and v for v in totals.values()):
        return {word: _int(totals.get(word)) for word in RECAP_WORDS}
    raw = raw or {}
    counts = {word: int(raw.get(word, 0)) for word in RECAP_WORDS}
    ignored = min(int(raw.get("ignored", 0)), counts["failed"])  # failed, but ok to the recap
    counts["ok"] += counts["changed"] + ignored
    counts["failed"] -= ignored
    return counts


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def playbook_name(path: str | None, repo: Path | None) -> str:
    """A recorded playbook path as the repo names it (`playbooks/site.yml`)."""
    if not path:
        return ""
    if not Path(path).is_absolute():
        return path  # recorded as given, relative to where it ran
    if repo is not None:
        try:
            return Path(path).relative_to(repo.resolve()).as_posix()
        except ValueError:
            pass
    return Path(path).name


@dataclass(frozen=True)
class RunFilters:
    """The runs list's filters, from the query string (unknown values mean no filter)."""

    status: str = ""
    kind: str = ""
    host: str = ""
    playbook: str = ""

    def clean(self) -> RunFilters:
        """Known values only."""
        return RunFilters(
            status=self.status if self.status in RUN_STATUSES else "",
            kind=self.kind if self.kind in RUN_KINDS else "",
            host=self.host.strip(),
            playbook=self.playbook.strip(),
        )

    def query(self) -> str:
        """The filters as a query string (for the next-page link)."""
        from urllib.parse import urlencode

        return urlencode({k: v for k, v in self.__dict__.items() if v})


def runs_listing(
    store: StateStore, filters: RunFilters, before: int | None, repo: Path | None
) -> dict[str, Any]:
    """The runs page: a page of runs matching `filters`, each with its duration, check mode
    and recap counts, and the choices of the filter form."""
    rows = store.dashboard.run_search(
        PAGE,
        before,
        kind=filters.kind or None,
        status=filters.status or None,
        host_id=filters.host or None,
        playbook=filters.playbook or None,
    )
    raw = store.dashboard.result_counts([r.id for r in rows])
    runs = []
    for row in rows:
        item = run_dict(row, recap_counts(row, raw.get(row.id)))
        item["duration"] = format_seconds(row.seconds())
        item["check"] = is_check(row)
        item["playbook_name"] = playbook_name(row.playbook, repo)
        item["hosts"] = host_count(row)
        runs.append(item)
    playbooks = [(p, playbook_name(p, repo)) for p in store.dashboard.run_playbooks()]
    if filters.playbook and filters.playbook not in {p for p, _ in playbooks}:
        playbooks.append((filters.playbook, playbook_name(filters.playbook, repo)))
    return {
        "runs": runs,
        "next_before": rows[-1].id if len(rows) == PAGE else None,
        "filters": filters,
        "statuses": RUN_STATUSES,
        "kinds": RUN_KINDS,
        "playbooks": playbooks,
    }


# -- a run as a matrix ----------------------------------------------------------------------


@dataclass
class Column:
    """Hosts whose every result is the same (status, message, output, diff): one column."""

    hosts: list[str]
    cells: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """`web1`, `web1, web2, web3`, or `12 hosts`."""
        if len(self.hosts) <= 3:
            return ", ".join(self.hosts)
        return f"{len(self.hosts)} hosts"


@dataclass
class Matrix:
    """Rows (tasks in the order they ran) by columns (folded hosts)."""

    tasks: list[dict[str, Any]]
    columns: list[Column]
    hidden_columns: int = 0
    hidden_hosts: int = 0
    every_column: list[Column] = field(default_factory=list)  # the hidden ones too

    @property
    def folded(self) -> bool:
        """Whether any column stands for several hosts."""
        return any(len(c.hosts) > 1 for c in self.columns)


def _task_key(result: dict[str, Any], seen: dict[tuple[str, str], int]) -> tuple[str, str, int]:
    """A task's identity across hosts: name, location, and which time on this host it ran
    (a handler notified twice, a task of a role included twice)."""
    pair = (result["task"], result["location"] or "")
    seen[pair] = seen.get(pair, 0) + 1
    return (pair[0], pair[1], seen[pair])


def _task_order(by_host: dict[str, list[tuple[tuple[str, str, int], dict[str, Any]]]]) -> list[Any]:
    """Every task once, in the order hosts ran them: a task first seen on a later host goes
    right after the task that host ran before it."""
    order: list[tuple[str, str, int]] = []
    known: set[tuple[str, str, int]] = set()
    for keyed in by_host.values():
        previous: tuple[str, str, int] | None = None
        for key, _ in keyed:
            if key not in known:
                order.insert(order.index(previous) + 1 if previous is not None else 0, key)
                known.add(key)
            previous = key
    return order


def look(result: dict[str, Any]) -> str:
    """How a result shows: its status, or `ignored` for a failure the task ignored."""
    return "ignored" if result["status"] == "failed" and result.get("ignored") else result["status"]


def outcome(result: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two results of a task the same: status, ignored, message, and the stdout,
    stderr and diff (their `digest`, or the texts themselves when there is none)."""
    output = result.get("digest")
    if output is None:
        output = (result.get("stdout", ""), result.get("stderr", ""), result.get("diff", ""))
    return (result["status"], bool(result.get("ignored")), result["message"], output)


def _signature(keyed: list[tuple[tuple[str, str, int], dict[str, Any]]]) -> tuple[Any, ...]:
    return tuple((key, outcome(r)) for key, r in keyed)


def _column_rank(column: Column) -> tuple[int, list[Any]]:
    looks = {look(result) for result in column.cells.values()}
    rank = 0 if looks & {"failed", "unreachable"} else 1 if "changed" in looks else 2
    return rank, natural_key(column.hosts[0])


def build_matrix(results: list[dict[str, Any]], only: tuple[str, ...] = ()) -> Matrix:
    """The run's results as a task x host matrix; hosts with the same result (status,
    message, output, diff) for every task fold into one column, columns with a failure first
    (an ignored one is no failure). `only`: tasks (and columns) with at least one result of
    these statuses."""
    by_host: dict[str, list[tuple[tuple[str, str, int], dict[str, Any]]]] = {}
    seen: dict[str, dict[tuple[str, str], int]] = {}
    for result in results:  # in id order: the order they finished
        host = result["host_id"]
        key = _task_key(result, seen.setdefault(host, {}))
        by_host.setdefault(host, []).append((key, {**result, "look": look(result)}))
    order = _task_order(by_host)
    groups: dict[tuple[Any, ...], Column] = {}
    for host in sorted(by_host, key=natural_key):
        keyed = by_host[host]
        column = groups.get(_signature(keyed))
        if column is None:
            column = groups[_signature(keyed)] = Column([host], dict(keyed))
        else:
            column.hosts.append(host)
    # what is broken first: hosts where a task failed or that went unreachable, then hosts
    # with changes, then the rest (so a column cut by MAX_COLUMNS is never a failing one)
    columns = sorted(groups.values(), key=_column_rank)
    if only:
        order = [k for k in order if any(c.cells.get(k, {}).get("look") in only for c in columns)]
        columns = [c for c in columns if any(c.cells.get(k, {}).get("look") in only for k in order)]
    hidden = columns[MAX_COLUMNS:]
    tasks = [{"key": key, "task": key[0], "location": key[1], "nth": key[2]} for key in order]
    return Matrix(
        tasks,
        columns[:MAX_COLUMNS],
        len(hidden),
        sum(len(c.hosts) for c in hidden),
        columns,
    )


def _tail(text: str, lines: int = DETAIL_LINES) -> str:
    kept = text.rstrip("\n").splitlines()
    if len(kept) <= lines:
        return "\n".join(kept)
    return "\n".join([f"[... {len(kept) - lines} lines before ...]", *kept[-lines:]])


def _grouped(matrix: Matrix, looks: tuple[str, ...]) -> list[dict[str, Any]]:
    """Results of these looks, a group per task and outcome, over every column (those past
    MAX_COLUMNS too): columns whose result was the same share one group."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for position, task in enumerate(matrix.tasks):
        for column in matrix.every_column or matrix.columns:
            result = column.cells.get(task["key"])
            if result is None or result["look"] not in looks:
                continue
            same = (task["key"], outcome(result))
            if same in groups:
                group = groups[same]
                group["hosts"] = sorted(group["hosts"] + column.hosts, key=natural_key)
                group["also"].append(result["id"])  # its cell links here too
                continue
            groups[same] = {
                "task": task,
                "hosts": list(column.hosts),
                "result": result,
                "order": (result["status"] == "changed", position),
                "also": [],
            }
    return sorted(groups.values(), key=lambda group: group["order"])


def details(matrix: Matrix, full: dict[int, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """What failed (first) and what changed, a block per task and outcome, from every column
    (a failure past the columns shown too): the result's message, the tails of its stderr
    and stdout, and its diff, from `full` (results with their output, by id) or the result
    itself; columns whose result was the same share one block. An ignored failure is not
    one of them (see `ignored`)."""
    blocks = _grouped(matrix, ("failed", "unreachable", "changed"))
    for block in blocks:
        result = {**block["result"], **(full or {}).get(block["result"]["id"], {})}
        block["result"] = result
        block["stderr"] = _tail(result.get("stderr", ""))
        block["stdout"] = _tail(result.get("stdout", ""))
    return blocks


def ignored(matrix: Matrix) -> list[dict[str, Any]]:
    """Failures the tasks ignored (`ignore_errors`), a line per task and outcome."""
    return _grouped(matrix, ("ignored",))[:MAX_IGNORED]


def run_view(
    store: StateStore, run: RunRow, only: tuple[str, ...], repo: Path | None, host: str = ""
) -> dict[str, Any]:
    """Everything the run page shows of a run; `host`: only hosts whose id contains it."""
    every = store.dashboard.result_cells(run.id)
    wanted = host.strip().lower()
    results = [r for r in every if wanted in r["host_id"].lower()] if wanted else every
    raw = store.dashboard.result_counts([run.id]).get(run.id, {})
    matrix = build_matrix(results, only)
    blocks = _grouped(matrix, ("failed", "unreachable", "changed"))
    full = store.dashboard.results_in_full(run.id, [b["result"]["id"] for b in blocks])
    return {
        "run": run_dict(run, recap_counts(run, raw)),
        "duration": format_seconds(run.seconds()),
        "check": is_check(run),
        "playbook_name": playbook_name(run.playbook, repo),
        "matrix": matrix,
        "details": details(matrix, full),
        "ignored": ignored(matrix),
        "only": only,
        "host": host.strip(),
        "choices": ONLY,
        "cell_text": CELL_TEXT,
        "host_count": len({r["host_id"] for r in every}),
        "shown_hosts": len({r["host_id"] for r in results}),
        "by_host": sorted(by_host(results).items(), key=lambda item: natural_key(item[0])),
        "last_result": max((r["id"] for r in results), default=0),
    }


def by_host(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Results grouped by host (the live list of a running run)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        grouped.setdefault(result["host_id"], []).append(result)
    return grouped


def result_view(store: StateStore, run: RunRow, result_id: int) -> dict[str, Any] | None:
    """One task result of the run, and the other hosts whose result was the same (status,
    message, output and diff alike)."""
    found = store.dashboard.results_in_full(run.id, [result_id]).get(result_id)
    if found is None:
        return None
    cells = store.dashboard.result_cells(run.id)
    mine = next(r for r in cells if r["id"] == result_id)
    same = sorted(
        (
            r["host_id"]
            for r in cells
            if r["id"] != result_id
            and (r["task"], r["location"], outcome(r))
            == (mine["task"], mine["location"], outcome(mine))
        ),
        key=natural_key,
    )
    return {"run": run_dict(run), "result": found, "same": same, "check": is_check(run)}


# -- changes across runs --------------------------------------------------------------------


def since_time(window: str) -> str | None:
    """The ISO time `window` (1h, 24h, 7d, 30d) ago; None for any other value (all time)."""
    seconds = SINCE.get(window)
    if seconds is None:
        return None
    moment = datetime.now(UTC) - timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def changes_listing(
    store: StateStore,
    host: str,
    since: str,
    before: int | None,
    repo: Path | None,
    mode: str = "",
) -> dict[str, Any]:
    """The changes page: changed results newest first, those of one run with the same task,
    message and diff folded into one entry naming their hosts; `mode` `applied` leaves out
    check-mode runs (what would have changed), `check` keeps only them."""
    check = {"applied": False, "check": True}.get(mode)
    rows = store.dashboard.changes(
        host or None, since_time(since), before, CHANGES_PAGE, check=check
    )
    entries: list[dict[str, Any]] = []
    index: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (row["run_id"], row["task"], row["location"], row["message"], row["diff"])
        entry = index.get(key)
        if entry is None:
            entry = index[key] = {
                "row": row,
                "hosts": [],
                "check": bool(row["run_check"]),
                "playbook_name": playbook_name(row["run_playbook"], repo),
            }
            entries.append(entry)
        entry["hosts"].append(row["host_id"])
    for entry in entries:
        entry["hosts"].sort(key=natural_key)
    return {
        "entries": entries,
        "host": host,
        "since": since if since in SINCE else "",
        "mode": mode if check is not None else "",
        "windows": list(SINCE),
        "next_before": rows[-1]["id"] if len(rows) == CHANGES_PAGE else None,
    }


# -- the audit log ---------------------------------------------------------------------------


def audit_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Audit-log rows with what a person recognises first: the module calls as the tasks
    wrote them (`command: systemctl restart nginx`; several when the tasks went to the host
    as one program), else the command's first line."""
    shown = []
    for row in rows:
        actions = str(row.get("action") or "").splitlines()
        command = str(row["command"])
        lines = command.strip("\n").splitlines() or [""]
        shown.append(
            {
                **row,
                "actions": actions[:AUDIT_ACTIONS] or [lines[0]],
                "more_actions": max(len(actions) - AUDIT_ACTIONS, 0),
                "from_task": bool(actions),
                "command_lines": len(lines),
            }
        )
    return shown
