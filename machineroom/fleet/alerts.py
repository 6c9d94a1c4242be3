"""Alert evaluation after each collection: open, resolve, deduplicate, notify.

`evaluate_after_collection` is what `machineroom collect` calls. Per rule and host just
collected it decides what fires now (`plan_alerts`, no writes), records openings and
resolutions in one transaction, then notifies.

Order, so that a crash never loses nor repeats a notification silently: (1) the alert row is
written with `notified_open_at` (or `notified_resolved_at`) empty; (2) the notifiers are called;
(3) the time is recorded. A crash between (1) and (2) leaves the column empty and an
evaluation RETRY_AFTER later sends the notification then, once (sooner, a racing evaluation
could not tell it from one still being sent); only a crash in the instant between (2) and (3)
can repeat one, and the payload's `id` and `event` let a receiver drop the repeat.
Deduplication is the database's: one open row per (rule, host, subject), opened and resolved
by conditional statements, so two evaluations racing cannot both open or resolve it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from machineroom.errors import InputError
from machineroom.fleet.alerts_message import render_message
from machineroom.fleet.alerts_notify import alert_payload, send
from machineroom.fleet.alerts_rules import (
    AlertRules,
    Rule,
    default_template,
    load_alert_rules,
    message_fields,
)
from machineroom.inventory import Inventory, select_hosts
from machineroom.state.alerts import AlertRow, NewAlert, Resolution

if TYPE_CHECKING:
    from machineroom.state import StateStore

NOTIFY_THREADS = 8  # alerts notified at once (each one's events stay in order)
# A change left unnotified this long was left by a process that died before notifying: any
# live evaluation finishes its notifications well within it (each notifier has a timeout).
RETRY_AFTER = 600


@dataclass(frozen=True)
class AlertChange:
    """An alert this evaluation opened or resolved, and what its notifiers said. `value` is
    the reading that opened it; a resolution's message ends with why it was resolved."""

    rule: str
    host_id: str
    subject: str
    severity: str
    state: Literal["opened", "resolved"]
    value: float | None
    message: str
    notify_errors: tuple[str, ...] = ()
    alert_id: int = 0


@dataclass
class AlertPlan:
    """What an evaluation would change: alerts to open, open alerts to resolve."""

    openings: list[NewAlert] = field(default_factory=list)
    resolutions: list[Resolution] = field(default_factory=list)
    # resolved because their rule is gone, disabled or no longer selects the host: the
    # rule's notifiers are not told (there may be none left to tell)
    silent: set[int] = field(default_factory=set)


def evaluate_after_collection(
    store: StateStore,
    inventory: Inventory,
    rules_path: Path,
    host_ids: Sequence[str],
    now: int,
) -> list[AlertChange]:
    """Evaluate the rules of `rules_path` for the hosts just collected, at unix time `now`:
    open and resolve alerts, notify each opening and resolving once, return the changes.

    A bad rules file raises InputError(s) before anything is written. A notifier's failure
    is recorded in the alert's `notify_error` and returned in the change, never raised.
    """
    rules = load_alert_rules(rules_path)
    plan = plan_alerts(store, inventory, rules, host_ids, now)
    opened, resolved = store.alerts.record_alert_changes(plan.openings, plan.resolutions, now)
    own = {(row.id, "opened") for row in opened} | {(row.id, "resolved") for row in resolved}
    errors = notify_pending(store, rules, now, own=own, silent=plan.silent)
    changes = [_change(row, "opened", errors) for row in opened]
    changes += [_change(row, "resolved", errors) for row in resolved]
    return changes


def _change(
    row: AlertRow, state: Literal["opened", "resolved"], errors: Mapping[tuple[int, str], list[str]]
) -> AlertChange:
    return AlertChange(
        rule=row.rule,
        host_id=row.host_id,
        subject=row.subject,
        severity=row.severity,
        state=state,
        value=row.value,
        message=row.message,
        notify_errors=tuple(errors.get((row.id, state), ())),
        alert_id=row.id,
    )


