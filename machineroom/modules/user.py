"""`user` and `group`: accounts through useradd/usermod/userdel and groupadd/groupmod/groupdel.

One remote command: the script reads `getent passwd|group|shadow` first, builds the argument
list of only the attributes that differ (in "$@", so every value stays one quoted word), runs
the tool once when the list is not empty, and prints a marker line per change
(`__mr__ change shell /bin/sh`: the old value follows) for `interpret()`.
"""

from __future__ import annotations

import math
import re
import time
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


def _info(output: CommandOutput) -> dict[str, str]:
    """`__mr__ info KEY VALUE` lines -> {key: value} (what the host says after the change)."""
    found: dict[str, str] = {}
    for line in output.stdout.splitlines():
        if line.startswith(f"{MARK} info "):
            _, _, key, *value = line.split(" ", 3)
            found[key] = value[0] if value else ""
    return found


def _warnings(output: CommandOutput) -> list[str]:
    """`__mr__ warn TEXT` lines, Ansible's module warnings."""
    prefix = f"{MARK} warn "
    return [ln[len(prefix) :] for ln in output.stdout.splitlines() if ln.startswith(prefix)]


def _refuse(message: str) -> InputError:
    return InputError(f"user: {message}")


def _local_guard(tool: str) -> str:
    """sh for `local: true`: Ansible's message when libuser's tool is missing; machineroom
    does not drive libuser, so a host that has it is refused too (clearly, nothing changed)."""
    return (
        f"command -v {tool} >/dev/null 2>&1 || {{ printf 'Failed to find required executable "
        f'"{tool}" in paths: %s\\n\' "$PATH" >&2; exit 1; }}\n'
        f"echo 'local: true (libuser {tool}) is not implemented by machineroom; "
        "use local: false (shadow-utils) or the ansible fallback' >&2; exit 1"
    )


_READ_SHADOW = (
    '__mr_sh=$(getent shadow "$__mr_u")\n'
    "IFS=: read -r __mr_sn __mr_pw __mr_last __mr_min __mr_max __mr_warn __mr_inact __mr_exp "
    "__mr_rest <<__MR_EOF__\n$__mr_sh\n__MR_EOF__"
)
_READ_PASSWD = (
    "IFS=: read -r __mr_n __mr_x __mr_uid __mr_gid __mr_gecos __mr_home __mr_shell "
    "<<__MR_EOF__\n$__mr_ent\n__MR_EOF__"
)


_HASH_CHARS = re.compile(r"[^a-zA-Z0-9./=]")
# crypt(3) ids whose hash part has a fixed length: md5, sha256, sha512, yescrypt
_HASH_LENGTHS = {"1": 22, "5": 43, "6": 86, "y": 43}


def looks_unhashed(password: str) -> bool:
    """Whether `password` looks like plain text rather than a crypt(3) hash, by Ansible's
    check_password_encrypted rules ('*', '!' and '*************' are placeholders)."""
    if password in ("", "*", "!", "*************"):
        return False
    if any(char in password for char in ":*!") or "$" not in password:
        return True
    fields = password.split("$")
    if len(fields) < 3:
        return True
    if _HASH_CHARS.search(fields[-1]):
        return True
    want = _HASH_LENGTHS.get(fields[1])
    return want is not None and len(fields[-1]) != want


def path_word(value: object) -> str:
    """A `path` argument as one sh word, `~` expanded on the host as Ansible's module does
    (`shell: ~/bin/sh` is the login user's home, `~name/x` that user's home)."""
    text = str(value)
    if not text.startswith("~"):
        return quote(text)
    user, sep, rest = text[1:].partition("/")
    home = '"$HOME"' if not user else f'"$(getent passwd {quote(user)} | cut -d: -f6)"'
    return home + (quote(sep + rest) if sep else "")


