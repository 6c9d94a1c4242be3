"""`user` and `group`: accounts through useradd/usermod/userdel and groupadd/groupmod/groupdel.

One remote command: the script reads `getent passwd|group|shadow` first, builds the argument
list of only the attributes that differ (in "$@", so every value stays one quoted word), runs
the tool once when the list is not empty, and prints a marker line per change
(`__mr__ change shell /bin/sh`: the old value follows) for `interpret()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.modules.base import (
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)

MARK = "__mr__"
_NAME = {"type": "string", "minLength": 1, "pattern": "^[^-:\\s][^:\\s]*$"}


def _change(field: str, old: str) -> str:
    """sh: print the marker for a changed field with its old value."""
    return f"printf '{MARK} change {field} %s\\n' \"{old}\""


def _read_changes(output: CommandOutput) -> tuple[dict[str, str], list[str]]:
    """Marker lines -> ({field: old value}, other stdout lines)."""
    changes: dict[str, str] = {}
    rest = []
    for line in output.stdout.splitlines():
        if line.startswith(f"{MARK} change "):
            _, _, field, *old = line.split(" ", 3)
            changes[field] = old[0] if old else ""
        else:
            rest.append(line)
    return changes, rest


def _failed(output: CommandOutput, result: dict[str, Any]) -> Outcome:
    tail = [ln for ln in output.stderr.splitlines() if ln.strip()][-3:]
    return Outcome("failed", msg="; ".join(tail) or f"exit {output.exit_code}", result=result)


def _diff(kind: str, name: str, changes: Mapping[str, str], new: Mapping[str, Any]) -> str:
    """A small before/after text of the changed attributes (password hashes hidden)."""
    if not changes:
        return ""
    lines = [f"--- {kind} {name} (before)", f"+++ {kind} {name} (after)"]
    for field, old in changes.items():
        if field in ("create", "remove"):
            lines.append(f"{'+' if field == 'create' else '-'}{kind} {name}")
            continue
        value = new.get(field, "")
        if field == "password":
            old, value = "********", "******** (new)"
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        lines += [f"-{field}: {old}", f"+{field}: {value}"]
    return "\n".join(lines) + "\n"


class UserModule(Module):
    """`user`: name, state, uid, group, groups, append, shell, home, create_home, move_home,
    system, password (an already-hashed string, as Ansible), update_password, comment,
    remove, force.

    Present: creates the account with useradd, or runs one usermod with the differing
    attributes. `groups` replaces the supplementary groups unless `append`. Absent: userdel
    (`-r` with remove, `-f` with force). `system`, `create_home` apply only at creation.
    """

    name: ClassVar[str] = "user"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "name": _NAME,
            "state": {"enum": ["present", "absent"], "default": "present"},
            "uid": {"type": "integer", "minimum": 0},
            "group": {"type": ["string", "integer"]},
            "groups": {
                "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]
            },
            "append": {"type": "boolean", "default": False},
            "shell": {"type": "string"},
            "home": {"type": "string"},
            "create_home": {"type": "boolean", "default": True},
            "move_home": {"type": "boolean", "default": False},
            "system": {"type": "boolean", "default": False},
            "password": {"type": "string"},
            "update_password": {"enum": ["always", "on_create"], "default": "always"},
            "comment": {"type": "string"},
            "remove": {"type": "boolean", "default": False},
            "force": {"type": "boolean", "default": False},
        },
        "required": ["name"],
        "additionalProperties": False,
        # Ansible's names for the same arguments
        "x-aliases": {"user": "name", "createhome": "create_home"},
    }

    @staticmethod
    def groups_list(args: Mapping[str, Any]) -> list[str] | None:
        """`groups` as a list ("a,b" or [a, b]); None when not given."""
        raw = args.get("groups")
        if raw is None:
            return None
        items = raw.split(",") if isinstance(raw, str) else [str(g) for g in raw]
        return [g.strip() for g in items if g.strip()]

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """getent first; useradd, one usermod, or userdel only for what differs."""
        user = quote(args["name"])
        lines = [f"__mr_u={user}", '__mr_ent=$(getent passwd "$__mr_u")']
        if args.get("state", "present") == "absent":
            opts = " ".join(o for o, on in (("-r", "remove"), ("-f", "force")) if args.get(on))
            run = "" if ctx.check else f'userdel {opts} -- "$__mr_u" >&2 || exit 1; '
            lines.append(f'if [ -n "$__mr_ent" ]; then {run}{_change("remove", "")}; fi')
            lines.append("exit 0")
            return RemoteStep("\n".join(lines))

        groups = self.groups_list(args)
        create = ["set --"]
        for flag, key in (
            ("-u", "uid"),
            ("-g", "group"),
            ("-c", "comment"),
            ("-d", "home"),
            ("-s", "shell"),
            ("-p", "password"),
        ):
            if args.get(key) is not None:
                create.append(f'set -- "$@" {flag} {quote(args[key])}')
        if groups:
            create.append(f'set -- "$@" -G {quote(",".join(groups))}')
        create.append('set -- "$@" ' + ("-m" if args.get("create_home", True) else "-M"))
        if args.get("system"):
            create.append('set -- "$@" -r')
        run = "" if ctx.check else 'useradd "$@" -- "$__mr_u" >&2 || exit 1; '
        create.append(f"{run}{_change('create', '')}")

        modify = [
            # GECOS may hold anything but ':' and newline: read it whole, backslashes kept.
            "IFS=: read -r __mr_n __mr_x __mr_uid __mr_gid __mr_gecos __mr_home __mr_shell "
            "<<__MR_EOF__\n$__mr_ent\n__MR_EOF__",
            "set --",
        ]
        if args.get("uid") is not None:
            modify.append(
                f'[ "$__mr_uid" = {quote(args["uid"])} ] || {{ set -- "$@" -u '
                f"{quote(args['uid'])}; {_change('uid', '$__mr_uid')}; }}"
            )
        if args.get("group") is not None:
            group = quote(args["group"])
            modify.append(
                f"__mr_g={group}; case $__mr_g in *[!0-9]*|'') "
                '__mr_g=$(getent group "$__mr_g" | cut -d: -f3) ;; esac; '
                f'[ "$__mr_gid" = "$__mr_g" ] || {{ set -- "$@" -g {group}; '
                f"{_change('group', '$(getent group $__mr_gid | cut -d: -f1)')}; }}"
            )
        for flag, key, var in (("-c", "comment", "__mr_gecos"), ("-s", "shell", "__mr_shell")):
            if args.get(key) is not None:
                modify.append(
                    f'[ "${var}" = {quote(args[key])} ] || {{ set -- "$@" {flag} '
                    f"{quote(args[key])}; {_change(key, '$' + var)}; }}"
                )
        if args.get("home") is not None:
            move = " -m" if args.get("move_home") else ""
            modify.append(
                f'[ "$__mr_home" = {quote(args["home"])} ] || {{ set -- "$@" -d '
                f"{quote(args['home'])}{move}; {_change('home', '$__mr_home')}; }}"
            )
        if args.get("password") is not None and args.get("update_password") != "on_create":
            modify.append(
                '__mr_pw=$(getent shadow "$__mr_u" | cut -d: -f2); '
                f'[ "$__mr_pw" = {quote(args["password"])} ] || {{ set -- "$@" -p '
                f"{quote(args['password'])}; {_change('password', '')}; }}"
            )
        if groups is not None:
            want = quote(",".join(groups))
            append = bool(args.get("append"))
            modify.append(
                '__mr_cur=$(getent group | __MR_U="$__mr_u" awk -F: '
                '\'{n=split($4,m,","); for(i=1;i<=n;i++) if(m[i]==ENVIRON["__MR_U"]) '
                '{printf "%s%s", s, $1; s=","}}\'); '
                f"__mr_want={want}; __mr_diff=; __mr_ifs=$IFS; IFS=,; "
                'for __mr_g in $__mr_want; do case ",$__mr_cur," in *",$__mr_g,"*) ;; '
                "*) __mr_diff=1 ;; esac; done; "
                + (
                    ""
                    if append
                    else 'for __mr_g in $__mr_cur; do case ",$__mr_want," in *",$__mr_g,"*) ;; '
                    "*) __mr_diff=1 ;; esac; done; "
                )
                + "IFS=$__mr_ifs; "
                f'[ -z "$__mr_diff" ] || {{ set -- "$@" {"-a " if append else ""}-G {want}; '
                f"{_change('groups', '$__mr_cur')}; }}"
            )
        run = "" if ctx.check else 'usermod "$@" -- "$__mr_u" >&2 || exit 1; '
        modify.append(f'if [ "$#" -gt 0 ]; then {run}:; fi')
        lines += [
            'if [ -z "$__mr_ent" ]; then',
            *create,
            "else",
            *modify,
            "fi",
            "exit 0",
        ]
        return RemoteStep("\n".join(lines))

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Changed when the account was created, removed or had an attribute changed."""
        changes, _ = _read_changes(output)
        name = args["name"]
        state = args.get("state", "present")
        result: dict[str, Any] = {"name": name, "state": state, "changes": sorted(changes)}
        for key in ("uid", "group", "groups", "shell", "home", "comment", "system"):
            if args.get(key) is not None:
                result[key] = args[key]
        if output.exit_code != 0:
            result["stderr"] = output.stderr
            return _failed(output, result)
        diff = _diff("user", name, changes, args)
        would = "would be " if ctx.check else ""
        if "create" in changes:
            return Outcome("changed", msg=f"user {name} {would}created", diff=diff, result=result)
        if "remove" in changes:
            return Outcome("changed", msg=f"user {name} {would}removed", diff=diff, result=result)
        if changes:
            what = ", ".join(sorted(changes))
            verb = "would change" if ctx.check else "changed"
            return Outcome("changed", msg=f"user {name}: {verb} {what}", diff=diff, result=result)
        gone = state == "absent"
        msg = f"user {name} {'does not exist' if gone else 'already as requested'}"
        return Outcome("ok", msg=msg, result=result)


