"""The JSON API under /api/: the dashboard's data and actions (see docs/api.md)."""

from __future__ import annotations

import shlex
import time
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request

from machineroom.errors import InputError, MachineroomError, StateError
from machineroom.state.tokens import TokenRow
from machineroom.web import data
from machineroom.web.actions import Action, run_with_timeout
from machineroom.web.auth import Principal, check_csrf, require, web_state
from machineroom.web.errors import ApiError, error_responses
from machineroom.web.hostkeys import offered_keys, trust_offered_key
from machineroom.web.models import (
    Action as ActionModel,
)
from machineroom.web.models import (
    Alert,
    ApplyRequest,
    AuditEntry,
    CollectRequest,
    HostCollect,
    HostDetail,
    HostSummary,
    Me,
    MetricSeries,
    Playbook,
    RunDetail,
    RunProgress,
    RunSummary,
    TokenCreate,
    TokenCreated,
    TokenInfo,
    TrustedKey,
    TrustKey,
)

MAX_ID = 2**63 - 1  # SQLite's INTEGER; a larger id cannot exist (and would not bind)
READ = error_responses(400, 401, 403)
Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="A run id.")]
HostId = Annotated[str, Path(min_length=1, max_length=200, description="A host id.")]
Limit = Annotated[int, Query(ge=1, le=1000, description="How many, newest first.")]
Before = Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only ids below this.")]

router = APIRouter(prefix="/api", tags=["api"], responses=READ)


@router.get("/me", response_model=Me, summary="The token of this request")
def me(principal: Viewer) -> dict[str, Any]:
    """Name and role of the token the request was made with."""
    return {"name": principal.name, "role": principal.role}


@router.get("/hosts", response_model=list[HostSummary], summary="The fleet's hosts")
def hosts(
    request: Request,
    principal: Viewer,
    q: Annotated[str, Query(max_length=200, description="Text in id/address/description.")] = "",
    group: Annotated[str, Query(max_length=200, description="Inventory group.")] = "",
    status: Literal["up", "down", "unknown", "retired", "failing", ""] = "",
) -> list[dict[str, Any]]:
    """Every host with its latest status, optionally filtered (`failing`: a failed last
    apply, down or open alerts)."""
    state = web_state(request)
    inventory, _ = state.inventory.get()
    every = data.host_summaries(state.store, inventory, state.repo)
    return data.filter_hosts(every, q, group, status)


@router.get(
    "/hosts/{host_id}",
    response_model=HostDetail,
    summary="One host",
    responses=error_responses(404),
)
def host(request: Request, principal: Viewer, host_id: HostId) -> dict[str, Any]:
    """A host's status, facts, installed stages, latest metrics and their names, containers,
    recent runs and alerts."""
    state = web_state(request)
    state.sweep_runs()
    inventory, _ = state.inventory.get()
    return data.host_detail(state.store, inventory, host_id, state.repo)


