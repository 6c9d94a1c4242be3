"""The dashboard's HTML pages: server-rendered Jinja2, charts as inline SVG, a little
JavaScript (static/live.js) only to follow a running action or run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from machineroom.masking import add_secret
from machineroom.state.records import utc_now
from machineroom.web import api, data, fleet_view, run_views
from machineroom.web.app import HERE
from machineroom.web.auth import (
    COOKIE,
    SESSION_SECONDS,
    Principal,
    WrongToken,
    authenticate,
    check_csrf,
    check_same_origin,
    require,
    usable_token,
    web_state,
)
from machineroom.web.charts import human, render_chart
from machineroom.web.errors import ApiError
from machineroom.web.guard import MAX_FORM_BODY, too_large
from machineroom.web.throttle import client_key

templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)
Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
RESOLVED_SHOWN = 500  # resolved alerts on /alerts, newest first (open ones: all)


def _ago(text: str | None) -> str:
    """'3 min ago' for an ISO time; '' for None."""
    if not text:
        return ""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    seconds = int((utc_now() - moment).total_seconds())
    if seconds < 0:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _when(text: str | None) -> str:
    """An ISO time shortened to 'YYYY-MM-DD HH:MM:SS' (UTC)."""
    return (text or "")[:19].replace("T", " ")


def _unix(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M")


templates.env.filters.update(
    ago=_ago, when=_when, human=human, unix=_unix, forget_command=fleet_view.forget_command
)


async def form_data(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST (first value of each field). The guard has already
    refused a larger body (413) while it streamed in; the check here is a second lock."""
    body = await request.body()
    if len(body) > MAX_FORM_BODY:
        raise ApiError(413, too_large(MAX_FORM_BODY))
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "the form is not valid UTF-8 urlencoded data") from None
    return {name: values[0] for name, values in fields.items()}


Form = Annotated[dict[str, str], Depends(form_data)]


def page(request: Request, name: str, principal: Principal | None, **context: Any) -> Response:
    """Render a template with the things every page uses."""
    return templates.TemplateResponse(
        request,
        name,
        {"me": principal, "csrf": principal.csrf if principal else "", **context},
    )


def render_error(request: Request, status: int, code: str, message: str) -> Response:
    """The HTML error page (used by errors.error_response for pages): inside the layout,
    with the navigation when the guard found who is asking."""
    from machineroom.web.auth import PRINCIPAL

    found = request.scope.get("state", {}).get(PRINCIPAL)
    me = found if isinstance(found, Principal) else None
    response = templates.TemplateResponse(
        request,
        "error.html",
        {
            "me": me,
            "csrf": me.csrf if me else "",
            "status": status,
            "code": code,
            "message": message,
        },
        status_code=status,
    )
    return response


# -- login ----------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    # Only paths of this site: no scheme, no //host (an open redirect would leak nothing, but
    # would let a link send users elsewhere after logging in).
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: Annotated[str, Query(max_length=500)] = "/") -> Response:
    """The login page: paste a token."""
    return page(request, "login.html", None, next=_safe_next(next), error="")


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, form: Form) -> Response:
    """Check the token, start a session, set its cookie (HttpOnly, SameSite=Strict). A wrong
    token counts against the address (the guard answers 429 once it has sent too many)."""
    check_same_origin(request)
    state = web_state(request)
    target = _safe_next(form.get("next"))
    token = form.get("token", "").strip()
    try:
        if not token:
            raise ApiError(401, "paste an access token")
        row = usable_token(state, state.store.tokens.find_token(token))
        add_secret(token)  # masked in whatever the server logs or stores
    except ApiError as exc:
        if isinstance(exc, WrongToken):
            state.throttle.failed(client_key(request.scope))
        response = page(request, "login.html", None, next=target, error=exc.message)
        response.status_code = 401
        return response
    session_id, _ = state.sessions.create(row.id)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=state.config.cookie_secure,
        path="/",
    )
    return response


