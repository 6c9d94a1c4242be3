"""The apt part of `apt` and `package`: one sh script doing what Ansible's apt module does.

Order, as in Ansible's module: refresh the lists (only when older than `cache_valid_time`),
`upgrade`, `deb` files, then the named packages by `state`, then autoremove/autoclean/clean.
Every step asks first (dpkg-query, or `apt-get -s` for what an install or upgrade would do)
and acts only on a difference; each change prints a marker line (`__mr__ install NAME`),
done or, in check mode, planned. The lists' age is the mtime of apt's update-success stamp,
else of /var/lib/apt/lists, as Ansible reads it; `cache_update_time` reports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from machineroom.modules.base import quote

MARK = "__mr__"
_NAME = {"type": "string", "minLength": 1, "pattern": "^[^-\\s]"}
NAMES = {"anyOf": [_NAME, {"type": "array", "items": _NAME}]}

# Ansible's apt arguments (the ones with effect are used below; the rest are accepted)
APT_PROPS: dict[str, Any] = {
    "name": NAMES,
    "state": {
        "enum": ["present", "installed", "absent", "removed", "latest", "build-dep", "fixed"],
        "default": "present",
    },
    "update_cache": {"type": "boolean", "default": False},
    "update_cache_retries": {"type": "integer", "minimum": 1, "default": 5},
    "update_cache_retry_max_delay": {"type": "integer", "minimum": 0, "default": 12},
    "cache_valid_time": {"type": "integer", "minimum": 0, "default": 0},
    "default_release": {"type": "string"},  # empty: none (roles default it to "")
    "install_recommends": {"type": ["boolean", "null"]},
    "purge": {"type": "boolean", "default": False},
    "autoremove": {"type": "boolean", "default": False},
    "autoclean": {"type": "boolean", "default": False},
    "clean": {"type": "boolean", "default": False},
    "allow_downgrade": {"type": "boolean", "default": False},
    "allow_unauthenticated": {"type": "boolean", "default": False},
    "allow_change_held_packages": {"type": "boolean", "default": False},
    "force": {"type": "boolean", "default": False},
    "force_apt_get": {"type": "boolean", "default": False},
    "fail_on_autoremove": {"type": "boolean", "default": False},
    "only_upgrade": {"type": "boolean", "default": False},
    "upgrade": {
        "anyOf": [
            {"enum": ["dist", "full", "yes", "safe", "no"]},
            {"type": "boolean"},
        ]
    },
    "deb": {"type": "string", "minLength": 1},
    "dpkg_options": {"type": "string", "default": "force-confdef,force-confold"},
    "policy_rc_d": {"type": ["integer", "null"]},
    "lock_timeout": {"type": "integer", "minimum": 0, "default": 60},
}
APT_ALIASES = {
    "pkg": "name",
    "package": "name",
    "update-cache": "update_cache",
    "install-recommends": "install_recommends",
    "default-release": "default_release",
    "allow-downgrade": "allow_downgrade",
    "allow-downgrades": "allow_downgrade",
    "allow_downgrades": "allow_downgrade",
    "allow-unauthenticated": "allow_unauthenticated",
    "allow-change-held-packages": "allow_change_held_packages",
}


def names_of(args: Mapping[str, Any]) -> list[str]:
    """`name` as a list (Ansible accepts a string, a comma-separated string or a list)."""
    raw = args.get("name") or args.get("pkg") or []
    items = [raw] if isinstance(raw, str) else list(raw)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def split_spec(spec: str) -> tuple[str, str | None]:
    """`nginx=1.18*` -> ("nginx", "1.18*"); `nginx` -> ("nginx", None)."""
    name, sep, version = spec.partition("=")
    return name, (version if sep else None)


def present_loop(specs: list[str], installed_test: str) -> str:
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


def each(action: str) -> str:
    """sh: one marker line per argument in "$@"."""
    return f'for __mr_n in "$@"; do printf \'{MARK} {action} %s\\n\' "$__mr_n"; done'


# sh functions: the installed version of a package (or nothing); "yes" when removable;
# the lists' timestamp (apt's success stamp, else the lists folder, as Ansible reads it).
_FUNCTIONS = r"""
__mr_dpkg() { __mr_s=$(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null) ||
  return 0; case "$__mr_s" in 'ii '*|'hi '*) echo "${__mr_s##* }" ;; esac; }
__mr_dpkg_rm() { __mr_s=$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) ||
  return 0; case "$__mr_s" in ii*|iU*|iF*|hi*) echo yes ;; rc*) [ "$2" = purge ] && echo yes ;;
  esac; }
__mr_tmp=; __mr_prc=
__mr_cleanup() { [ -n "$__mr_tmp" ] && rm -rf "$__mr_tmp"
  if [ -n "$__mr_prc" ]; then if [ -e "$__mr_prc.mr" ]; then mv "$__mr_prc.mr" "$__mr_prc"
  else rm -f "$__mr_prc"; fi; fi; return 0; }
