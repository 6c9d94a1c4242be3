"""The API's request and response bodies (pydantic), so /openapi.json describes them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

HostState = Literal["up", "down", "unknown", "retired"]
Role = Literal["viewer", "operator", "admin"]


class Me(BaseModel):
    """The token a request was made with."""

    name: str
    role: Role


class Container(BaseModel):
    """A docker container as the last collection saw it."""

    model_config = ConfigDict(extra="allow")
    name: str = ""
    image: str = ""
    state: str = ""
    status: str = ""


class LastApply(BaseModel):
    """A host's part in its newest apply (check-mode runs left out)."""

    status: str = Field(
        description="How it ended on this host: running, ok, changed, failed, unreachable, "
        "interrupted."
    )
    run_id: int
    run_status: str
    at: str = Field(description="When the run finished (started, while it runs).")
    playbook: str
    changed: int
    failed: int


class HostSummary(BaseModel):
    """One host's latest status, as the fleet overview shows it."""

    id: str
    address: str
    description: str = ""
    groups: list[str]
    status: HostState
    last_seen: str | None
    last_attempt: str | None
    failures: int
    error: str
    load1: float | None
    cpu_used_pct: float | None
    mem_used_pct: float | None
    disk_used_pct_max: float | None
    containers_running: int | None
    containers_total: int | None
    stages: list[str]
    next_action: dict[str, Any]
    open_alerts: int
    in_inventory: bool = Field(
        True,
        description="False: only the state database knows the host, the served inventory "
        "does not list it (`machineroom forget ID` drops it).",
    )
    last_apply: LastApply | None = None
    pending: str = Field("", description="What `next_action` says, in words.")
    pending_command: str = Field("", description="The `apply --resume` that continues it.")
    rank: int = Field(
        2,
        description="The overview's order: 0 broken (last apply failed or unreachable, down, "
        "open alerts), 1 needs attention (apply interrupted or pending), 2 fine, 3 retired.",
    )
    problems: list[str] = Field(default_factory=list, description="What is wrong, in words.")


class RunSummary(BaseModel):
    """A run: an apply, a collection, an ad-hoc command, ..."""

    id: int
    kind: str
    command: str
    status: str
    user: str
    workstation: str
    started_at: str
    finished_at: str | None
    playbook: str | None
    trigger: str | None
    args: dict[str, Any]
    summary: dict[str, Any]
    counts: dict[str, int] = Field(
        default_factory=dict, description="Task results per status (ok, changed, failed, ...)."
    )


class Alert(BaseModel):
    """An alert opened (and perhaps resolved) by an alert rule."""

    model_config = ConfigDict(extra="allow")
    id: int
    rule: str
    host_id: str
    subject: str
    severity: str
    state: str
    opened_at: str
    resolved_at: str | None
    value: float | None
    message: str


class HostDetail(HostSummary):
    """Everything the host page shows."""

    facts: dict[str, Any]
    facts_at: str | None
    res: dict[str, Any]
    metrics: dict[str, float]
    metric_names: list[str]
    containers: list[Container]
    recent_runs: list[RunSummary]
    alerts: list[Alert]


class MetricSeries(BaseModel):
    """A host's metric over a time window; points are [unix seconds, value], averaged over
    `step` seconds when the window holds more samples than `points` asked for."""

    host: str
    metric: str
    since: int
    until: int
    step: int
    points: list[tuple[int, float]]


class TaskResult(BaseModel):
    """One task's outcome on one host."""

    id: int
    host_id: str
    task: str
    location: str | None
    status: str
    duration: float
    stdout: str
    stderr: str
    diff: str
    message: str
    started_at: str
    finished_at: str


class RunDetail(BaseModel):
    """A run and its per-host task results (in the order they finished)."""

    run: RunSummary
    hosts: dict[str, list[TaskResult]]


class RunProgress(BaseModel):
    """A run's status and its task results recorded after a given one."""

    run: RunSummary
    results: list[TaskResult]


class AuditEntry(BaseModel):
    """A command sent to a host."""

    id: int
    run_id: int | None
    host_id: str
    at: str
    user: str
    command: str
    exit_code: int | None
    duration: float
    stdout_tail: str
    stderr_tail: str
    action: str = Field(
        default="",
        description="The module call the command carried out, as the task wrote it "
        "(`command: systemctl restart nginx`; one a line for tasks sent as one program); "
        "'' for machineroom's own commands.",
    )


class Playbook(BaseModel):
    """A playbook of the inventory's repo that the dashboard may apply."""

    name: str


class CollectRequest(BaseModel):
    """Start `machineroom collect PATTERN`."""

    model_config = ConfigDict(extra="forbid")
    pattern: str = Field("all", min_length=1, max_length=500, description="Host pattern.")


class ApplyRequest(BaseModel):
    """Start `machineroom apply PLAYBOOK` (check mode unless `check` is false)."""

    model_config = ConfigDict(extra="forbid")
    playbook: str = Field(min_length=1, max_length=500, description="A name from /api/playbooks.")
    check: bool = True
    limit: str | None = Field(None, min_length=1, max_length=500, description="Host pattern.")


class HostKey(BaseModel):
    """A host key the action's run refused, as the server presented it during that run."""

    host: str = Field(description="The inventory host.")
    name: str = Field(description="Its known_hosts name: `host`, or `[host]:port`.")
    key_type: str = Field(examples=["ssh-ed25519"])
    label: str = Field(examples=["ED25519"])
    key: str = Field(description="The public key, base64.")
    fingerprint: str = Field(description="SHA256, as `ssh-keygen -lf` prints it.")
    state: Literal["unknown", "changed", "revoked"]
    via: str = Field("", description="A jump host's role when the key is the jump host's.")
    known_at: str | None = Field(None, description="changed/revoked: the entry it met.")
    known_fingerprint: str | None = None
    remove: str | None = Field(None, description="changed: how to remove the old entry.")
    trusted_now: bool = Field(description="The project's known_hosts holds this key now.")


class TrustKey(BaseModel):
    """Trust the key a host presented in an action's run (admins)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(max_length=200)
    fingerprint: str = Field(
        max_length=100, description="The SHA256 fingerprint the admin checked."
    )


class TrustedKey(BaseModel):
    """A key trusted: added to the project's known_hosts (`added` false: it was there)."""

    host: str
    name: str
    fingerprint: str
    added: bool


class Action(BaseModel):
    """A command the dashboard started, and the run it recorded."""

    id: str
    kind: Literal["collect", "apply"]
    target: str
    check: bool
    by: str
    started_at: str
    finished_at: str | None
    running: bool
    exit_code: int | None
    run_id: int | None
    run_status: str | None
    run_results: int = Field(0, description="Task results its run has recorded so far.")
    output_tail: str
    host_keys: list[HostKey] = Field(
        default_factory=list, description="Host keys its finished run refused."
    )


class HostCollect(BaseModel):
    """The result of collecting one host now."""

    host: HostSummary
    run_id: int | None
    seconds: float


class TokenInfo(BaseModel):
    """An access token (never the token itself)."""

    name: str
    role: Role
    state: Literal["active", "expired", "revoked"]
    created_at: str
    created_by: str
    last_used_at: str | None
    expires_at: str | None
    revoked_at: str | None


class TokenCreate(BaseModel):
    """A new token's name, role and lifetime (e.g. 30d; none: never expires)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    role: Role
    expires: str | None = Field(None, pattern=r"^\s*\d{1,6}(\.\d{1,3})?\s*[smhdw]?\s*$")


class TokenCreated(BaseModel):
    """The new token: shown this once, only its hash is kept."""

    token: str
    info: TokenInfo