class GroupModule(Module):
    """`group`: name, state, gid, system, via groupadd/groupmod/groupdel after `getent group`."""

    name: ClassVar[str] = "group"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "name": _NAME,
            "state": {"enum": ["present", "absent"], "default": "present"},
            "gid": {"type": "integer", "minimum": 0},
            "system": {"type": "boolean", "default": False},
        },
        "required": ["name"],
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """getent group, then groupadd, groupmod -g or groupdel only when needed."""
        lines = [f"__mr_n={quote(args['name'])}", '__mr_ent=$(getent group "$__mr_n")']
        if args.get("state", "present") == "absent":
            run = "" if ctx.check else 'groupdel -- "$__mr_n" >&2 || exit 1; '
            lines.append(f'if [ -n "$__mr_ent" ]; then {run}{_change("remove", "")}; fi')
        else:
            opts = []
            if args.get("gid") is not None:
                opts.append(f"-g {quote(args['gid'])}")
            if args.get("system"):
                opts.append("-r")
            run = "" if ctx.check else f'groupadd {" ".join(opts)} -- "$__mr_n" >&2 || exit 1; '
            lines.append(f'if [ -z "$__mr_ent" ]; then {run}{_change("create", "")}')
            if args.get("gid") is not None:
                gid = quote(args["gid"])
                run = "" if ctx.check else f'groupmod -g {gid} -- "$__mr_n" >&2 || exit 1; '
                lines.append(
                    f'elif [ "$(echo "$__mr_ent" | cut -d: -f3)" != {gid} ]; then '
                    f"{run}{_change('gid', '$(echo $__mr_ent | cut -d: -f3)')}"
                )
            lines.append("fi")
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
