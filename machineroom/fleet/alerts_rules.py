"""alerts.yml: loading and checking alert rules and notifiers (the model evaluation uses).

The file is checked whole before anything is evaluated: the JSON Schema (types, unknown keys
with "did you mean") first, then what a schema says badly (a rule needs a metric or a
condition, notifier names must exist, message templates may only name known fields), every
error at its `file:line:col`.

Message templates (alerts_message.py) are checked here too, against each rule's fields.
"""

from __future__ import annotations

import fnmatch
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from machineroom.errors import InputError, InputErrors, Location, UsageError, did_you_mean
from machineroom.fleet.alerts_message import check_template, format_duration, mask_url
from machineroom.fleet.durations import parse_duration
from machineroom.inventory.model import Secret
from machineroom.yamlio import EnvTagged, VaultTagged, key_location_of, load_yaml, location_of

Severity = Literal["info", "warning", "critical"]
RuleKind = Literal["metric", "unreachable", "container_not_running", "stale"]

DEFAULT_COLLECTIONS = 3  # consecutive failed collections before `unreachable` opens
DEFAULT_NOTIFY_TIMEOUT = 10.0  # seconds a notifier may take

# Built-in metric names of the collector (modules/collect_script.py). A name with a dot is a
# custom collector's (`NAME.key.sub`) and is not checked; `PER_SUBJECT` ones need `:MOUNT` or
# `:*`.
BUILTIN_METRICS = (
    "up",
    "uptime_seconds",
    "load1",
    "load5",
    "load15",
    "cpus",
    "cpu_used_pct",
    "mem_total_bytes",
    "mem_available_bytes",
    "mem_used_pct",
    "swap_used_pct",
    "disk_used_pct_max",
    "net_rx_bytes_per_s",
    "net_tx_bytes_per_s",
    "containers_total",
    "containers_running",
)
PER_SUBJECT_METRICS = (
    "disk_used_pct",
    "disk_used_bytes",
    "disk_size_bytes",
    "net_rx_bytes",
    "net_tx_bytes",
)


@dataclass(frozen=True)
class Notifier:
    """Where alerts are sent: a command (alert JSON on stdin) or a webhook (JSON POSTed)."""

    name: str
    kind: Literal["command", "webhook"]
    argv: tuple[str, ...] = ()
    url: Secret | None = None
    headers: Mapping[str, Secret] = field(default_factory=lambda: MappingProxyType({}))
    timeout: float = DEFAULT_NOTIFY_TIMEOUT
    folder: Path = Path(".")  # a command runs here: alerts.yml's folder
    location: Location | None = None


@dataclass(frozen=True)
class Rule:
    """One alert rule, checked and with its defaults filled in."""

    name: str
    kind: RuleKind
    hosts: str = "all"
    metric: str | None = None
    above: float | None = None
    below: float | None = None
    for_seconds: float = 0.0
    collections: int = DEFAULT_COLLECTIONS
    containers: tuple[str, ...] = ()
    severity: Severity = "warning"
    message: str | None = None
    notify: tuple[str, ...] = ()
    enabled: bool = True
    location: Location | None = None
    hosts_location: Location | None = None

    @property
    def threshold(self) -> float | None:
        """The number the metric is compared with."""
        return self.above if self.above is not None else self.below

    @property
    def metric_prefix(self) -> str | None:
        """For `disk_used_pct:*`, `disk_used_pct:`: every metric starting so is a subject."""
        if self.metric is not None and self.metric.endswith(":*"):
            return self.metric[:-1]
        return None

    def breaches(self, value: float) -> bool:
        """Whether a sample is past the threshold (above: strictly more; below: less)."""
        if self.above is not None:
            return value > self.above
        return self.below is not None and value < self.below

    def wants_container(self, name: str) -> bool:
        """Whether the rule watches a container of this name (all when no globs given)."""
        return not self.containers or any(fnmatch.fnmatchcase(name, g) for g in self.containers)


@dataclass(frozen=True)
class AlertRules:
    """A loaded alerts.yml."""

    path: Path
    rules: Mapping[str, Rule]
    notifiers: Mapping[str, Notifier]


def load_alert_rules(path: str | Path) -> AlertRules:
    """Read, validate and check an alerts.yml; InputError(s) naming `file:line:col` if wrong."""
    from machineroom.schema import validate

    source = str(path)
    data = load_yaml(path)
    if data is None:
        raise InputError("empty file", Location(source), "a mapping with 'rules:'")
    validate(data, "alerts", source)
    errors: list[InputError] = []
    folder = Path(path).resolve().parent
    notifiers = {
        str(name): _notifier(
            str(name), spec, folder, key_location_of(data["notifiers"], name), errors
        )
        for name, spec in (data.get("notifiers") or {}).items()
    }
    rules = {
        str(name): _rule(str(name), spec, notifiers, key_location_of(data["rules"], name), errors)
        for name, spec in (data.get("rules") or {}).items()
    }
    if errors:
        raise InputErrors(sorted(errors, key=lambda e: _position(e.location)))
    return AlertRules(Path(path), MappingProxyType(rules), MappingProxyType(notifiers))