@router.post("/logout")
def logout(
    request: Request, form: Form, principal: Annotated[Principal, Depends(authenticate)]
) -> Response:
    """End the session."""
    check_csrf(request, principal, form.get("csrf"))
    web_state(request).sessions.drop(principal.session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- pages ----------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def overview(
    request: Request,
    principal: Viewer,
    q: Annotated[str, Query(max_length=200)] = "",
    group: Annotated[str, Query(max_length=200)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    """The fleet, worst hosts first: by group, with status, last apply and what is pending,
    load, memory, disk, containers, stages; hosts the inventory does not list apart."""
    from machineroom.web import fleet_view

    state = web_state(request)
    state.sweep_runs()
    inventory, error = state.inventory.get()
    every = data.host_summaries(state.store, inventory, state.repo)
    shown = data.filter_hosts(every, q, group, status)
    totals = {s: sum(1 for h in every if h["status"] == s) for s in ("up", "down", "unknown")}
    totals["failing"] = sum(1 for h in every if h["rank"] == fleet_view.BROKEN)
    groups = sorted({g for h in every for g in h["groups"]})
    return page(
        request,
        "overview.html",
        principal,
        sections=fleet_view.sections(shown, inventory is not None),
        total=len(every),
        shown=len(shown),
        totals=totals,
        groups=groups,
        q=q,
        group=group,
        status=status,
        inventory_error=error,
        alerts=sum(h["open_alerts"] for h in every),
    )


@router.get("/hosts/{host_id}", response_class=HTMLResponse)
def host_page(
    request: Request,
    principal: Viewer,
    host_id: str,
    window: Annotated[str, Query(max_length=10)] = "24h",
    metric: Annotated[list[str] | None, Query(max_length=300)] = None,
) -> Response:
    """A host: status, charts over the chosen window, containers, stages, facts, runs, alerts."""
    from machineroom.web import fleet_view

    state = web_state(request)
    inventory, _ = state.inventory.get()
    state.sweep_runs()
    detail = data.host_detail(state.store, inventory, host_id, state.repo)
    if window not in data.WINDOWS:
        window = "24h"
    seconds = data.WINDOWS[window]
    names = set(detail["metric_names"])
    wanted = [(m, title, unit) for m, title, unit in data.CHART_METRICS if m in names]
    for extra in metric or []:
        if extra in names and extra not in {m for m, _, _ in wanted}:
            unit = "%" if "pct" in extra else "B" if "bytes" in extra else ""
            wanted.append((extra, extra, unit))
    charts = []
    for name, title, unit in wanted:
        series = data.metric_window(state.store, host_id, name, seconds)
        svg = render_chart(
            series["points"], series["since"], series["until"], series["step"], title, unit, name
        )
        charts.append({"metric": name, "title": title, "svg": svg, "unit": unit})
    return page(
        request,
        "host.html",
        principal,
        host=detail,
        facts=fleet_view.facts_view(detail["facts"] or {}),
        res=fleet_view.facts_view(detail["res"]),
        charts=charts,
        window=window,
        windows=list(data.WINDOWS),
        other_metrics=sorted(names - {c["metric"] for c in charts}),
    )


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request,
    principal: Viewer,
    before: api.Before = None,
    kind: Annotated[str, Query(max_length=40)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
    host: Annotated[str, Query(max_length=200)] = "",
    playbook: Annotated[str, Query(max_length=1000)] = "",
) -> Response:
    """The run history, 50 a page, filtered by status, kind, host and playbook."""
    state = web_state(request)
    state.sweep_runs()
    filters = run_views.RunFilters(status, kind, host, playbook).clean()
    listing = run_views.runs_listing(state.store, filters, before, state.repo)
    return page(request, "runs.html", principal, **listing)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request,
    principal: Viewer,
    run_id: api.RunId,
    only: Annotated[list[str] | None, Query(max_length=20)] = None,
    host: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """One run: who, what, when, the recap, and a task x host matrix (identical hosts in
    one column) with what failed or changed below it; `only` keeps tasks of those statuses,
    `host` the hosts whose id contains it."""
    state = web_state(request)
    state.sweep_runs()
    row = state.store.run(run_id)
    if row is None:
        raise ApiError(404, f"unknown run {run_id}")
    wanted = tuple(word for word in run_views.ONLY if word in (only or []))
    return page(
        request,
        "run.html",
        principal,
        **run_views.run_view(state.store, row, wanted, state.repo, host),
    )


@router.get("/runs/{run_id}/results/{result_id}", response_class=HTMLResponse)
def result_page(
    request: Request, principal: Viewer, run_id: api.RunId, result_id: api.RunId
) -> Response:
    """One task result in full: message, stdout, stderr, diff, and the hosts that had the
    same result."""
    state = web_state(request)
    row = state.store.run(run_id)
    found = run_views.result_view(state.store, row, result_id) if row is not None else None
    if found is None:
        raise ApiError(404, f"unknown result {result_id} of run {run_id}")
    return page(request, "result.html", principal, **found)


@router.get("/changes", response_class=HTMLResponse)
def changes_page(
    request: Request,
    principal: Viewer,
    host: Annotated[str, Query(max_length=200)] = "",
    since: Annotated[str, Query(max_length=10)] = "",
    mode: Annotated[str, Query(max_length=10)] = "",
    before: api.Before = None,
) -> Response:
    """What changed on which hosts in which runs, newest first, with the diffs."""
    state = web_state(request)
    listing = run_views.changes_listing(state.store, host.strip(), since, before, state.repo, mode)
    return page(request, "changes.html", principal, **listing)


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    principal: Viewer,
    state: Annotated[str, Query(max_length=10)] = "",
) -> Response:
    """Alerts: every open one (however old), then the newest RESOLVED_SHOWN resolved ones."""
    wanted = state if state in {"open", "resolved"} else None
    rows = web_state(request).store.dashboard.alert_board(wanted, RESOLVED_SHOWN)
    return page(request, "alerts.html", principal, alerts=rows, state=state)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    principal: Viewer,
    host: Annotated[str | None, Query(max_length=200)] = None,
    run: Annotated[int | None, Query(ge=1, le=api.MAX_ID)] = None,
    before: api.Before = None,
) -> Response:
    """The command audit log, 100 a page."""
    rows = web_state(request).store.dashboard.audit_page(host or None, run, before, 100)
    return page(
        request,
        "audit.html",
        principal,
        entries=run_views.audit_rows(rows),
        host=host or "",
        run=run,
        next_before=rows[-1]["id"] if len(rows) == 100 else None,
    )


@router.get("/actions", response_class=HTMLResponse)
def actions_page(request: Request, principal: Viewer) -> Response:
    """Start a collection or an apply (operators), and the actions started so far."""
    state = web_state(request)
    return page(
        request,
        "actions.html",
        principal,
        playbooks=list(data.list_playbooks(state.repo)),
        running=state.actions.running_playbooks(),
        actions=[api.action_dict(request, a) for a in state.actions.all()],
        can_start=principal.may("operator"),
    )


@router.post("/actions/collect")
def collect_form(request: Request, principal: Operator, form: Form) -> Response:
    """Start a collection from the form, then follow it."""
    check_csrf(request, principal, form.get("csrf"))
    action = api.start_collect(request, principal, form.get("pattern", "").strip() or "all")
    return RedirectResponse(f"/actions/{action.id}", status_code=303)


@router.post("/actions/apply")
def apply_form(request: Request, principal: Operator, form: Form) -> Response:
    """Start an apply from the form (check mode unless the box was unticked)."""
    check_csrf(request, principal, form.get("csrf"))
    check = form.get("check") == "on"
    limit = form.get("limit", "").strip() or None
    action = api.start_apply(request, principal, form.get("playbook", ""), check, limit)
    return RedirectResponse(f"/actions/{action.id}", status_code=303)


@router.get("/actions/{action_id}", response_class=HTMLResponse)
def action_page(request: Request, principal: Viewer, action_id: str) -> Response:
    """An action being followed: its run's task results appear as they finish."""
    found = api.action(request, principal, action_id[:40])
    return page(request, "action.html", principal, action=found)