@router.get(
    "/hosts/{host_id}/metrics/{metric:path}",
    response_model=MetricSeries,
    summary="A host's metric over time",
    responses=error_responses(404),
)
def metric(
    request: Request,
    principal: Viewer,
    host_id: HostId,
    metric: Annotated[str, Path(min_length=1, max_length=300, description="e.g. load1")],
    since: Annotated[str, Query(max_length=20, description="Window: 1h, 24h, 7d, 30d...")] = "24h",
    points: Annotated[int, Query(ge=10, le=5000, description="Points at most.")] = 300,
) -> dict[str, Any]:
    """Samples of one metric in the window, averaged into at most about `points` buckets."""
    state = web_state(request)
    inventory, _ = state.inventory.get()
    seconds = data.parse_since(since)
    data.find_host(state.store, inventory, host_id)
    names = state.store.metrics.metric_names(host_id)
    if metric not in names:
        import difflib

        close = difflib.get_close_matches(metric, names, n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise ApiError(404, f"host {host_id!r} has no metric {metric!r}{hint}")
    return data.metric_window(state.store, host_id, metric, seconds, points)


@router.post(
    "/hosts/{host_id}/collect",
    response_model=HostCollect,
    summary="Collect one host now (synchronous)",
    responses=error_responses(404, 408, 409, 503),
)
def collect_host(
    request: Request,
    principal: Operator,
    host_id: HostId,
    timeout: Annotated[float, Query(ge=1, le=300, description="Seconds to wait.")] = 30,
) -> dict[str, Any]:
    """Collect HOST (a `collect` run) and wait for it: 408 when it takes longer than
    `timeout`, 409 when that host's collection or too many actions are running (it takes
    one of their slots while it waits), 503 when the host cannot be reached."""
    check_csrf(request, principal)
    state = web_state(request)
    inventory, error = state.inventory.get()
    data.find_host(state.store, inventory, host_id)
    if inventory is None or host_id not in inventory.hosts:
        raise ApiError(400, error or f"host {host_id!r} is not in the server's inventory")
    trigger = f"web:{principal.name}:{_nonce()}"
    started = time.monotonic()
    asked = state.actions.request(
        "collect", host_id, trigger=trigger, command_line=f"machineroom collect {host_id}"
    )
    with state.actions.claim("collect", host_id, principal.name):
        try:
            done = run_with_timeout(
                asked,
                state.repo,
                timeout,
                begun=lambda: state.store.dashboard.run_by_trigger(trigger) is not None,
            )
        except ApiError:
            state.sweep_runs(force=True)  # the killed child's run is 'interrupted' now
            raise
    run = state.store.dashboard.run_by_trigger(trigger)
    summary = data.find_host(state.store, inventory, host_id, state.repo)
    if done.returncode == 3 or summary["status"] == "down":
        raise ApiError(503, f"host {host_id!r} is unreachable: {summary['error'] or 'no answer'}")
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise ApiError(503, f"collect {host_id} failed: {' '.join(tail) or done.returncode}")
    return {
        "host": summary,
        "run_id": run.id if run else None,
        "seconds": round(time.monotonic() - started, 3),
    }


@router.get("/runs", response_model=list[RunSummary], summary="Run history")
def runs(
    request: Request,
    principal: Viewer,
    limit: Limit = 50,
    before: Before = None,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[str | None, Query(max_length=40)] = None,
) -> list[dict[str, Any]]:
    """Runs newest first, with their task-result counts."""
    web_state(request).sweep_runs()
    store = web_state(request).store
    return data.runs_with_counts(store, store.dashboard.run_page(limit, before, kind, status))


@router.get(
    "/runs/{run_id}", response_model=RunDetail, summary="One run", responses=error_responses(404)
)
def run(
    request: Request,
    principal: Viewer,
    run_id: RunId,
    host: Annotated[str | None, Query(max_length=200, description="Only this host.")] = None,
) -> dict[str, Any]:
    """A run with each host's task results (status, duration, message, diff, output)."""
    web_state(request).sweep_runs()
    store = web_state(request).store
    row = store.run(run_id)
    if row is None:
        raise ApiError(404, f"unknown run {run_id}")
    results = store.task_results(run_id, host)
    by_host: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_host.setdefault(result["host_id"], []).append(result)
    counts = store.dashboard.result_counts([run_id]).get(run_id, {})
    return {"run": data.run_dict(row, counts), "hosts": by_host}


@router.get(
    "/runs/{run_id}/results",
    response_model=RunProgress,
    summary="A run's status and the task results after a given one (live progress)",
    responses=error_responses(404),
)
def run_results(
    request: Request,
    principal: Viewer,
    run_id: RunId,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="Result id already seen.")] = 0,
) -> dict[str, Any]:
    """The run (status, counts) and its task results recorded after result `after`, oldest
    first: poll it to follow a run."""
    web_state(request).sweep_runs()
    store = web_state(request).store
    row = store.run(run_id)
    if row is None:
        raise ApiError(404, f"unknown run {run_id}")
    counts = store.dashboard.result_counts([run_id]).get(run_id, {})
    return {
        "run": data.run_dict(row, counts),
        "results": store.dashboard.task_results_after(run_id, after),
    }


@router.get("/alerts", response_model=list[Alert], summary="Alerts")
def alerts(
    request: Request,
    principal: Viewer,
    state: Literal["open", "resolved"] | None = None,
    host: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 200,
) -> list[dict[str, Any]]:
    """Alerts newest first, optionally only open or resolved ones, or one host's."""
    return web_state(request).store.dashboard.alert_page(state, host, limit)


