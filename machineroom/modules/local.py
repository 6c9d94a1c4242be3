"""Modules that never contact the host: debug, assert, fail, set_fact, meta, record.

They compute an Outcome from their (already templated) arguments alone, so each class here
says what the executor must have done before calling it (e.g. evaluate `assert`'s
expressions) and what it must do with the result (set facts, act on `meta`, write `record`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.modules.base import RES_VAR, VERBOSITY_VAR, Module, ModuleContext, Outcome


class _LocalModule(Module):
    local: ClassVar[bool] = True


class DebugModule(_LocalModule):
    """`debug`: msg (default "Hello world!") or var, verbosity.

    The executor templates `msg`. For `var` the module looks the name up itself in ctx.vars
    (dotted paths and `[index]`-free keys: `result.stdout`); an executor that evaluates
    `var` as a full Jinja2 expression puts the value into args["value"] instead. Undefined:
    "VARIABLE IS NOT DEFINED!", as Ansible. With `verbosity` above the
    run's -v count (ctx.vars["__mr_verbosity__"], default 0) the task is skipped-like ok with
    result `skipped: true`. Never changed.
    """

    name: ClassVar[str] = "debug"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "msg": {},
            "var": {"type": "string", "minLength": 1},
            "value": {},
            "verbosity": {"type": "integer", "minimum": 0, "default": 0},
        },
        "additionalProperties": False,
        "not": {"required": ["msg", "var"]},
    }

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """`msg` (or `{var: value}`) as the result; shown by the reporter."""
        wanted = int(args.get("verbosity") or 0)
        if wanted > int(ctx.vars.get(VERBOSITY_VAR, 0) or 0):
            return Outcome("ok", msg="skipped: verbosity", result={"skipped": True})
        if "var" in args:
            name = str(args["var"])
            value = args["value"] if "value" in args else _lookup(ctx.vars, name)
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            return Outcome("ok", msg=f"{name}: {text}", result={name: value})
        msg = args.get("msg", "Hello world!")
        text = msg if isinstance(msg, str) else json.dumps(msg, default=str)
        return Outcome("ok", msg=text, result={"msg": msg})


class AssertModule(_LocalModule):
    """`assert`: that, fail_msg (alias msg), success_msg, quiet.

    The module cannot evaluate expressions (that needs the templar and the host's vars), so
    the executor evaluates each entry of `that` as a Jinja2 condition (as `when` does) and
    passes `that` as a list, in order, of `{"expr": "<the expression>", "ok": <bool>}`
    (plain booleans are accepted too, with the optional `expressions` list naming them).
    The module fails naming the first false expression, with `fail_msg` (or `msg`) when
    given; ok with `success_msg` (default "All assertions passed") otherwise.
    """

    name: ClassVar[str] = "assert"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "that": {"anyOf": [{"type": "array"}, {"type": ["string", "boolean"]}]},
            "expressions": {"type": "array", "items": {"type": "string"}},
            "fail_msg": {},
            "msg": {},
            "success_msg": {},
            "quiet": {"type": "boolean", "default": False},
        },
        "required": ["that"],
        "additionalProperties": False,
    }

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """Fail at the first false condition; ok with `success_msg` when all hold."""
        that = args["that"]
        values = list(that) if isinstance(that, list | tuple) else [that]
        exprs = [str(e) for e in args.get("expressions") or values]
        for index, item in enumerate(values):
            value = item
            if isinstance(item, Mapping) and "ok" in item:
                value = item["ok"]
                exprs[index : index + 1] = [str(item.get("expr", index))]
            if not isinstance(value, bool):
                raise TypeError(
                    f"assert: the executor must evaluate `that` into booleans, got {value!r}"
                )
            if not value:
                expr = exprs[index] if index < len(exprs) else str(index)
                custom = args.get("fail_msg", args.get("msg"))
                msg = str(custom) if custom is not None else "Assertion failed"
                result = {"assertion": expr, "evaluated_to": False}
                return Outcome("failed", msg=msg, result=result)
        if args.get("quiet"):
            return Outcome("ok", msg="")
        success = args.get("success_msg")
        return Outcome("ok", msg=str(success) if success is not None else "All assertions passed")


class FailModule(_LocalModule):
    """`fail`: msg (default "Failed as requested from task"). Always failed."""

    name: ClassVar[str] = "fail"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"msg": {}},
        "additionalProperties": False,
    }

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """Fail with `msg`."""
        msg: Any = args.get("msg", "Failed as requested from task")
        return Outcome("failed", msg=msg if isinstance(msg, str) else json.dumps(msg, default=str))


class SetFactModule(_LocalModule):
    """`set_fact`: key: value pairs (templated by the executor) -> Outcome.facts.

    The executor stores them as host facts (precedence "registered/set facts"); with
    `cacheable: true` it also keeps them where it caches facts (the state database). Never
    changed, as Ansible.
    """

    name: ClassVar[str] = "set_fact"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"cacheable": {"type": "boolean", "default": False}},
        # a name may be a template (`"{{ item }}=moo"`), rendered per host like the values
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$|\\{\\{|\\{%"},
        "minProperties": 1,
    }

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """The pairs, except `cacheable`, as facts; result `ansible_facts` mirrors them."""
        facts = {k: v for k, v in args.items() if k != "cacheable"}
        for name in facts:
            if not name.isidentifier() or not name.isascii():
                return Outcome(
                    "failed",
                    msg=f"The variable name '{name}' is not valid. Variables must start with a "
                    "letter or underscore character, and contain only letters, numbers and "
                    "underscores.",
                )
        result = {"ansible_facts": facts, "cacheable": bool(args.get("cacheable", False))}
        return Outcome("ok", msg=f"set {', '.join(sorted(facts))}", result=result, facts=facts)


class MetaModule(_LocalModule):
    """`meta`: free form action flush_handlers, noop, end_play, end_host, end_batch,
    clear_facts, clear_host_errors, refresh_inventory, reset_connection.

    The module only validates and echoes: result["action"] names what the executor must do
    (flush_handlers: run notified handlers now; end_host: stop this host's tasks, ok;
    end_play / end_batch: stop the play (batch) for every host; clear_facts: drop the host's
    gathered and set facts; clear_host_errors: un-fail the host; reset_connection: close
    the host's connection so the next task reopens it). Never changed.
    """

    name: ClassVar[str] = "meta"
    free_form: ClassVar[str | None] = "action"
    ACTIONS: ClassVar[tuple[str, ...]] = (
        "flush_handlers",
        "noop",
        "end_play",
        "end_host",
        "end_batch",
        "end_role",
        "clear_facts",
        "clear_host_errors",
        "refresh_inventory",
        "reset_connection",
    )
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"action": {"enum": list(ACTIONS)}},
        "required": ["action"],
        "additionalProperties": False,
    }

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """result["action"] for the executor to act on."""
        action = str(args["action"])
        if action not in self.ACTIONS:
            return Outcome("failed", msg=f"meta: unknown action {action!r}")
        return Outcome("ok", msg=f"meta: {action}", result={"action": action})


class RecordModule(_LocalModule):
    """`record`: key: value pairs written into the host's `server_room.res` (JSON).

    The executor passes the host's current `res` dict in ctx.vars["__mr_res__"] (absent or
    None: empty) and merges Outcome.record into `res` (top-level keys replaced, a null value
    stored as null), then into `server_room.res`. Changed only when some value differs from
    what `res` holds. Outcome.record is empty when nothing differs and in check mode (the
    would-be change is in `diff` and result["record"]), so the executor may write whatever
    it is given.
    """

    name: ClassVar[str] = "record"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_.-]*$"},
        "minProperties": 1,
    }

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """Compare each pair with the current res; record and diff only what differs."""
        current = ctx.vars.get(RES_VAR) or {}
        if not isinstance(current, Mapping):
            current = {}
        differs = {}
        for key, value in args.items():
            if key not in current or _canonical(current[key]) != _canonical(value):
                differs[key] = value
        record = dict(args)
        if not differs:
            return Outcome("ok", msg="res already holds these values")
        diff_lines = ["--- res (before)", "+++ res (after)"]
        for key, value in differs.items():
            if key in current:
                diff_lines.append(f"-{key}: {json.dumps(current[key], default=str)}")
            if value is not None:
                diff_lines.append(f"+{key}: {json.dumps(value, default=str)}")
        verb = "would record" if ctx.check else "recorded"
        return Outcome(
            "changed",
            msg=f"{verb} {', '.join(sorted(differs))}",
            diff="\n".join(diff_lines) + "\n",
            result={"record": record, "changed_keys": sorted(differs)},
            record={} if ctx.check else record,
        )


def _canonical(value: Any) -> str:
    """A comparable form: JSON with sorted keys (res round-trips through JSON anyway)."""
    return json.dumps(value, sort_keys=True, default=str)


_UNDEFINED = "VARIABLE IS NOT DEFINED!"


def _lookup(variables: Mapping[str, Any], name: str) -> Any:
    """`a.b.c` in the variables (mappings by key, lists by number); undefined: Ansible's text."""
    value: Any = variables
    for part in name.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list | tuple) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _UNDEFINED
    return value