def _position(where: Location | None) -> tuple[int, int]:
    return ((where.line or 0), (where.col or 0)) if where else (0, 0)


def _duration(spec: Mapping[str, Any], key: str, what: str, errors: list[InputError]) -> float:
    try:
        return parse_duration(str(spec[key]), key)
    except UsageError:
        errors.append(
            InputError(
                f"{what}: {key}: {spec[key]!r} is not a duration",
                location_of(spec, key),
                "a duration such as 30s, 10m, 1h",
            )
        )
        return 0.0


def _secret(value: Any, where: Location) -> Secret:
    if isinstance(value, VaultTagged):
        return Secret("vault", str(value), where)
    if isinstance(value, EnvTagged):
        return Secret("env", str(value), where)
    return Secret("plain", str(value), where)


def _notifier(
    name: str, spec: Mapping[str, Any], folder: Path, where: Location, errors: list[InputError]
) -> Notifier:
    what = f"notifier '{name}'"
    has = [k for k in ("command", "webhook") if k in spec]
    if len(has) != 1:
        problem = "has both command and webhook" if has else "has neither command nor webhook"
        errors.append(InputError(f"{what}: {problem}", where, "exactly one of command, webhook"))
        return Notifier(name, "command", location=where)
    timeout = _duration(spec, "timeout", what, errors) if "timeout" in spec else None
    if timeout is not None and timeout <= 0:
        errors.append(
            InputError(f"{what}: timeout must be more than 0", location_of(spec, "timeout"))
        )
    timeout = timeout or DEFAULT_NOTIFY_TIMEOUT
    if "headers" in spec and has[0] != "webhook":
        errors.append(
            InputError(f"{what}: headers only go with a webhook", key_location_of(spec, "headers"))
        )
    if has[0] == "command":
        command = spec["command"]
        try:
            argv = tuple(shlex.split(command)) if isinstance(command, str) else tuple(command)
        except ValueError as exc:
            errors.append(
                InputError(
                    f"{what}: command: {exc}",
                    location_of(spec, "command"),
                    "a command line with balanced quotes",
                )
            )
            argv = ()
        else:
            if not argv:
                errors.append(InputError(f"{what}: command is empty", location_of(spec, "command")))
        return Notifier(name, "command", argv=argv, timeout=timeout, folder=folder, location=where)
    url = spec["webhook"]
    url_where = location_of(spec, "webhook")
    if not isinstance(url, EnvTagged | VaultTagged) and not str(url).startswith(
        ("http://", "https://")
    ):
        errors.append(
            InputError(
                f"{what}: webhook: {mask_url(str(url))!r} is not an http(s) URL",
                url_where,
                "an http:// or https:// URL (or !env NAME, !vault ...)",
            )
        )
    headers = {
        str(k): _secret(v, location_of(spec["headers"], k))
        for k, v in (spec.get("headers") or {}).items()
    }
    return Notifier(
        name,
        "webhook",
        url=_secret(url, url_where),
        headers=MappingProxyType(headers),
        timeout=timeout,
        folder=folder,
        location=where,
    )


