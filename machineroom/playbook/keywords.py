"""Task keywords: which keys a task may carry besides its module, and their values as fields.

The schema (`schema/playbook.json`) has checked the types; these functions only convert what
was written (a string or a list, `a,b` tags, `with_items`) into the model's shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from machineroom.errors import InputError
from machineroom.playbook.args import is_template, parse_bool
from machineroom.playbook.model import Task
from machineroom.yamlio import to_plain

# The lookups a task's `with_NAME` may name (machineroom/lookups.py and templating.py).
WITH_LOOKUPS = (
    "items",
    "list",
    "dict",
    "together",
    "subelements",
    "nested",
    "cartesian",
    "sequence",
    "first_found",
    "fileglob",
    "indexed_items",
    "flattened",
    "random_choice",
    "lines",
    "file",
    "env",
    "vars",
    "template",
)

# Keywords a task may carry besides its module (listen: handlers only).
TASK_KEYWORDS = frozenset(
    {
        "name",
        "when",
        "loop",
        *(f"with_{name}" for name in WITH_LOOKUPS),
        "loop_control",
        "register",
        "notify",
        "listen",
        "tags",
        "vars",
        "environment",
        "args",
        "become",
        "become_user",
        "changed_when",
        "failed_when",
        "until",
        "ignore_errors",
        "ignore_unreachable",
        "retries",
        "delay",
        "timeout",
        "check_mode",
        "diff",
        "run_once",
        "any_errors_fatal",
        "no_log",
        "module_defaults",
        *(
            "delegate_to",
            "delegate_facts",
            "connection",
            "remote_user",
            "port",
            "become_method",
            "become_flags",
            "async",
            "poll",
            "throttle",
        ),
    }
)
# Keys that carry the module themselves (`local_action: copy src=a dest=b`): tasks.py
# rewrites them into the module key, `local_action` adding `delegate_to: localhost`.
ACTION_KEYS = ("local_action", "action")
# true/false keywords that may be templates, evaluated per host when the task runs
TEMPLATED_FLAGS = (
    "become",
    "ignore_errors",
    "no_log",
    "check_mode",
    "diff",
    "run_once",
    "any_errors_fatal",
)
# Block keywords the Block model has no field for: pushed down to each task that lacks them.
PUSHED_DOWN = (
    "environment",
    "check_mode",
    "diff",
    "any_errors_fatal",
    "ignore_unreachable",
    "run_once",
    "no_log",
    "delegate_to",
    "delegate_facts",
    "connection",
    "remote_user",
    "port",
    "become_method",
    "become_flags",
    "throttle",
)
# Ansible task keywords machineroom does not run; named so that the error is not "unknown module".
UNSUPPORTED = frozenset(
    {
        "collections",
        "debugger",
        "become_exe",
    }
)


def label_of(node: Mapping[str, Any], kind: str = "task") -> str:
    """`task "Install docker": ` for messages, or "" for a task without a name."""
    name = node.get("name")
    return f'{kind} "{name}": ' if isinstance(name, str) and name else ""


def conditions(value: Any) -> tuple[Any, ...]:
    """`when:` and friends as a tuple of raw conditions (all must hold)."""
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(to_plain(v) for v in value)
    return (to_plain(value),)


def parse_tags(value: Any) -> frozenset[str]:
    """Tags as written: `a`, `a,b` or a list of them (numbers count as their text)."""
    if value is None:
        return frozenset()
    values = value if isinstance(value, list) else [value]
    return frozenset(part.strip() for v in values for part in str(v).split(",") if part.strip())


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else (str(value),)


def plain_mapping(value: Any) -> Mapping[str, Any]:
    return MappingProxyType(to_plain(value) if isinstance(value, Mapping) else {})


# `environment: "{{ proxy_env }}"`: the template, kept under a key no variable can have and
# rendered per host (executor/task.py), the other names on top
ENVIRONMENT_TEMPLATE = "*"


def environment_of(value: Any) -> Mapping[str, Any]:
    """`environment:` as written: a mapping, or a template giving one."""
    if is_template(value):
        return MappingProxyType({ENVIRONMENT_TEMPLATE: str(value)})
    return plain_mapping(value)


def bool_or_none(value: Any) -> bool | None:
    """A boolean as written (`true`, or a string Ansible reads as one: 'yes', 'False'), or
    None when the keyword is absent or a template (see `flag_templates`)."""
    if isinstance(value, bool):
        return value
    return parse_bool(value) if isinstance(value, str) and not is_template(value) else None


# number keywords that may be templates (`retries: "{{ n }}"`), evaluated per host
TEMPLATED_NUMBERS = ("retries", "delay")


def flag_templates(node: Mapping[str, Any]) -> dict[str, str]:
    """The true/false and number keywords written as templates (`no_log: "{{ hide }}"`),
    to be evaluated per host at run time."""
    keys = (*TEMPLATED_FLAGS, *TEMPLATED_NUMBERS)
    return {k: str(node[k]) for k in keys if is_template(node.get(k))}


def resolve_flags(task: Task, render: Callable[[str], Any]) -> Task:
    """`task` with its templated true/false keywords evaluated (`render` gives a template's
    value on one host), read with Ansible's boolean rules; InputError when one is neither."""
    if not task.templated:
        return task
    values: dict[str, Any] = {}
    for key, template in task.templated.items():
        value = render(template)
        if key in TEMPLATED_NUMBERS:
            number = _numeric(value)
            if number is None or number < 0:
                raise InputError(
                    f"{key}: {template} gave {value!r}, which is not a number",
                    task.location,
                    "a number 0 or more",
                )
            values[key] = int(number) if key == "retries" else number
            continue
        flag = parse_bool(value)
        if flag is None:
            raise InputError(
                f"{key}: {template} gave {value!r}, which is not true or false",
                task.location,
                "true/false, yes/no, on/off or 1/0",
            )
        values[key] = flag
    return replace(task, templated=MappingProxyType({}), **values)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _numeric(value: Any) -> float | None:
    """A number, or text that is one (`"5"`, as Ansible reads keywords); else None."""
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return _number(value)


