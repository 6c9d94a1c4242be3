"""`apt` and `package`: make packages present, absent or latest, in one remote command.

The script asks the package database first (dpkg-query, rpm -q, apk info) and runs the
package manager only for what differs (the apt part, with everything Ansible's apt module
takes, is `package_apt`). Each change is printed as a marker line (`__mr__ install NAME`),
done or, in check mode, planned; `interpret()` reads them back. `package` passes its
backend's own arguments through, as Ansible's does: an argument the host's manager does not
take fails the task on that host, naming it.
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
from machineroom.modules.package_apt import (
    APT_ALIASES,
    APT_PROPS,
    MARK,
    NAMES,
    apt_script,
    each,
    names_of,
    present_loop,
    split_spec,
)

_LIST = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
# dnf/yum/zypper/apk arguments `package` passes on (those with an effect are used below)
OTHER_PROPS: dict[str, Any] = {
    "enablerepo": _LIST,
    "disablerepo": _LIST,
    "disable_gpg_check": {"type": "boolean"},
    "exclude": _LIST,
    "releasever": {"type": "string"},
    "install_weak_deps": {"type": "boolean"},
    "allowerasing": {"type": "boolean"},
    "skip_broken": {"type": "boolean"},
    "nobest": {"type": "boolean"},
    "security": {"type": "boolean"},
    "bugfix": {"type": "boolean"},
    "conf_file": {"type": "string"},
    "disable_plugin": _LIST,
    "enable_plugin": _LIST,
    "installroot": {"type": "string"},
    "download_only": {"type": "boolean"},
    "cacheonly": {"type": "boolean"},
    "validate_certs": {"type": "boolean"},
    "repository": _LIST,
    "no_cache": {"type": "boolean"},
    "available": {"type": "boolean"},
    "world": {"type": "string"},
    "extra_args": {"type": "string"},
    "oldpackage": {"type": "boolean"},
    "disable_recommends": {"type": "boolean"},
    "type": {"type": "string"},
}
# what each backend takes, besides name/state/use (Ansible's module of that name)
_COMMON = {"name", "state", "use", "update_cache", "allow_downgrade", "autoremove"}
_TAKES = {
    "apt": {*APT_PROPS, "use"},
    "dnf": {*_COMMON, "enablerepo", "disablerepo", "disable_gpg_check", "exclude"}
    | {"releasever", "install_weak_deps", "allowerasing", "skip_broken", "nobest", "security"}
    | {"bugfix", "conf_file", "disable_plugin", "enable_plugin", "installroot", "download_only"}
    | {"cacheonly", "validate_certs", "lock_timeout"},
    "apk": {*_COMMON, "repository", "no_cache", "available", "world"},
    "zypper": {*_COMMON, "disable_gpg_check", "extra_args", "oldpackage", "type"}
    | {"disable_recommends"},
}
_TAKES["yum"] = _TAKES["dnf"]


def _words(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else list(value or [])
    return [w.strip() for item in items for w in str(item).split(",") if w.strip()]


def _rpm_options(manager: str, args: Mapping[str, Any]) -> str:
    """dnf/yum/zypper/apk flags from the arguments that have one."""
    opts: list[str] = []
    if manager in ("dnf", "yum"):
        opts += [f"--enablerepo={r}" for r in _words(args.get("enablerepo"))]
        opts += [f"--disablerepo={r}" for r in _words(args.get("disablerepo"))]
        opts += [f"--exclude={r}" for r in _words(args.get("exclude"))]
        opts += [f"--enableplugin={r}" for r in _words(args.get("enable_plugin"))]
        opts += [f"--disableplugin={r}" for r in _words(args.get("disable_plugin"))]
        flags = {
            "disable_gpg_check": "--nogpgcheck",
            "skip_broken": "--skip-broken",
            "nobest": "--nobest",
            "allowerasing": "--allowerasing",
            "security": "--security",
            "bugfix": "--bugfix",
            "cacheonly": "--cacheonly",
            "download_only": "--downloadonly",
            "update_cache": "--refresh",
        }
        opts += [flag for key, flag in flags.items() if args.get(key)]
        if args.get("releasever"):
            opts.append(f"--releasever={args['releasever']}")
        if args.get("install_weak_deps") is False:
            opts.append("--setopt=install_weak_deps=False")
        if args.get("conf_file"):
            opts += ["-c", str(args["conf_file"])]
        if args.get("installroot"):
            opts.append(f"--installroot={args['installroot']}")
    elif manager == "zypper":
        if args.get("disable_gpg_check"):
            opts.append("--no-gpg-checks")
    elif manager == "apk":
        opts += [f"--repository={r}" for r in _words(args.get("repository"))]
        if args.get("no_cache"):
            opts.append("--no-cache")
    return " ".join(quote(o) for o in opts)


# Other package managers: (installed-version test, install, upgrade, remove) as sh.
_OTHERS = {
    "dnf": (
        "rpm -q --qf '%{VERSION}-%{RELEASE}' 2>/dev/null",
        "dnf -y install",
        "dnf -y upgrade",
        "dnf -y remove",
    ),
    "yum": (
        "rpm -q --qf '%{VERSION}-%{RELEASE}' 2>/dev/null",
        "yum -y install",
        "yum -y update",
        "yum -y remove",
    ),
    "zypper": (
        "rpm -q --qf '%{VERSION}-%{RELEASE}' 2>/dev/null",
        "zypper -n install",
        "zypper -n update",
        "zypper -n remove",
    ),
    "apk": ("apk info -e", "apk add", "apk add -u", "apk del"),
}


def other_script(manager: str, args: Mapping[str, Any], check: bool) -> str:
    """The dnf/yum/zypper/apk part: present, absent, latest (latest compares `rpm -qa`)."""
    test, install, upgrade, remove = _OTHERS[manager]
    opts = _rpm_options(manager, args)
    if opts:
        install, upgrade, remove = (f"{c} {opts}" for c in (install, upgrade, remove))
    specs = names_of(args)
    state = args.get("state") or "present"
    lister = "apk info -v 2>/dev/null | sort" if manager == "apk" else "rpm -qa | sort"
    # apk info -e prints the name, not the version: any output means installed.
    fn = f'__mr_ver() {{ __mr_o=$({test} "$1") && [ -n "$__mr_o" ] && echo "$__mr_o"; }}'
    lines = [fn]
    if args.get("update_cache") and not check and manager in ("apk", "zypper"):
        lines.append("apk update >&2 || exit 1" if manager == "apk" else "zypper -n refresh >&2")
    if state in ("present", "installed", "latest"):
        lines.append(present_loop(specs, "__mr_ver"))
        act = each("install")
        if not check:
            act = f'{install} "$@" >&2 || exit 1; {act}'
        lines.append(f'if [ "$#" -gt 0 ]; then {act}; fi')
    if state == "latest" and not check:
        names = " ".join(quote(split_spec(s)[0]) for s in specs)
        lines.append(
            f"__mr_b=$({lister}); {upgrade} {names} >&2 || exit 1; "
            f'[ "$__mr_b" != "$({lister})" ] && echo {MARK} upgrade {quote(",".join(specs))}'
        )
    if state in ("absent", "removed"):
        lines.append("set --")
        for spec in specs:
            name = split_spec(spec)[0]
            lines.append(f'[ -n "$(__mr_ver {quote(name)})" ] && set -- "$@" {quote(name)}')
        act = each("remove")
        if not check:
            act = f'{remove} "$@" >&2 || exit 1; {act}'
        lines.append(f'if [ "$#" -gt 0 ]; then {act}; fi')
    lines.append("exit 0")
    return "\n".join(lines)


def package_outcome(output: CommandOutput, check: bool) -> Outcome:
    """Read the marker lines: what was (or would be) installed, upgraded, removed; the
    lists' timestamp (`cache_update_time`) and whether they were refreshed."""
    changes: dict[str, list[str]] = {}
    log = []
    cache_time: int | None = None
    for line in output.stdout.splitlines():
        if line.startswith(MARK + " "):
            _, action, what = ([*line.split(" ", 2), "", ""])[:3]
            if action == "cache_time":
                cache_time = int(what) if what.isdigit() else None
            else:
                changes.setdefault(action, []).append(what)
        else:
            log.append(line)
    stdout = "\n".join(log)
    result: dict[str, Any] = {
        "rc": output.exit_code,
        "stdout": stdout,
        "stderr": output.stderr,
        "stdout_lines": log,
        "stderr_lines": output.stderr.splitlines(),
        "changes": changes,
        "cache_updated": "update_cache" in changes,
    }
    if cache_time is not None:
        result["cache_update_time"] = cache_time
    if output.exit_code != 0:
        tail = [ln for ln in output.stderr.splitlines() if ln.strip()][-3:]
        return Outcome("failed", msg="; ".join(tail) or f"exit {output.exit_code}", result=result)
    if not changes:
        return Outcome("ok", msg="packages already in the requested state", result=result)
    verb = "would " if check else ""
    parts = [
        f"{verb}{action.replace('_', ' ')} {', '.join(w for w in items if w != '.')}".rstrip()
        for action, items in changes.items()
    ]
    return Outcome("changed", msg="; ".join(parts), result=result)