def expiry(expires: float) -> tuple[int, str] | None:
    """Ansible's `expires` (seconds since the epoch) -> (days since the epoch as shadow keeps
    them, the date useradd/usermod -e takes); None for a negative value: no expiry."""
    if expires < 0:
        return None
    when = time.gmtime(expires)
    return math.floor(expires) // 86400, time.strftime("%Y-%m-%d", when)


class UserModule(Module):
    """`user` as Ansible's on Linux (shadow-utils): useradd, one usermod with the differing
    attributes, userdel; chage for password ageing; ssh-keygen for `generate_ssh_key`.

    Present: creates the account with useradd, or runs one usermod with what differs (uid,
    group, groups, comment, home, shell, expiry, lock, password, inactive days). Then, for an
    account that exists: `chage` for the ageing fields that differ, the ssh key when asked,
    and the account as the host now has it (Ansible's result keys). `system`, `create_home`,
    `skeleton`, `umask`, `seuser`, `uid_min`/`uid_max` apply at creation only, as in Ansible.
    """

    name: ClassVar[str] = "user"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "name": _NAME,
            "state": {"enum": ["present", "absent"], "default": "present"},
            "uid": {"type": "integer", "minimum": 0},
            "non_unique": {"type": "boolean", "default": False},
            "group": {"type": ["string", "integer"]},
            "groups": {
                "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]
            },
            "append": {"type": "boolean", "default": False},
            "shell": {"type": "string"},
            "home": {"type": "string"},
            "create_home": {"type": "boolean", "default": True},
            "skeleton": {"type": "string"},
            "umask": {"type": "string", "pattern": "^[0-7]{3,4}$"},
            "move_home": {"type": "boolean", "default": False},
            "system": {"type": "boolean", "default": False},
            "uid_min": {"type": "integer", "minimum": 0},
            "uid_max": {"type": "integer", "minimum": 0},
            "password": {"type": "string"},
            "update_password": {"enum": ["always", "on_create"], "default": "always"},
            "password_lock": {"type": "boolean"},
            "expires": {"type": "number"},
            "password_expire_max": {"type": "integer"},
            "password_expire_min": {"type": "integer"},
            "password_expire_warn": {"type": "integer"},
            "password_expire_account_disable": {"type": "integer"},
            "comment": {"type": "string"},
            "seuser": {"type": "string"},
            "remove": {"type": "boolean", "default": False},
            "force": {"type": "boolean", "default": False},
            "local": {"type": "boolean"},
            "generate_ssh_key": {"type": "boolean"},
            "ssh_key_bits": {"type": "integer", "minimum": 0, "default": 0},
            "ssh_key_type": {"type": "string", "pattern": "^[a-z0-9-]+$", "default": "rsa"},
            "ssh_key_file": {"type": "string"},
            "ssh_key_comment": {"type": "string"},
            "ssh_key_passphrase": {"type": "string"},
            # macOS only: ignored here with a warning, as Linux has no login window.
            "hidden": {"type": "boolean"},
            # BSD and Solaris/illumos only: refused with a message when given.
            "login_class": {"type": "string"},
            "profile": {"type": "string"},
            "authorization": {"type": "string"},
            "role": {"type": "string"},
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
        self._refuse_other_systems(args)
        user = quote(args["name"])
        lines = [f"__mr_u={user}"]
        if args.get("local"):
            for key in ("umask", "uid_min", "uid_max"):
                if args.get(key) is not None:
                    raise _refuse(f"'{key}' can not be used with 'local'")
            tool = "luserdel" if args.get("state") == "absent" else "luseradd"
            return RemoteStep("\n".join([*lines, _local_guard(tool)]))
        lines.append('__mr_ent=$(getent passwd "$__mr_u")')
        if args.get("state", "present") == "absent":
            opts = " ".join(o for o, on in (("-r", "remove"), ("-f", "force")) if args.get(on))
            run = "" if ctx.check else f'userdel {opts} -- "$__mr_u" >&2 || exit 1; '
            lines.append(f'if [ -n "$__mr_ent" ]; then {run}{_change("remove", "")}; fi')
            lines.append("exit 0")
            return RemoteStep("\n".join(lines))
        if args.get("hidden") is not None:
            lines.append(f"echo '{MARK} warn hidden is macOS only: ignored on this host'")
        lines += [
            'if [ -z "$__mr_ent" ]; then',
            *self._create(args, ctx),
            "else",
            *self._modify(args, ctx),
            "fi",
            '__mr_ent=$(getent passwd "$__mr_u")',
            'if [ -n "$__mr_ent" ]; then',
            _READ_PASSWD,
            *(self._missing_home(args, ctx) if args.get("create_home", True) else []),
            *self._ageing(args, ctx),
            *(self._ssh_key(args, ctx) if args.get("generate_ssh_key") else []),
            f"printf '{MARK} info entry %s\\n' \"$__mr_ent\"",
            "fi",
            "exit 0",
        ]
        stdin = None
        if args.get("generate_ssh_key") and args.get("ssh_key_passphrase") is not None:
            # on stdin, so the passphrase is not in the script text machineroom may record
            stdin = (str(args["ssh_key_passphrase"]) + "\n").encode()
        return RemoteStep("\n".join(lines), stdin=stdin)

    @staticmethod
    def _refuse_other_systems(args: Mapping[str, Any]) -> None:
        for key, system in (
            ("profile", "Solaris/illumos"),
            ("authorization", "Solaris/illumos"),
            ("role", "Solaris/illumos"),
            ("login_class", "BSD"),
        ):
            if args.get(key) is not None:
                raise _refuse(
                    f"'{key}' is a {system} option (useradd -P/-A/-R/-L there); machineroom "
                    "drives Linux shadow-utils only: remove it, or run the task with the "
                    "ansible fallback on that system"
                )

    def _password_arg(self, args: Mapping[str, Any]) -> str:
        password = str(args["password"])
        return quote("!" + password if args.get("password_lock") else password)

    def _create(self, args: Mapping[str, Any], ctx: ModuleContext) -> list[str]:
        """sh: useradd's arguments, as Ansible's create_user_useradd builds them."""
        create = ["set --"]

        def add(*words: str) -> None:
            create.append('set -- "$@" ' + " ".join(words))

        if args.get("uid") is not None:
            add("-u", quote(args["uid"]), *(["-o"] if args.get("non_unique") else []))
        if args.get("seuser") is not None:
            add("-Z", quote(args["seuser"]))
        if args.get("group") is not None:
            add("-g", quote(args["group"]))
        else:
            # a group named like the user exists: useradd would refuse to make it (Ansible: -N)
            create.append('if getent group "$__mr_u" >/dev/null; then set -- "$@" -N; fi')
        groups = self.groups_list(args)
        if groups:
            add("-G", quote(",".join(groups)))
        if args.get("comment") is not None:
            add("-c", quote(args["comment"]))
        for flag, key in (("-d", "home"), ("-s", "shell")):
            if args.get(key) is not None:
                add(flag, path_word(args[key]))
        if args.get("expires") is not None:
            when = expiry(float(args["expires"]))
            add("-e", quote(when[1]) if when else "''")
        if args.get("password_expire_account_disable") is not None:
            add("-f", quote(args["password_expire_account_disable"]))
        if args.get("password") is not None:
            add("-p", self._password_arg(args))
        if args.get("create_home", True):
            add("-m")
            if args.get("skeleton") is not None:
                add("-k", path_word(args["skeleton"]))
            if args.get("umask") is not None:
                add("-K", quote("UMASK=" + str(args["umask"])))
        else:
            add("-M")
        if args.get("system"):
            add("-r")
        for key, setting in (("uid_min", "UID_MIN"), ("uid_max", "UID_MAX")):
            if args.get(key) is not None:
                add("-K", quote(f"{setting}={args[key]}"))
        run = "" if ctx.check else 'useradd "$@" -- "$__mr_u" >&2 || exit 1; '
        create.append(f"{run}{_change('create', '')}")
        return create

    def _modify(self, args: Mapping[str, Any], ctx: ModuleContext) -> list[str]:
        """sh: one usermod carrying only what differs from `getent passwd|shadow|group`."""
        modify = [_READ_PASSWD, _READ_SHADOW, "set --"]
        if args.get("uid") is not None:
            uid = quote(args["uid"])
            unique = " -o" if args.get("non_unique") else ""
            modify.append(
                f'[ "$__mr_uid" = {uid} ] || {{ set -- "$@" -u {uid}{unique}; '
                f"{_change('uid', '$__mr_uid')}; }}"
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
                word = quote(args[key]) if key == "comment" else path_word(args[key])
                modify.append(
                    f'[ "${var}" = {word} ] || {{ set -- "$@" {flag} '
                    f"{word}; {_change(key, '$' + var)}; }}"
                )
        if args.get("home") is not None:
            move = " -m" if args.get("move_home") else ""
            word = path_word(args["home"])
            modify.append(
                f'[ "$__mr_home" = {word} ] || {{ set -- "$@" -d '
                f"{word}{move}; {_change('home', '$__mr_home')}; }}"
            )
        if args.get("expires") is not None:
            when = expiry(float(args["expires"]))
            # no shadow entry at all reads as day 0, as Ansible's user_password() gives it
            modify.append('[ -n "$__mr_sh" ] || __mr_exp=0')
            if when is None:  # no expiry: an empty field (or a negative one) is already so
                modify.append(
                    "case $__mr_exp in ''|-*) ;; *) set -- \"$@\" -e ''; "
                    f"{_change('expires', '$__mr_exp')} ;; esac"
                )
            else:
                modify.append(
                    f'[ "$__mr_exp" = {when[0]} ] || {{ set -- "$@" -e {quote(when[1])}; '
                    f"{_change('expires', '$__mr_exp')}; }}"
                )
        if args.get("password_expire_account_disable") is not None:
            days = quote(args["password_expire_account_disable"])
            modify.append(
                f'[ "${{__mr_inact:--1}}" = {days} ] || {{ set -- "$@" -f {days}; '
                f"{_change('password_expire_account_disable', '$__mr_inact')}; }}"
            )
        modify += self._lock_and_password(args)
        modify += self._groups(args)
        run = "" if ctx.check else 'usermod "$@" -- "$__mr_u" >&2 || exit 1; '
        modify.append(f'if [ "$#" -gt 0 ]; then {run}:; fi')
        return modify

    def _lock_and_password(self, args: Mapping[str, Any]) -> list[str]:
        """sh: -L/-U from the hash's leading '!', and -p when the hash (without '!') differs;
        a new hash carries the lock itself, so it replaces -L/-U (as Ansible does)."""
        lines = ["__mr_lock="]
        lock = args.get("password_lock")
        if lock is True:
            lines.append(
                "case $__mr_pw in '!'*) ;; *) __mr_lock=-L; "
                f"{_change('password_lock', 'unlocked')} ;; esac"
            )
        elif lock is False:
            lines.append(
                "case $__mr_pw in '!'*) __mr_lock=-U; "
                f"{_change('password_lock', 'locked')} ;; *) ;; esac"
            )
        if args.get("password") is not None and args.get("update_password") != "on_create":
            bare = quote(str(args["password"]).lstrip("!"))
            lines.append(
                "__mr_bare=$(printf '%s' \"$__mr_pw\" | sed 's/^!*//'); "
                f'[ "$__mr_bare" = {bare} ] || {{ __mr_lock=; set -- "$@" -p '
                f"{self._password_arg(args)}; {_change('password', '')}; }}"
            )
        lines.append('[ -z "$__mr_lock" ] || set -- "$@" "$__mr_lock"')
        return lines

    def _groups(self, args: Mapping[str, Any]) -> list[str]:
        groups = self.groups_list(args)
        if groups is None:
            return []
        want = quote(",".join(groups))
        append = bool(args.get("append"))
        return [
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
        ]

    def _missing_home(self, args: Mapping[str, Any], ctx: ModuleContext) -> list[str]:
        """sh: an existing account's missing home made as Ansible's create_homedir does: a
        copy of the skeleton (or an empty folder), mode from login.defs' HOME_MODE or UMASK
        (0755 without either), owned by the user."""
        skel = path_word(args["skeleton"]) if args.get("skeleton") is not None else "/etc/skel"
        make = (
            ""
            if ctx.check
            else (
                f"__mr_skel={skel}; "
                'mkdir -p -- "$(dirname -- "$__mr_home")" && '
                'if [ -d "$__mr_skel" ]; then cp -a -- "$__mr_skel" "$__mr_home"; '
                'else mkdir -- "$__mr_home"; fi && '
                "__mr_mode=$(awk '$1==\"HOME_MODE\" && NF==2 {print $2; exit}' "
                "/etc/login.defs 2>/dev/null); "
                'if [ -z "$__mr_mode" ]; then '
                "__mr_um=$(awk '$1==\"UMASK\" && NF==2 {u=$2} END {print u}' "
                "/etc/login.defs 2>/dev/null); "
                'if [ -n "$__mr_um" ]; then __mr_mode=$(printf %o $((0777 & ~0$__mr_um))); '
                "else __mr_mode=755; fi; fi && "
                'chmod "$__mr_mode" -- "$__mr_home" && '
                'chown -R "$__mr_uid:$__mr_gid" -- "$__mr_home" || exit 1; '
            )
        )
        return [f'if [ ! -d "$__mr_home" ]; then {make}{_change("home_created", "")}; fi']

    def _ageing(self, args: Mapping[str, Any], ctx: ModuleContext) -> list[str]:
        """sh: one chage for the password ageing fields that differ (shadow fields 4-6; an
        empty field reads -1, as Python's spwd gives it to Ansible)."""
        wanted = [
            (flag, key, var)
            for flag, key, var in (
                ("-m", "password_expire_min", "__mr_min"),
                ("-M", "password_expire_max", "__mr_max"),
                ("-W", "password_expire_warn", "__mr_warn"),
            )
            if args.get(key) is not None
        ]
        if not wanted:
            return []
        lines = [_READ_SHADOW, "set --"]
        for flag, key, var in wanted:
            days = quote(args[key])
            lines.append(
                f'[ "${{{var}:--1}}" = {days} ] || {{ set -- "$@" {flag} {days}; '
                f"{_change(key, '$' + var)}; }}"
            )
        run = "" if ctx.check else 'chage "$@" -- "$__mr_u" >&2 || exit 1; '
        lines.append(f'if [ "$#" -gt 0 ]; then {run}:; fi')
        return lines

    def _ssh_key(self, args: Mapping[str, Any], ctx: ModuleContext) -> list[str]:
        """sh: ssh-keygen as Ansible's ssh_key_gen (an existing key is kept unless `force`),
        then the fingerprint, file and public key for the result."""
        key_type = str(args.get("ssh_key_type") or "rsa")
        path = str(args.get("ssh_key_file") or f".ssh/id_{key_type}")
        name = str(args["name"])
        lines = [f"__mr_kf={path_word(path)}"]
        if not path.startswith(("/", "~")):
            lines.append('__mr_kf="$__mr_home/$__mr_kf"')
            if not ctx.check:
                missing = quote(f"User {name} home directory does not exist")
                lines.append(f'[ -d "$__mr_home" ] || {{ echo {missing} >&2; exit 1; }}')
        comment = (
            quote(args["ssh_key_comment"])
            if args.get("ssh_key_comment") is not None
            else '"ansible-generated on $(uname -n)"'
        )
        bits = int(args.get("ssh_key_bits") or 0)
        keygen = (
            f"ssh-keygen -q -t {quote(key_type)}{f' -b {bits}' if bits > 0 else ''} "
            f'-C {comment} -f "$__mr_kf" -N "$__mr_pass" </dev/null >&2 || exit 1'
        )
        force = bool(args.get("force"))
        lines += [
            "__mr_pass=",
            *(["IFS= read -r __mr_pass || :"] if args.get("ssh_key_passphrase") else []),
            "__mr_gen=1",
            'for __mr_f in "$__mr_kf" "$__mr_kf.pub"; do [ -e "$__mr_f" ] || continue',
        ]
        if force:
            lines.append(
                f'  printf \'{MARK} warn Overwriting existing ssh key file "%s"\\n\' "$__mr_f"'
            )
            if not ctx.check:
                lines.append('  rm -f -- "$__mr_f"')
        else:
            lines.append(
                f'  printf \'{MARK} warn Found existing ssh key file "%s", no force, so '
                'skipping ssh-keygen generation\\n\' "$__mr_f"; __mr_gen=; break'
            )
        lines.append("done")
        lines.append('if [ -n "$__mr_gen" ]; then')
        if not ctx.check:
            lines += [
                '  __mr_kd=$(dirname -- "$__mr_kf")',
                '  [ -d "$__mr_kd" ] || { mkdir -m 0700 -- "$__mr_kd" && '
                'chown "$__mr_uid:$__mr_gid" "$__mr_kd"; } >&2 || exit 1',
                f"  {keygen}",
                '  chown "$__mr_uid:$__mr_gid" "$__mr_kf" "$__mr_kf.pub" >&2 || exit 1',
            ]
        lines += [f"  {_change('ssh_key', '')}", "fi"]
        lines += [
            f"printf '{MARK} info ssh_key_file %s\\n' \"$__mr_kf\"",
            '[ ! -e "$__mr_kf" ] || printf '
            f'\'{MARK} info ssh_fingerprint %s\\n\' "$(ssh-keygen -l -f "$__mr_kf")"',
            '[ ! -e "$__mr_kf.pub" ] || printf '
            f'\'{MARK} info ssh_public_key %s\\n\' "$(cat "$__mr_kf.pub")"',
        ]
        return lines

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Changed when the account was created, removed or had an attribute changed."""
        changes, _ = _read_changes(output)
        name = args["name"]
        state = args.get("state", "present")
        result = self._result(args, ctx, output, changes)
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

    def _result(
        self,
        args: Mapping[str, Any],
        ctx: ModuleContext,
        output: CommandOutput,
        changes: Mapping[str, str],
    ) -> dict[str, Any]:
        """Ansible's result keys: the account as the host has it after the task (uid, group
        as the gid, comment, home, shell), what was asked (groups, system, create_home,
        append, move_home, force, remove) and the ssh key's file, fingerprint, public key."""
        state = args.get("state", "present")
        result: dict[str, Any] = {"name": args["name"], "state": state}
        result["changes"] = sorted(changes)
        for key in ("uid", "group", "groups", "shell", "home", "comment"):
            if args.get(key) is not None:
                result[key] = args[key]
        if state == "absent":
            if "remove" in changes:
                result["force"] = bool(args.get("force"))
                result["remove"] = bool(args.get("remove"))
            return result
        if "create" in changes:
            result["system"] = bool(args.get("system"))
            result["create_home"] = bool(args.get("create_home", True))
        else:
            result["append"] = bool(args.get("append"))
            result["move_home"] = bool(args.get("move_home"))
        if args.get("groups") is not None:
            result["groups"] = ",".join(self.groups_list(args) or [])
        if args.get("password") is not None:
            result["password"] = "NOT_LOGGING_PASSWORD"
        info = _info(output)
        entry = info.pop("entry", "").split(":")
        if len(entry) == 7:
            result["uid"], result["group"] = int(entry[2]), int(entry[3])
            result["comment"], result["home"], result["shell"] = entry[4], entry[5], entry[6]
        result.update(info)
        warnings = _warnings(output)
        if args.get("password") is not None and looks_unhashed(str(args["password"])):
            warnings.append(
                "The input password appears not to have been hashed. The 'password' argument "
                "must be encrypted for this module to work properly."
            )
        if warnings:
            result["warnings"] = warnings
        return result
