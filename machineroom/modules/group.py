"""`group`: local groups through groupadd/groupmod/groupdel after `getent group`.

One remote command, in the same marker style as `user` (its helpers are shared): create with
groupadd (Ansible's `-K GID_MIN=`/`GID_MAX=` ranges), renumber with `groupmod -g`, or delete;
then print the group as the host has it, for Ansible's `gid` result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.errors import InputError
from machineroom.modules.base import (
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)
from machineroom.modules.user import (
    _NAME,
    MARK,
    _change,
    _diff,
    _failed,
    _info,
    _local_guard,
    _read_changes,
)


class GroupModule(Module):
    """`group`: name, state, gid, non_unique, system, gid_min, gid_max, force, local."""

    name: ClassVar[str] = "group"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "name": _NAME,
            "state": {"enum": ["present", "absent"], "default": "present"},
            "gid": {"type": "integer", "minimum": 0},
            "non_unique": {"type": "boolean", "default": False},
            "system": {"type": "boolean", "default": False},
            "gid_min": {"type": "integer", "minimum": 0},
            "gid_max": {"type": "integer", "minimum": 0},
            "force": {"type": "boolean", "default": False},
            "local": {"type": "boolean", "default": False},
        },
        "required": ["name"],
        "additionalProperties": False,
    }

    @staticmethod
    def _refuse(args: Mapping[str, Any]) -> None:
        """Ansible's own refusals, before anything runs."""
        if args.get("non_unique") and args.get("gid") is None:
            raise InputError("group: non_unique is True but all of the following are missing: gid")
        if args.get("local"):
            if args.get("force"):
                raise InputError(
                    "group: force is not a valid option for local, force=True and local=True "
                    "are mutually exclusive"
                )
            for key in ("gid_min", "gid_max"):
                if args.get(key) is not None:
                    raise InputError(f"group: '{key}' can not be used with 'local'")

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """getent group, then groupadd, groupmod -g or groupdel only when needed."""
        self._refuse(args)
        lines = [f"__mr_n={quote(args['name'])}"]
        absent = args.get("state", "present") == "absent"
        if args.get("local"):
            return RemoteStep(
                "\n".join([*lines, _local_guard("lgroupdel" if absent else "lgroupadd")])
            )
        lines.append('__mr_ent=$(getent group "$__mr_n")')
        unique = " -o" if args.get("non_unique") else ""
        if absent:
            force = "-f " if args.get("force") else ""
            run = "" if ctx.check else f'groupdel {force}-- "$__mr_n" >&2 || exit 1; '
            lines.append(f'if [ -n "$__mr_ent" ]; then {run}{_change("remove", "")}; fi')
        else:
            opts = []
            if args.get("gid") is not None:
                opts.append(f"-g {quote(args['gid'])}{unique}")
            if args.get("system"):
                opts.append("-r")
            for key, setting in (("gid_min", "GID_MIN"), ("gid_max", "GID_MAX")):
                if args.get(key) is not None:
                    opts.append(f"-K {quote(f'{setting}={args[key]}')}")
            run = "" if ctx.check else f'groupadd {" ".join(opts)} -- "$__mr_n" >&2 || exit 1; '
            lines.append(f'if [ -z "$__mr_ent" ]; then {run}{_change("create", "")}')
            if args.get("gid") is not None:
                gid = quote(args["gid"])
                run = "" if ctx.check else f'groupmod -g {gid}{unique} -- "$__mr_n" >&2 || exit 1; '
                lines.append(
                    f'elif [ "$(echo "$__mr_ent" | cut -d: -f3)" != {gid} ]; then '
                    f"{run}{_change('gid', '$(echo $__mr_ent | cut -d: -f3)')}"
                )
            lines.append("fi")
            lines.append(
                '__mr_ent=$(getent group "$__mr_n") && '
                f"printf '{MARK} info entry %s\\n' \"$__mr_ent\""
            )
        lines.append("exit 0")
        return RemoteStep("\n".join(lines))

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Changed when the group was created, removed or renumbered."""
        changes, _ = _read_changes(output)
        name = args["name"]
        result: dict[str, Any] = {"name": name, "state": args.get("state", "present")}
        if args.get("gid") is not None:
            result["gid"] = args["gid"]
        entry = _info(output).get("entry", "").split(":")
        if len(entry) >= 3 and entry[2].isdigit():
            # Ansible's keys for a group that exists after the task
            result["gid"] = int(entry[2])
            result["system"] = bool(args.get("system"))
        if output.exit_code != 0:
            result["stderr"] = output.stderr
            return _failed(output, result)
        diff = _diff("group", name, changes, args)
        would = "would be " if ctx.check else ""
        if "create" in changes:
            return Outcome("changed", msg=f"group {name} {would}created", diff=diff, result=result)
        if "remove" in changes:
            return Outcome("changed", msg=f"group {name} {would}removed", diff=diff, result=result)
        if "gid" in changes:
            msg = f"group {name}: gid {changes['gid']} -> {args['gid']}" + (
                " (check mode)" if ctx.check else ""
            )
            return Outcome("changed", msg=msg, diff=diff, result=result)
        gone = args.get("state") == "absent"
        msg = f"group {name} {'does not exist' if gone else 'already as requested'}"
        return Outcome("ok", msg=msg, result=result)