def rule_hosts(rules: AlertRules, inventory: Inventory) -> dict[str, set[str]]:
    """The host ids each enabled rule applies to; a pattern that selects nothing is an
    InputError at the rule's `hosts:`."""
    result = {}
    for rule in rules.rules.values():
        if not rule.enabled:
            continue
        try:
            result[rule.name] = {host.id for host in select_hosts(inventory, rule.hosts)}
        except InputError as exc:
            raise InputError(
                f"rule '{rule.name}': hosts: {exc.problem}", rule.hosts_location, exc.expected
            ) from None
    return result


def plan_alerts(
    store: StateStore,
    inventory: Inventory,
    rules: AlertRules,
    host_ids: Sequence[str],
    now: int,
) -> AlertPlan:
    """What the rules say about `host_ids` now, from the database: nothing is written."""
    selected = rule_hosts(rules, inventory)
    statuses = store.metrics.host_statuses(host_ids)
    open_by_host: dict[str, list[AlertRow]] = {}
    for row in store.alerts.open_alerts(host_ids):
        open_by_host.setdefault(row.host_id, []).append(row)
    plan = AlertPlan()
    for host_id in dict.fromkeys(host_ids):
        status = statuses.get(host_id)
        open_rows = open_by_host.get(host_id, [])
        for row in open_rows:
            rule = rules.rules.get(row.rule)
            reason = None
            if rule is None:
                reason = f"rule removed from {rules.path.name}"
            elif not rule.enabled:
                reason = "rule disabled"
            elif host_id not in selected[rule.name]:
                reason = f"rule no longer applies to {host_id}"
            if reason:
                plan.resolutions.append(Resolution(row.id, None, _resolved(row, reason)))
                plan.silent.add(row.id)
        if status is None:
            continue  # never collected: nothing to judge yet
        for rule in rules.rules.values():
            if rule.enabled and host_id in selected[rule.name]:
                mine = {r.subject: r for r in open_rows if r.rule == rule.name}
                _judge(store, rule, host_id, status, mine, now, plan)
    return plan


@dataclass(frozen=True)
class _Verdict:
    firing: bool
    value: float | None
    why: str  # when not firing: what a resolution says
    fields: Mapping[str, Any] = field(default_factory=dict)


def _judge(
    store: StateStore,
    rule: Rule,
    host_id: str,
    status: Mapping[str, Any],
    open_rows: Mapping[str, AlertRow],
    now: int,
    plan: AlertPlan,
) -> None:
    verdicts = _verdicts(store, rule, host_id, status, now)
    if verdicts is None:
        return  # cannot be judged now (host unreachable): open alerts stay as they are
    for subject, row in open_rows.items():
        verdict = verdicts.get(subject)
        if verdict is None:
            plan.resolutions.append(Resolution(row.id, None, _resolved(row, "no longer reported")))
        elif not verdict.firing and verdict.why:
            plan.resolutions.append(Resolution(row.id, verdict.value, _resolved(row, verdict.why)))
    for subject, verdict in verdicts.items():
        if verdict.firing and subject not in open_rows:
            fields = message_fields(
                rule,
                host=host_id,
                subject=subject,
                metric=verdict.fields.get("metric"),
                value=verdict.value,
                state=verdict.fields.get("state"),
                status=verdict.fields.get("status"),
            )
            message = render_message(rule.message or default_template(rule), fields)
            plan.openings.append(
                NewAlert(rule.name, host_id, subject, rule.severity, verdict.value, message)
            )


def _resolved(row: AlertRow, why: str) -> str:
    return f"{row.message} (resolved: {why})"


def _verdicts(
    store: StateStore, rule: Rule, host_id: str, status: Mapping[str, Any], now: int
) -> dict[str, _Verdict] | None:
    """Per subject: firing or not, and the value. None: the rule cannot tell now."""
    reachable = bool(status.get("reachable"))
    if rule.kind == "unreachable":
        failures = int(status.get("failures") or 0)
        firing = not reachable and failures >= rule.collections
        why = "reachable again" if reachable else ""  # still down: stays open
        return {"": _Verdict(firing, float(failures), why)}
    if rule.kind == "stale":
        seen = _unix(status.get("last_seen"))
        if seen is None:
            return None
        age = float(max(now - seen, 0))
        return {"": _Verdict(age >= rule.for_seconds, age, "collected again")}
    if not reachable:
        return None
    if rule.kind == "container_not_running":
        result = {}
        for item in status.get("containers") or []:
            name = str(item.get("name", ""))
            if not name or not rule.wants_container(name):
                continue
            state = str(item.get("state", ""))
            info = {"state": state, "status": str(item.get("status", ""))}
            result[name] = _Verdict(state != "running", None, f"container {name} is {state}", info)
        return result
    return _metric_verdicts(store, rule, host_id, status.get("metrics") or {}, now)