def _rule(
    name: str,
    spec: Mapping[str, Any],
    notifiers: Mapping[str, Notifier],
    where: Location,
    errors: list[InputError],
) -> Rule:
    what = f"rule '{name}'"
    condition = spec.get("condition")
    metric = spec.get("metric")
    kind: RuleKind = "metric"
    if (metric is None) == (condition is None):
        problem = "has both metric and condition" if metric else "has neither metric nor condition"
        errors.append(
            InputError(
                f"{what}: {problem}",
                where,
                "a metric with above or below, or a condition: unreachable, "
                "container_not_running, stale",
            )
        )
    elif condition is not None:
        kind = condition
    # Keys that belong to another kind of rule: a mistake the schema cannot name well.
    allowed = {
        "metric": ("metric", "above", "below", "for"),
        "unreachable": ("condition", "collections"),
        "container_not_running": ("condition", "containers"),
        "stale": ("condition", "for"),
    }[kind]
    for key in ("metric", "above", "below", "for", "condition", "collections", "containers"):
        if key in spec and key not in allowed and key not in ("metric", "condition"):
            label = f"condition {kind}" if kind != "metric" else "a metric rule"
            errors.append(
                InputError(
                    f"{what}: {key} does not go with {label}",
                    key_location_of(spec, key),
                    f"the keys of {label}: "
                    + ", ".join(k for k in allowed if k not in ("metric", "condition")),
                )
            )
    if kind == "metric" and metric is not None:
        _check_metric(what, str(metric), location_of(spec, "metric"), errors)
        if ("above" in spec) == ("below" in spec):
            errors.append(
                InputError(
                    f"{what}: needs exactly one of above, below",
                    where,
                    "above: NUMBER or below: NUMBER",
                )
            )
    if kind == "stale" and "for" not in spec:
        errors.append(
            InputError(f"{what}: condition stale needs for", where, "for: a duration such as 30m")
        )
    for_seconds = _duration(spec, "for", what, errors) if "for" in spec else 0.0
    notify = spec.get("notify", ())
    notify = (notify,) if isinstance(notify, str) else tuple(str(n) for n in notify)
    for index, target in enumerate(notify):
        if target not in notifiers:
            node = spec["notify"]
            at = location_of(node, index) if isinstance(node, list) else location_of(spec, "notify")
            hint = did_you_mean(target, notifiers)
            errors.append(
                InputError(
                    f"{what}: notify: no notifier '{target}'{hint}",
                    at,
                    ("one of: " + ", ".join(notifiers))
                    if notifiers
                    else "a notifier defined under notifiers:",
                )
            )
    containers = spec.get("containers", ())
    containers = (containers,) if isinstance(containers, str) else tuple(str(c) for c in containers)
    rule = Rule(
        name=name,
        kind=kind,
        hosts=str(spec.get("hosts", "all")),
        metric=None if metric is None else str(metric),
        above=None if spec.get("above") is None else float(spec["above"]),
        below=None if spec.get("below") is None else float(spec["below"]),
        for_seconds=for_seconds,
        collections=int(spec.get("collections", DEFAULT_COLLECTIONS)),
        containers=containers,
        severity=spec.get("severity", "warning"),
        message=None if spec.get("message") is None else str(spec["message"]),
        notify=notify,
        enabled=bool(spec.get("enabled", True)),
        location=where,
        hosts_location=location_of(spec, "hosts") if "hosts" in spec else where,
    )
    if rule.message is not None:
        bad = check_template(rule.message, sample_fields(rule))
        if bad:
            errors.append(
                InputError(f"{what}: message: {bad[0]}", location_of(spec, "message"), bad[1])
            )
    return rule


def _check_metric(what: str, metric: str, where: Location, errors: list[InputError]) -> None:
    base, colon, subject = metric.partition(":")
    if "." in base:
        return  # a custom collector's metric: any name its JSON gives
    if base in PER_SUBJECT_METRICS:
        if not colon or not subject:
            errors.append(
                InputError(
                    f"{what}: metric '{metric}' is per mount or interface",
                    where,
                    f"'{base}:*' (each one) or '{base}:NAME', e.g. 'disk_used_pct:/var'",
                )
            )
        return
    if base not in BUILTIN_METRICS:
        errors.append(
            InputError(
                f"{what}: unknown metric '{base}'"
                + did_you_mean(base, BUILTIN_METRICS + PER_SUBJECT_METRICS),
                where,
                "a built-in metric (see docs/alerts.md) or COLLECTOR.key of a custom collector",
            )
        )
    elif colon:
        errors.append(InputError(f"{what}: metric '{base}' has no ':' part", where, f"'{base}'"))


def default_template(rule: Rule) -> str:
    """The message of a rule that gives none."""
    if rule.kind == "unreachable":
        return "unreachable for {value:.0f} collections"
    if rule.kind == "container_not_running":
        return "container {subject} is {state} ({status})"
    if rule.kind == "stale":
        return "no successful collection for {for}"
    word = "above" if rule.above is not None else "below"
    held = " for {for}" if rule.for_seconds else ""
    return "{metric} is {value:g}, " + word + " {threshold:g}" + held


def sample_fields(rule: Rule) -> dict[str, Any]:
    """Values of the kinds an alert of this rule will have, to try its template on."""
    return message_fields(
        rule,
        host="host",
        subject="/" if rule.metric_prefix else "",
        metric=rule.metric,
        value=None if rule.kind == "container_not_running" else 1.0,
        state="exited" if rule.kind == "container_not_running" else None,
        status="Exited (1)" if rule.kind == "container_not_running" else None,
    )


def message_fields(
    rule: Rule,
    *,
    host: str,
    subject: str,
    metric: str | None,
    value: float | None,
    state: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """What a message template can name."""
    return {
        "rule": rule.name,
        "host": host,
        "subject": subject,
        "severity": rule.severity,
        "metric": metric,
        "value": value,
        "threshold": rule.threshold,
        "for": format_duration(rule.for_seconds),
        "state": state,
        "status": status,
    }
