"""`package_facts`: the installed packages as `ansible_facts.packages`, as Ansible's module.

One remote command lists them with the manager's own query tool (dpkg-query, rpm -qa,
apk info, pacman -Q); no Python needed. Each name maps to a list of its installed
instances (`{name, version, arch, source, ...}`; rpm adds `release` and `epoch`, apk
`release`), since a package may be installed more than once (kernels, multiarch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.modules.base import CommandOutput, Module, ModuleContext, Outcome, RemoteStep

# manager -> (how to detect it, the listing command printing TAB-separated fields)
_LISTERS = {
    "apt": (
        "dpkg-query",
        "dpkg-query -W -f='${db:Status-Abbrev}\\t${Package}\\t${Version}\\t"
        "${Architecture}\\t${Section}\\n'",
    ),
    "rpm": (
        "rpm",
        "rpm -qa --qf '%{NAME}\\t%{VERSION}\\t%{RELEASE}\\t%{EPOCH}\\t%{ARCH}\\n'",
    ),
    "apk": ("apk", "apk info -v"),
    "pacman": ("pacman", "pacman -Q"),
}
# names Ansible (or a user) gives the same managers
_MANAGER_NAMES = {"dpkg": "apt", "apt": "apt", "rpm": "rpm", "apk": "apk", "pacman": "pacman"}


def _wanted(args: Mapping[str, Any]) -> list[str]:
    raw = args.get("manager") or ["auto"]
    items = [raw] if isinstance(raw, str) else list(raw)
    return [w.strip() for item in items for w in str(item).split(",") if w.strip()]


def parse_packages(manager: str, text: str) -> dict[str, list[dict[str, Any]]]:
    """One manager's listing -> {name: [package dicts]}."""
    packages: dict[str, list[dict[str, Any]]] = {}
    for line in text.splitlines():
        entry: dict[str, Any] | None = None
        if manager == "apt":
            fields = line.split("\t")
            # the status' second letter: n(ot installed) and c(onfig files) are not installed
            if len(fields) < 5 or len(fields[0]) < 2 or fields[0][1] in "nc":
                continue
            entry = {
                "name": fields[1],
                "version": fields[2],
                "arch": fields[3],
                "category": fields[4],
                "source": "apt",
            }
        elif manager == "rpm":
            fields = line.split("\t")
            if len(fields) < 5:
                continue
            epoch = None if fields[3] == "(none)" else fields[3]
            entry = {
                "name": fields[0],
                "version": fields[1],
                "release": fields[2],
                "epoch": epoch,
                "arch": fields[4],
                "source": "rpm",
            }
        elif manager == "apk":
            parts = line.strip().rsplit("-", 2)
            if len(parts) == 3:
                entry = {"name": parts[0], "version": parts[1], "release": parts[2]}
            elif line.strip():
                entry = {"name": line.strip(), "version": "", "release": ""}
            if entry:
                entry["source"] = "apk"
        elif manager == "pacman":
            words = line.split()
            if len(words) >= 2:
                entry = {"name": words[0], "version": words[1], "source": "pacman"}
        if entry:
            packages.setdefault(entry["name"], []).append(entry)
    return packages


class PackageFactsModule(Module):
    """`package_facts`: `ansible_facts.packages` (and the `packages` variable).

    `manager` (auto, apt/dpkg, rpm, apk, pacman; a list too) picks the tools; `auto` with
    `strategy: first` (the default) uses the first one the host has, `strategy: all` every
    one. Never changed; runs in check mode.
    """

    name: ClassVar[str] = "package_facts"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "manager": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}},
                ],
                "default": ["auto"],
            },
            "strategy": {"enum": ["first", "all"], "default": "first"},
        },
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """For each manager asked for: if its tool exists, a section with its listing."""
        wanted = _wanted(args)
        unknown = [m for m in wanted if m != "auto" and m not in _MANAGER_NAMES]
        if unknown:
            text = f"Unsupported package managers requested: {', '.join(unknown)}"
            return RemoteStep(f"echo '{text}' >&2; exit 2")
        managers = list(_LISTERS) if "auto" in wanted else [_MANAGER_NAMES[m] for m in wanted]
        first = args.get("strategy", "first") == "first"
        lines = ["__mr_found="]
        for manager in dict.fromkeys(managers):
            tool, lister = _LISTERS[manager]
            guard = '[ -z "$__mr_found" ] && ' if first else ""
            lines.append(
                f"{guard}command -v {tool} >/dev/null 2>&1 && {{ __mr_found=1; "
                f"echo '@@mr {manager}'; LC_ALL=C {lister} || exit 1; }}"
            )
        names = ", ".join(dict.fromkeys(managers))
        lines.append(
            f'[ -n "$__mr_found" ] || {{ echo \'Could not detect a supported package manager '
            f"from the following list: {names}' >&2; exit 1; }}"
        )
        return RemoteStep("\n".join(lines))

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """`packages` as a fact, merged into `ansible_facts` beside what was gathered."""
        if output.exit_code != 0:
            return Outcome("failed", msg=output.stderr.strip() or f"exit {output.exit_code}")
        packages: dict[str, list[dict[str, Any]]] = {}
        sections: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in output.stdout.splitlines():
            if line.startswith("@@mr "):
                current = sections.setdefault(line[5:].strip(), [])
            elif current is not None:
                current.append(line)
        for manager, lines in sections.items():
            for name, entries in parse_packages(manager, "\n".join(lines)).items():
                packages.setdefault(name, []).extend(entries)
        known = ctx.vars.get("ansible_facts")
        facts: dict[str, Any] = {
            "packages": packages,
            "ansible_facts": {
                **(known if isinstance(known, Mapping) else {}),
                "packages": packages,
            },
        }
        return Outcome(
            "ok",
            msg=f"{len(packages)} packages ({', '.join(sections)})",
            result={"ansible_facts": {"packages": packages}},
            facts=facts,
        )