def _metric_verdicts(
    store: StateStore, rule: Rule, host_id: str, metrics: Mapping[str, float], now: int
) -> dict[str, _Verdict]:
    assert rule.metric is not None
    prefix = rule.metric_prefix
    if prefix is not None:
        names = {name[len(prefix) :]: name for name in metrics if name.startswith(prefix)}
    elif rule.metric in metrics:
        names = {rule.metric.partition(":")[2]: rule.metric}
    else:
        names = {}
    result = {}
    for subject, name in names.items():
        value = float(metrics[name])
        firing = rule.breaches(value)
        if firing and rule.for_seconds > 0:
            firing = _held(store, rule, host_id, name, now)
        why = f"{name} is {value:g}" if not rule.breaches(value) else ""
        result[subject] = _Verdict(firing, value, why, {"metric": name})
    return result


def _held(store: StateStore, rule: Rule, host_id: str, metric: str, now: int) -> bool:
    """Whether every sample since the breach began is past the threshold and they span at
    least the rule's `for`. Reading back further than `for` finds where the breach began."""
    lookback = rule.for_seconds + max(rule.for_seconds, 600.0)
    series = store.metrics.metric_series(host_id, metric, int(now - lookback))
    if not series or not rule.breaches(series[-1][1]):
        return False
    start = series[-1][0]
    for at, value in reversed(series):
        if not rule.breaches(value):
            break
        start = at
    return series[-1][0] - start >= rule.for_seconds


def _unix(text: Any) -> int | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def notify_pending(
    store: StateStore,
    rules: AlertRules,
    now: int,
    *,
    own: Collection[tuple[int, str]] = (),
    silent: Collection[int] = (),
    decrypt: Callable[[str], str] | None = None,
) -> dict[tuple[int, str], list[str]]:
    """Notify the openings and resolvings `own` (alert id, 'opened' | 'resolved') that this
    evaluation recorded, and those not notified RETRY_AFTER seconds after they happened (a
    crash left them); record each as notified. Another evaluation's fresh changes are left
    to it: it is notifying them now. Returns the errors by (alert id, event)."""
    rows = store.alerts.unnotified_alerts()
    if not rows:
        return {}
    decrypt = decrypt or env_decrypt
    errors: dict[tuple[int, str], list[str]] = {}

    def one(row: AlertRow) -> None:
        events: list[Literal["opened", "resolved"]] = []
        if row.notified_open_at is None:
            events.append("opened")
        if row.state == "resolved" and row.notified_resolved_at is None:
            events.append("resolved")
        rule = rules.rules.get(row.rule)
        for event in events:
            happened = _unix(row.opened_at if event == "opened" else row.resolved_at)
            if (row.id, event) not in own and (happened or 0) > now - RETRY_AFTER:
                continue
            found: list[str] = []
            if rule is not None and row.id not in silent:
                payload = alert_payload(
                    event, row, metric=_metric_of(rule, row), threshold=rule.threshold
                )
                for name in rule.notify:
                    problem = send(rules.notifiers[name], payload, decrypt)
                    if problem:
                        found.append(problem)
            errors[(row.id, event)] = found
            store.alerts.mark_alert_notified(row.id, event, now, found)

    with ThreadPoolExecutor(max_workers=min(NOTIFY_THREADS, len(rows))) as pool:
        for future in [pool.submit(one, row) for row in rows]:
            future.result()
    return errors


def _metric_of(rule: Rule, row: AlertRow) -> str | None:
    if rule.metric_prefix is not None:
        return rule.metric_prefix + row.subject
    return rule.metric


def env_decrypt(ciphertext: str) -> str:
    """Vault values in alerts.yml open with $MACHINEROOM_VAULT_PASSWORD (or its file): a
    collection may run unattended, with no one to prompt."""
    from machineroom.vault import VaultKey, read_vault_password

    return VaultKey(read_vault_password(None)).decrypt(ciphertext)