trap __mr_cleanup EXIT
__mr_stamp() { for __mr_f in /var/lib/apt/periodic/update-success-stamp /var/lib/apt/lists; do
  [ -e "$__mr_f" ] && { stat -c %Y "$__mr_f"; return; }; done; echo 0; }
"""


def apt_options(args: Mapping[str, Any]) -> list[str]:
    """apt-get options from the arguments (dpkg options, recommends, -t release, ...)."""
    opts = ["-y", "-q"]
    for option in str(args.get("dpkg_options", "force-confdef,force-confold")).split(","):
        if option.strip():
            opts += ["-o", f"Dpkg::Options::=--{option.strip()}"]
    opts += ["-o", f"DPkg::Lock::Timeout={int(args.get('lock_timeout', 60))}"]
    recommends = args.get("install_recommends")
    if recommends is True:
        opts += ["-o", "APT::Install-Recommends=yes"]
    elif recommends is False:
        opts.append("--no-install-recommends")
    if args.get("default_release"):
        opts += ["-t", str(args["default_release"])]
    if args.get("allow_downgrade") or args.get("force"):
        opts.append("--allow-downgrades")
    if args.get("allow_unauthenticated") or args.get("force"):
        opts.append("--allow-unauthenticated")
    if args.get("allow_change_held_packages") or args.get("force"):
        opts.append("--allow-change-held-packages")
    if args.get("fail_on_autoremove"):
        opts.append("--no-remove")
    return opts


def _simulated(command: str, opt: str, words: str, action: str, check: bool) -> str:
    """sh: simulate `apt-get COMMAND`, mark what it would install/upgrade/remove, run it."""
    sim = (
        f"__mr_sim=$(apt-get -s {command} {opt} {words}) || {{ "
        f'printf "%s\\n" "$__mr_sim" >&2; exit 1; }}; '
        '__mr_inst=$(printf \'%s\\n\' "$__mr_sim" | awk \'$1=="Inst"||$1=="Remv"{print $2}\')'
    )
    act = f"printf '%s\\n' \"$__mr_inst\" | sed 's/^/{MARK} {action} /'"
    if not check:
        act = f"apt-get {command} {opt} {words} || exit 1; {act}"
    return f'{sim}\nif [ -n "$__mr_inst" ]; then {act}; fi'


def _cache(args: Mapping[str, Any], check: bool) -> list[str]:
    """sh: refresh the lists when older than cache_valid_time (always, when 0)."""
    lines = ["__mr_t0=$(__mr_stamp)"]
    valid = int(args.get("cache_valid_time") or 0)
    if args.get("update_cache") or valid > 0:
        retries = int(args.get("update_cache_retries") or 5)
        max_delay = int(args.get("update_cache_retry_max_delay") or 12)
        update = (
            f"__mr_try=1; __mr_delay=1; until apt-get update -q >&2; do "
            f'[ "$__mr_try" -ge {retries} ] && {{ echo "Failed to update apt cache after '
            f'{retries} retries" >&2; exit 1; }}; sleep "$__mr_delay"; '
            "__mr_try=$((__mr_try + 1)); __mr_delay=$((__mr_delay * 2)); "
            f'[ "$__mr_delay" -gt {max_delay} ] && __mr_delay={max_delay}; done; '
            # the lists' own mtime also tells the next cache_valid_time they are fresh
            "touch /var/lib/apt/lists; "
            f'[ "$(__mr_stamp)" != "$__mr_t0" ] && echo {MARK} update_cache .'
        )
        act = f"echo {MARK} update_cache ." if check else update
        lines.append(f'if [ $((__mr_t0 + {valid})) -lt "$(date +%s)" ]; then {act}; fi')
    return lines


def _deb(args: Mapping[str, Any], opt: str, check: bool) -> list[str]:
    """sh: each `deb` (a path on the host, or a URL fetched first) installed unless dpkg
    already has that package at that version."""
    lines = []
    for index, deb in enumerate(str(args["deb"]).split(",")):
        deb = deb.strip()
        if "://" in deb:
            lines.append(
                # apt-get takes a file only by a name ending in .deb
                '[ -n "$__mr_tmp" ] || __mr_tmp=$(mktemp -d /tmp/mr-deb-XXXXXX) || exit 1; '
                f'__mr_deb="$__mr_tmp/{index}.deb"; '
                f'if command -v curl >/dev/null 2>&1; then curl -fsSL -o "$__mr_deb" {quote(deb)}; '
                f'else wget -q -O "$__mr_deb" {quote(deb)}; fi || '
                f"{{ echo 'could not download '{quote(deb)} >&2; exit 1; }}"
            )
        else:
            lines.append(f"__mr_deb={quote(deb if '/' in deb else './' + deb)}")
        # apt-get takes a file only by a path that has a slash (and, before apt 2.x, .deb)
        install = f'apt-get install {opt} "$__mr_deb" || exit 1; ' if not check else ""
        lines.append(
            '[ -r "$__mr_deb" ] || { echo "deb file not found: $__mr_deb" >&2; exit 1; }; '
            f'__mr_dn{index}=$(dpkg-deb -f "$__mr_deb" Package) || exit 1; '
            f'__mr_dv=$(dpkg-deb -f "$__mr_deb" Version) || exit 1; '
            f'if [ "$(__mr_dpkg "$__mr_dn{index}")" != "$__mr_dv" ]; then {install}'
            f"printf '{MARK} install %s\\n' \"$__mr_dn{index}=$__mr_dv\"; fi"
        )
    return lines


def apt_script(args: Mapping[str, Any], check: bool) -> str:
    """The whole apt script for these arguments."""
    state = args.get("state") or "present"
    specs = names_of(args)
    opt = " ".join(quote(o) for o in apt_options(args))
    lines = ["export DEBIAN_FRONTEND=noninteractive", _FUNCTIONS]
    policy = args.get("policy_rc_d")
    if policy is not None and not check:
        # a policy-rc.d for the run (101: no service starts), the host's own put back after
        lines.append(
            "[ -e /usr/sbin/policy-rc.d ] && cp -p /usr/sbin/policy-rc.d /usr/sbin/policy-rc.d.mr; "
            f"__mr_prc=/usr/sbin/policy-rc.d; printf '#!/bin/sh\\nexit %d\\n' {int(policy)} "
            '> "$__mr_prc"; chmod 755 "$__mr_prc"'
        )
    lines += _cache(args, check)
    upgrade = args.get("upgrade")
    mode = {True: "yes", False: None, "no": None}.get(upgrade, upgrade)
    if "*" in specs:  # "*": every installed package, which only latest upgrades
        specs, mode = [s for s in specs if s != "*"], ("yes" if state == "latest" else mode)
    auto = " --auto-remove" if args.get("autoremove") else ""
    if mode in ("dist", "full"):
        lines.append(_simulated("dist-upgrade" + auto, opt, "", "upgrade", check))
    elif mode in ("yes", "safe"):
        lines.append(_simulated("upgrade --with-new-pkgs" + auto, opt, "", "upgrade", check))
    if args.get("deb"):
        lines += _deb(args, opt, check)
    words = " ".join(quote(s) for s in specs)
    only = " --only-upgrade" if args.get("only_upgrade") else ""
    if specs and state in ("present", "installed") and not args.get("only_upgrade"):
        lines.append(present_loop(specs, "__mr_dpkg"))
        act = each("install")
        if not check:
            act = f'apt-get install {opt} "$@" || exit 1; {act}'
        lines.append(f'if [ "$#" -gt 0 ]; then {act}; fi')
    elif specs and state == "latest":
        # latest (and only_upgrade): exactly what the simulation would install or upgrade
        lines.append(_simulated("install" + only, opt, words, "install", check))
    elif specs and state == "build-dep":
        lines.append(_simulated("build-dep", opt, words, "build_dep", check))
    elif specs and state in ("absent", "removed"):
        purge = "purge" if args.get("purge") else "keep"
        lines.append("set --")
        for spec in specs:
            name = split_spec(spec)[0]
            lines.append(
                f'[ -n "$(__mr_dpkg_rm {quote(name)} {purge})" ] && set -- "$@" {quote(name)}'
            )
        verb = "purge" if args.get("purge") else "remove"
        act = each("remove")
        if not check:
            act = f'apt-get {verb} {opt}{auto} "$@" || exit 1; {act}'
        lines.append(f'if [ "$#" -gt 0 ]; then {act}; fi')
    if state == "fixed":
        lines.append(_simulated("-f install", opt, words, "fix", check))
    if args.get("autoremove") and not (specs and state in ("absent", "removed")):
        purge_opt = " --purge" if args.get("purge") else ""
        lines.append(_simulated("autoremove" + purge_opt, opt, "", "autoremove", check))
    if args.get("autoclean"):
        lines.append(_archives("autoclean", check))
    if args.get("clean"):
        lines.append(_archives("clean", check))
    lines.append(f"printf '{MARK} cache_time %s\\n' \"$(__mr_stamp)\"")
    lines.append("exit 0")
    return "\n".join(lines)


def _archives(command: str, check: bool) -> str:
    """sh: `apt-get clean`/`autoclean`; changed when downloaded .deb files went away
    (in check mode: clean when there are any; autoclean cannot tell)."""
    count = "$(find /var/cache/apt/archives -maxdepth 1 -name '*.deb' 2>/dev/null | wc -l)"
    if check:
        if command == "autoclean":
            return ":"
        return f'[ "{count}" -gt 0 ] && echo {MARK} {command} .'
    return (
        f"__mr_b={count}; apt-get {command} || exit 1; "
        f'[ "$__mr_b" != "{count}" ] && echo {MARK} {command} .'
    )
