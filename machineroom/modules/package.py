"""`apt` and `package`: make packages present, absent or latest, in one remote command.

The script asks the package database first (dpkg-query, rpm -q, apk info) and runs the
package manager only for what differs; `latest` asks apt for a simulation (`apt-get -s`),
which lists exactly what an install would upgrade. Each change is printed as a marker line
(`__mr__ install NAME`), done or, in check mode, planned; `interpret()` reads them back.
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
_NAME = {"type": "string", "minLength": 1, "pattern": "^[^-\\s]"}
_NAMES = {"anyOf": [_NAME, {"type": "array", "items": _NAME}]}


def names_of(args: Mapping[str, Any]) -> list[str]:
    """`name` as a list (Ansible accepts a string, a comma-separated string or a list)."""
    raw = args.get("name") or args.get("pkg") or []
    items = [raw] if isinstance(raw, str) else list(raw)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def split_spec(spec: str) -> tuple[str, str | None]:
    """`nginx=1.18*` -> ("nginx", "1.18*"); `nginx` -> ("nginx", None)."""
    name, sep, version = spec.partition("=")
    return name, (version if sep else None)


def _present_loop(specs: list[str], installed_test: str) -> str:
    """sh: put every spec not yet installed (at a matching version) into "$@"."""
    lines = ["set --"]
    for spec in specs:
        name, version = split_spec(spec)
        pattern = quote(version) if version is not None else "'*'"
        # `case $v in $pat` matches a glob held in a variable: never executed.
        lines.append(
            f"__mr_v=$({installed_test} {quote(name)}); __mr_pat={pattern}; "
            f'if [ -z "$__mr_v" ]; then set -- "$@" {quote(spec)}; '
            f'else case "$__mr_v" in $__mr_pat) ;; *) set -- "$@" {quote(spec)} ;; esac; fi'
        )
    return "\n".join(lines)


# sh functions printing the installed version of a package, or nothing.
_DPKG_VERSION = (
    "__mr_dpkg() { __mr_s=$(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' \"$1\" "
    '2>/dev/null) || return 0; case "$__mr_s" in \'ii \'*) echo "${__mr_s##* }" ;; esac; }'
)
_DPKG_REMOVABLE = (
    "__mr_dpkg_rm() { __mr_s=$(dpkg-query -W -f='${db:Status-Abbrev}' \"$1\" 2>/dev/null)"
    ' || return 0; case "$__mr_s" in ii*|iU*|iF*|hi*) echo yes ;;'
    ' rc*) [ "$2" = purge ] && echo yes ;; esac; }'
)


def _each(action: str) -> str:
    """sh: one marker line per argument in "$@"."""
    return f'for __mr_n in "$@"; do printf \'{MARK} {action} %s\\n\' "$__mr_n"; done'


def apt_script(args: Mapping[str, Any], check: bool) -> str:
    """The apt part: cache, then install/remove/upgrade, then autoremove."""
    state = args.get("state") or "present"
    specs = names_of(args)
    opts = [
        "-y",
        "-q",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
    ]
    recommends = args.get("install_recommends")
    if recommends is True:
        opts += ["-o", "APT::Install-Recommends=yes"]
    elif recommends is False:
        opts.append("--no-install-recommends")
    if args.get("allow_downgrade"):
        opts.append("--allow-downgrades")
    opt = " ".join(quote(o) for o in opts)
    lines = [
        "export DEBIAN_FRONTEND=noninteractive",
        _DPKG_VERSION,
        _DPKG_REMOVABLE,
    ]
    if args.get("update_cache") or (args.get("cache_valid_time") and state != "absent"):
        valid = int(args.get("cache_valid_time") or 0)
        # Age of the lists: the newest of apt's success stamp and the lists folder.
        lines.append(
            "__mr_t=0; for __mr_f in /var/lib/apt/periodic/update-success-stamp "
            '/var/lib/apt/lists; do [ -e "$__mr_f" ] || continue; '
            '__mr_m=$(stat -c %Y "$__mr_f"); [ "$__mr_m" -gt "$__mr_t" ] && __mr_t=$__mr_m; '
            "done; __mr_age=$(( $(date +%s) - __mr_t ))"
        )
        run_update = (
            f"apt-get update -q >&2 || exit 1; touch /var/lib/apt/lists; echo {MARK} update_cache ."
        )
        do = f"echo {MARK} update_cache ." if check else run_update
        cond = f'[ "$__mr_age" -ge {valid} ]' if valid > 0 else "true"
        if args.get("update_cache") or valid > 0:
            lines.append(f"if {cond}; then {do}; fi")
    deb = args.get("deb")
    if deb:
        path = deb if "/" in deb else f"./{deb}"
        lines.append(
            f"__mr_deb={quote(path)}; "
            '__mr_dn=$(dpkg-deb -f "$__mr_deb" Package) || exit 1; '
            '__mr_dv=$(dpkg-deb -f "$__mr_deb" Version) || exit 1; '
            'if [ "$(__mr_dpkg "$__mr_dn")" != "$__mr_dv" ]; then '
            + (
                f"printf '{MARK} install %s\\n' \"$__mr_dn=$__mr_dv\""
                if check
                else f'apt-get install {opt} "$__mr_deb" || exit 1; '
                f"printf '{MARK} install %s\\n' \"$__mr_dn=$__mr_dv\""
            )
            + "; fi"
        )
    if specs and state in ("present", "installed"):
        lines.append(_present_loop(specs, "__mr_dpkg"))
        act = _each("install")
        if not check:
            act = f'apt-get install {opt} "$@" || exit 1; {act}'
        lines.append(f'if [ "$#" -gt 0 ]; then {act}; fi')
    elif specs and state == "latest":
        # The simulation's "Inst" lines are exactly what would be installed or upgraded.
        names = " ".join(quote(s) for s in specs)
        lines.append(
            f"__mr_sim=$(apt-get -s install {opt} {names}) || {{ "
            f'printf "%s\\n" "$__mr_sim" >&2; exit 1; }}; '
            "__mr_inst=$(printf '%s\\n' \"$__mr_sim\" | awk '$1==\"Inst\"{print $2}')"
        )
        act = f"printf '%s\\n' \"$__mr_inst\" | sed 's/^/{MARK} install /'"
        if not check:
            act = f"apt-get install {opt} {names} || exit 1; {act}"
        lines.append(f'if [ -n "$__mr_inst" ]; then {act}; fi')
    elif specs and state == "absent":
        purge = "purge" if args.get("purge") else "keep"
        lines.append("set --")
        for spec in specs:
            name = split_spec(spec)[0]
            lines.append(
                f'[ -n "$(__mr_dpkg_rm {quote(name)} {purge})" ] && set -- "$@" {quote(name)}'
            )
        verb = "purge" if args.get("purge") else "remove"
        act = _each("remove")
        if not check:
            act = f'apt-get {verb} {opt} "$@" || exit 1; {act}'
        lines.append(f'if [ "$#" -gt 0 ]; then {act}; fi')
    if state == "fixed":
        lines.append('__mr_fix=$(apt-get -s -f install | awk \'$1=="Inst"||$1=="Remv"{print $2}\')')
        act = f"printf '%s\\n' \"$__mr_fix\" | sed 's/^/{MARK} fix /'"
        if not check:
            act = f"apt-get -f install {opt} || exit 1; {act}"
        lines.append(f'if [ -n "$__mr_fix" ]; then {act}; fi')
    if args.get("autoremove"):
        purge_opt = " --purge" if args.get("purge") else ""
        lines.append("__mr_auto=$(apt-get -s autoremove | awk '$1==\"Remv\"{print $2}')")
        act = f"printf '%s\\n' \"$__mr_auto\" | sed 's/^/{MARK} autoremove /'"
        if not check:
            act = f"apt-get autoremove{purge_opt} {opt} || exit 1; {act}"
        lines.append(f'if [ -n "$__mr_auto" ]; then {act}; fi')
    lines.append("exit 0")
    return "\n".join(lines)


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
    specs = names_of(args)
    state = args.get("state") or "present"
    lister = "apk info -v 2>/dev/null | sort" if manager == "apk" else "rpm -qa | sort"
    # apk info -e prints the name, not the version: any output means installed.
    fn = f'__mr_ver() {{ __mr_o=$({test} "$1") && [ -n "$__mr_o" ] && echo "$__mr_o"; }}'
    lines = [fn]
    if state in ("present", "installed", "latest"):
        lines.append(_present_loop(specs, "__mr_ver"))
        act = _each("install")
        if not check:
            act = f'{install} "$@" >&2 || exit 1; {act}'
        lines.append(f'if [ "$#" -gt 0 ]; then {act}; fi')
    if state == "latest" and not check:
        names = " ".join(quote(split_spec(s)[0]) for s in specs)
        lines.append(
            f"__mr_b=$({lister}); {upgrade} {names} >&2 || exit 1; "
            f'[ "$__mr_b" != "$({lister})" ] && echo {MARK} upgrade {quote(",".join(specs))}'
        )
    if state == "absent":
        lines.append("set --")
        for spec in specs:
            name = split_spec(spec)[0]
            lines.append(f'[ -n "$(__mr_ver {quote(name)})" ] && set -- "$@" {quote(name)}')
        act = _each("remove")
        if not check:
            act = f'{remove} "$@" >&2 || exit 1; {act}'
        lines.append(f'if [ "$#" -gt 0 ]; then {act}; fi')
    lines.append("exit 0")
    return "\n".join(lines)


def package_outcome(output: CommandOutput, check: bool) -> Outcome:
    """Read the marker lines: what was (or would be) installed, upgraded, removed."""
    changes: dict[str, list[str]] = {}
    log = []
    for line in output.stdout.splitlines():
        if line.startswith(MARK + " "):
            _, action, what = ([*line.split(" ", 2), "", ""])[:3]
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


_APT_PROPS: dict[str, Any] = {
    "name": _NAMES,
    "state": {"enum": ["present", "installed", "absent", "latest", "fixed"], "default": "present"},
    "update_cache": {"type": "boolean", "default": False},
    "cache_valid_time": {"type": "integer", "minimum": 0, "default": 0},
    "install_recommends": {"type": ["boolean", "null"]},
    "purge": {"type": "boolean", "default": False},
    "autoremove": {"type": "boolean", "default": False},
    "allow_downgrade": {"type": "boolean", "default": False},
    "deb": {"type": "string", "minLength": 1},
}


class AptModule(Module):
    """`apt`: Debian packages through apt-get, as Ansible's apt module.

    present installs only the missing names (`name=1.2*` pins a version glob); latest
    installs or upgrades what `apt-get -s install` says it would; absent removes (or purges)
    installed ones. `update_cache` runs `apt-get update` (only when the lists are older than
    `cache_valid_time` seconds, if given). Changed when anything was (would be) done.
    """

    name: ClassVar[str] = "apt"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": _APT_PROPS,
        "additionalProperties": False,
        # Ansible's names for the same arguments
        "x-aliases": {
            "pkg": "name",
            "package": "name",
            "update-cache": "update_cache",
            "install-recommends": "install_recommends",
        },
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """One script: check with dpkg-query, then apt-get only for what differs."""
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
    order). On apt hosts it is the `apt` module; elsewhere present/absent ask rpm or apk
    first, and latest compares the installed package list before and after the upgrade
    (in check mode latest reports only the missing packages on non-apt hosts).
    """

    name: ClassVar[str] = "package"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "name": _NAMES,
            "state": {"enum": ["present", "installed", "absent", "latest"], "default": "present"},
            "use": {"enum": ["auto", "apt", "dnf", "yum", "apk", "zypper"], "default": "auto"},
        },
        "required": ["name"],
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """`if command -v apt-get; then ...; elif dnf ...` in one script."""
        use = args.get("use") or "auto"
        branches = [("apt", "apt-get", apt_script(args, ctx.check))]
        branches += [
            (m, m, other_script(m, args, ctx.check)) for m in ("dnf", "yum", "apk", "zypper")
        ]
        parts: list[str] = []
        for manager, binary, body in branches:
            if use not in ("auto", manager):
                continue
            word = "if" if not parts else "elif"
            parts.append(f"{word} command -v {binary} >/dev/null 2>&1; then\n{body}")
        parts.append("else\necho 'no supported package manager found' >&2; exit 2\nfi")
        return RemoteStep("\n".join(parts))

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Changed when a marker line says something was installed, removed or upgraded."""
        return package_outcome(output, ctx.check)