def _text_or_none(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def _count(value: Any) -> int | None:
    """`async: 30`, `poll: '5'`, `throttle: 1` as an int (the schema checked the shape)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def connection_keywords(node: Mapping[str, Any]) -> dict[str, Any]:
    """How a play, block or task connects: remote_user, port, become_method/flags."""
    port = node.get("port")
    return {
        "remote_user": _text_or_none(node.get("remote_user")),
        "port": port if isinstance(port, int | str) and not isinstance(port, bool) else None,
        "become_method": _text_or_none(node.get("become_method")),
        "become_flags": _text_or_none(node.get("become_flags")),
    }


def pushed_value(key: str, value: Any) -> Any:
    """A block keyword's value as the task field it is pushed down into."""
    if key == "environment":
        return environment_of(value)
    if key in ("delegate_to", "connection", "remote_user", "become_method", "become_flags"):
        return _text_or_none(value)
    if key == "port":
        return connection_keywords({"port": value})["port"]
    if key == "throttle":
        return _count(value)
    if key == "timeout":
        return _number(value)
    return bool_or_none(value)


def task_fields(node: Mapping[str, Any]) -> dict[str, Any]:
    """Task fields from the keywords of a schema-checked task mapping."""
    loop: Any = None
    loop_with: str | None = None
    if "loop" in node:
        loop = to_plain(node["loop"])
    else:  # with_NAME: the terms of lookup NAME, looked up when the task runs (as Ansible)
        for name in WITH_LOOKUPS:
            if f"with_{name}" in node:
                loop, loop_with = to_plain(node[f"with_{name}"]), name
                break
    retries = _numeric(node.get("retries"))
    delay = _numeric(node.get("delay"))
    return {
        "name": str(node["name"]) if isinstance(node.get("name"), str) else None,
        "when": conditions(node.get("when")),
        "loop": loop,
        "loop_with": loop_with,
        "loop_control": plain_mapping(node.get("loop_control")),
        "register": str(node["register"]) if isinstance(node.get("register"), str) else None,
        "notify": _names(node.get("notify")),
        "listen": _names(node.get("listen")),
        "tags": parse_tags(node.get("tags")),
        "vars": plain_mapping(node.get("vars")),
        "environment": environment_of(node.get("environment")),
        "become": bool_or_none(node.get("become")),
        "become_user": str(node["become_user"])
        if isinstance(node.get("become_user"), str)
        else None,
        "changed_when": conditions(node["changed_when"]) if "changed_when" in node else None,
        "failed_when": conditions(node["failed_when"]) if "failed_when" in node else None,
        "ignore_errors": bool_or_none(node.get("ignore_errors")) is True,
        "ignore_unreachable": node.get("ignore_unreachable") is True,
        "retries": int(retries) if retries is not None else None,
        "until": to_plain(node.get("until")),
        "delay": delay if delay is not None else 5.0,
        "timeout": _number(node.get("timeout")),
        "check_mode": bool_or_none(node.get("check_mode")),
        "diff": bool_or_none(node.get("diff")),
        "run_once": bool_or_none(node.get("run_once")) is True,
        "no_log": bool_or_none(node.get("no_log")) is True,
        "any_errors_fatal": bool_or_none(node.get("any_errors_fatal")),
        "templated": MappingProxyType(flag_templates(node)),
        "delegate_to": _text_or_none(node.get("delegate_to")),
        "delegate_facts": bool_or_none(node.get("delegate_facts")) is True,
        "connection": _text_or_none(node.get("connection")),
        **connection_keywords(node),
        "async_seconds": _count(node.get("async")),
        "poll": _count(node.get("poll")),
        "throttle": _count(node.get("throttle")),
    }