@router.get("/audit", response_model=list[AuditEntry], summary="The command audit log")
def audit(
    request: Request,
    principal: Viewer,
    host: Annotated[str | None, Query(max_length=200)] = None,
    run: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    before: Before = None,
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    """Commands sent to hosts, newest first."""
    return web_state(request).store.dashboard.audit_page(host, run, before, limit)


@router.get("/playbooks", response_model=list[Playbook], summary="Playbooks that may be applied")
def playbooks(request: Request, principal: Viewer) -> list[dict[str, Any]]:
    """The playbooks of the inventory's repository (`playbooks/*.yml` and top-level ones)."""
    return [{"name": name} for name in data.list_playbooks(web_state(request).repo)]


def action_dict(request: Request, action: Action) -> dict[str, Any]:
    """An action as the API shows it, with the run it recorded once that exists."""
    web_state(request).sweep_runs()
    store = web_state(request).store
    run = (
        store.run(action.run_id)
        if action.run_id
        else store.dashboard.run_by_trigger(action.trigger)
    )
    if run is not None:
        action.run_id = run.id
    finished = run is not None and run.status != "running"
    results = (
        sum(store.dashboard.result_counts([run.id])[run.id].values()) if run is not None else 0
    )
    return {
        "id": action.id,
        "kind": action.kind,
        "target": action.target,
        "check": action.check,
        "by": action.by,
        "started_at": action.started_at,
        "finished_at": action.finished_at,
        "running": action.running,
        "exit_code": action.exit_code,
        "run_id": action.run_id,
        "run_status": run.status if run else None,
        "run_results": results,
        "output_tail": action.output_tail(),
        "host_keys": offered_keys(run, web_state(request).host_keys) if finished else [],
    }


@router.get("/actions", response_model=list[ActionModel], summary="Actions started here")
def actions(request: Request, principal: Viewer) -> list[dict[str, Any]]:
    """Collections and applies started from the dashboard since the server started."""
    return [action_dict(request, a) for a in web_state(request).actions.all()]


@router.get(
    "/actions/{action_id}",
    response_model=ActionModel,
    summary="One action",
    responses=error_responses(404),
)
def action(
    request: Request,
    principal: Viewer,
    action_id: Annotated[str, Path(max_length=40)],
) -> dict[str, Any]:
    """An action's state, its run id once the run started, and the end of its output."""
    found = web_state(request).actions.get(action_id)
    if found is None:
        raise ApiError(404, f"unknown action {action_id!r} (actions are forgotten on restart)")
    return action_dict(request, found)


@router.post(
    "/actions/{action_id}/trust-host-key",
    response_model=TrustedKey,
    summary="Trust a host key the action's run refused (admins)",
    responses=error_responses(404, 409, 422),
)
def post_trust_host_key(
    request: Request,
    principal: Admin,
    body: TrustKey,
    action_id: Annotated[str, Path(max_length=40)],
) -> dict[str, Any]:
    """Add to the project's known_hosts the key HOST presented in this action's run, if its
    SHA256 fingerprint is `fingerprint` (the one you checked): never a key fetched again.
    Only an unknown key (409 for a changed or revoked one). Audited."""
    check_csrf(request, principal)
    return trust_action_key(request, principal, action_id, body.host, body.fingerprint)


def trust_action_key(
    request: Request, principal: Principal, action_id: str, host: str, shown: str
) -> dict[str, Any]:
    """Trust the key `host` presented in the action's run (web/hostkeys.py)."""
    state = web_state(request)
    found = state.actions.get(action_id)
    if found is None:
        raise ApiError(404, f"unknown action {action_id!r} (actions are forgotten on restart)")
    action_dict(request, found)  # finds its run
    run = state.store.run(found.run_id) if found.run_id else None
    if run is not None and run.status == "running":
        raise ApiError(409, f"run {run.id} is still running; trust its keys once it ended")
    inventory, _ = state.inventory.get()
    return trust_offered_key(
        state.store, run, state.host_keys, host, shown, principal.name, inventory
    )


def start_collect(request: Request, principal: Principal, pattern: str) -> Action:
    """Validate the pattern against the inventory, then start a `collect` run."""
    state = web_state(request)
    _select(state, pattern, "pattern")
    run = state.actions.request("collect", pattern, command_line=f"machineroom collect {pattern}")
    return state.actions.start(pattern, run, principal.name)


def start_apply(
    request: Request, principal: Principal, playbook: str, check: bool, limit: str | None
) -> Action:
    """Validate the playbook name against the repo's list (no paths), then start an `apply`
    run with --diff (and --check unless `check` is false)."""
    state = web_state(request)
    known = data.list_playbooks(state.repo)
    if playbook not in known:
        import difflib

        close = difflib.get_close_matches(playbook, list(known), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        listed = f"; playbooks: {', '.join(known)}" if known and not close else ""
        raise ApiError(400, f"unknown playbook {playbook!r}{hint}{listed}")
    words = ["machineroom", "apply", "--diff"]
    if check:
        words.append("--check")
    if limit:
        _select(state, limit, "limit")
        words.append(f"--limit={limit}")
    words += ["--", playbook]
    run = state.actions.request(
        "apply",
        str(known[playbook]),
        check=check,
        diff=True,
        limit=limit or None,
        command_line=" ".join(shlex.quote(w) for w in words),
    )
    return state.actions.start(playbook, run, principal.name)


def _select(state: Any, pattern: str, what: str) -> None:
    inventory, error = state.inventory.get()
    if inventory is None:
        raise ApiError(400, error or "the server was started without an inventory (-i)")
    from machineroom.inventory import select_hosts

    try:
        select_hosts(inventory, pattern)
    except InputError as exc:
        raise ApiError(400, f"{what}: {exc}") from None


@router.post(
    "/actions/collect",
    response_model=ActionModel,
    status_code=202,
    summary="Start a collection",
    responses=error_responses(409),
)
def post_collect(
    request: Request, principal: Operator, body: CollectRequest | None = None
) -> dict[str, Any]:
    """Start `machineroom collect PATTERN`; follow it with GET /api/actions/{id}."""
    check_csrf(request, principal)
    return action_dict(
        request, start_collect(request, principal, (body or CollectRequest(pattern="all")).pattern)
    )


@router.post(
    "/actions/apply",
    response_model=ActionModel,
    status_code=202,
    summary="Start an apply (check mode by default)",
    responses=error_responses(409),
)
def post_apply(request: Request, principal: Operator, body: ApplyRequest) -> dict[str, Any]:
    """Start `machineroom apply PLAYBOOK --check --diff` (no --check when `check` is
    false); at most one apply of a playbook at a time (409)."""
    check_csrf(request, principal)
    found = start_apply(request, principal, body.playbook, body.check, body.limit)
    return action_dict(request, found)


def token_dict(row: TokenRow) -> dict[str, Any]:
    """A token's row as the API shows it."""
    return {
        "name": row.name,
        "role": row.role,
        "state": row.state(),
        "created_at": row.created_at,
        "created_by": row.created_by,
        "last_used_at": row.last_used_at,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
    }


@router.get("/tokens", response_model=list[TokenInfo], summary="Access tokens (admin)")
def tokens(request: Request, principal: Admin) -> list[dict[str, Any]]:
    """Every token's name, role and dates (never the token)."""
    return [token_dict(row) for row in web_state(request).store.tokens.all()]


@router.post(
    "/tokens",
    response_model=TokenCreated,
    status_code=201,
    summary="Create a token (admin)",
    responses=error_responses(409),
)
def create_token(
    request: Request, principal: Admin, body: Annotated[TokenCreate, Body()]
) -> dict[str, Any]:
    """Create a token; the response holds it this once."""
    check_csrf(request, principal)
    lifetime = None
    if body.expires:
        from machineroom.fleet.durations import parse_duration

        try:
            seconds = parse_duration(body.expires, "expires")
        except MachineroomError as exc:
            raise ApiError(400, str(exc)) from None
        if not 0 < seconds <= 10 * 366 * 86400:
            raise ApiError(400, "expires: a token lives between 1 second and 10 years")
        lifetime = timedelta(seconds=seconds)
    try:
        token, row = web_state(request).store.tokens.create_token(
            body.name, body.role, expires_in=lifetime, created_by=f"token:{principal.name}"
        )
    except StateError as exc:
        raise ApiError(409, str(exc)) from None
    return {"token": token, "info": token_dict(row)}


@router.delete(
    "/tokens/{name}",
    response_model=TokenInfo,
    summary="Revoke a token (admin)",
    responses=error_responses(404),
)
def revoke_token(
    request: Request, principal: Admin, name: Annotated[str, Path(max_length=64)]
) -> dict[str, Any]:
    """Revoke a token at once (its browser sessions end too)."""
    check_csrf(request, principal)
    try:
        return token_dict(web_state(request).store.tokens.revoke_token(name))
    except StateError as exc:
        raise ApiError(404, str(exc)) from None


def _nonce() -> str:
    import secrets

    return secrets.token_hex(6)