def _refusal(args: Mapping[str, Any]) -> str | None:
    """A sentence for argument combinations Ansible's apt refuses, else None."""
    if args.get("deb") and (args.get("state") or "present") not in ("present", "installed"):
        return "deb only supports state=present"
    specs = names_of(args)
    if "*" in specs and len(specs) > 1 and args.get("state") == "latest":
        return "unable to install additional packages when upgrading all installed packages"
    bad = [s for s in specs if s.count("=") > 1]
    if bad:
        return f"invalid package spec: {bad[0]}"
    return None


class AptModule(Module):
    """`apt`: Debian packages through apt-get, as Ansible's apt module (see package_apt).

    present installs only the missing names (`name=1.2*` pins a version glob); latest
    installs or upgrades what `apt-get -s install` says it would; absent removes (or purges)
    installed ones; `deb` installs a file unless that version is installed; `upgrade`
    upgrades the system. `update_cache` runs `apt-get update`, only when the lists are older
    than `cache_valid_time` seconds. Changed when anything was (would be) done.
    """

    name: ClassVar[str] = "apt"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": APT_PROPS,
        "additionalProperties": False,
        "x-aliases": APT_ALIASES,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """One script: check with dpkg-query, then apt-get only for what differs."""
        refusal = _refusal(args)
        if refusal:
            return RemoteStep(f"echo {quote(refusal)} >&2; exit 2")
        head = "command -v apt-get >/dev/null 2>&1 || { echo 'apt-get not found' >&2; exit 2; }"
        return RemoteStep(head + "\n" + apt_script(args, ctx.check))

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Changed when a marker line says something was installed, removed or updated."""
        return package_outcome(output, ctx.check)


class PackageModule(Module):
    """`package`: present/absent/latest with whichever manager the host has.

    apt-get, dnf, yum, apk or zypper, chosen in the same script by what exists (in that
    order), or the one `use` names. On apt hosts it is the `apt` module with every apt
    argument; elsewhere present/absent ask rpm or apk first, and latest compares the
    installed package list before and after the upgrade (in check mode latest reports only
    the missing packages on non-apt hosts). An argument the chosen manager does not take
    fails the task there, naming it, as Ansible's backend modules do.
    """

    name: ClassVar[str] = "package"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            **APT_PROPS,
            **OTHER_PROPS,
            "name": NAMES,
            "state": {
                "enum": ["present", "installed", "absent", "removed", "latest"],
                "default": "present",
            },
            "use": {
                "enum": ["auto", "apt", "dnf", "dnf5", "yum", "apk", "zypper"],
                "default": "auto",
            },
        },
        "required": ["name"],
        "additionalProperties": False,
        "x-aliases": {"pkg": "name"},
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """`if command -v apt-get; then ...; elif dnf ...` in one script."""
        use = args.get("use") or "auto"
        use = "dnf" if use == "dnf5" else use
        refusal = _refusal(args)
        if refusal:
            return RemoteStep(f"echo {quote(refusal)} >&2; exit 2")
        parts: list[str] = []
        for manager in ("apt", "dnf", "yum", "apk", "zypper"):
            if use not in ("auto", manager):
                continue
            extra = sorted(k for k in args if k not in _TAKES[manager] and args[k] is not None)
            if extra:
                text = f"package ({manager}): unsupported parameters: {', '.join(extra)}"
                script = f"echo {quote(text)} >&2; exit 2"
            elif manager == "apt":
                script = apt_script(args, ctx.check)
            else:
                script = other_script(manager, args, ctx.check)
            binary = "apt-get" if manager == "apt" else manager
            word = "if" if not parts else "elif"
            parts.append(f"{word} command -v {binary} >/dev/null 2>&1; then\n{script}")
        parts.append("else\necho 'no supported package manager found' >&2; exit 2\nfi")
        return RemoteStep("\n".join(parts))

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Changed when a marker line says something was installed, removed or upgraded."""
        return package_outcome(output, ctx.check)
