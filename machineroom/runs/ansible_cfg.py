"""Reading an Ansible user's `ansible.cfg` and `ANSIBLE_*` variables, as ansible-core does.

The file is the first found of $ANSIBLE_CONFIG (a file, or a folder holding ansible.cfg),
`./ansible.cfg`, `~/.ansible.cfg`, `/etc/ansible/ansible.cfg`. Each setting machineroom has an
equivalent for becomes a `Setting` (value and where it came from: `ansible.cfg:12` or
`$ANSIBLE_FORKS`); the environment variable wins over the file, as in Ansible. Every other
setting present in the file gives one warning naming file:line, never silence. Settings whose
value is already machineroom's behaviour (`retry_files_enabled = False`, `pipelining = True`,
...) are accepted without a word.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machineroom.errors import InputError, Location

TRUE_WORDS = frozenset({"y", "yes", "on", "1", "true", "t", "1.0"})
FALSE_WORDS = frozenset({"n", "no", "off", "0", "false", "f", "0.0", ""})


@dataclass(frozen=True)
class Setting:
    """One value and where it was written (`ansible.cfg:12`, `$ANSIBLE_FORKS`, ...)."""

    value: Any
    source: str


@dataclass(frozen=True)
class Entry:
    """A `key = value` line of an INI file."""

    section: str
    key: str
    value: str
    line: int


def parse_bool(text: str, where: str) -> bool:
    """A boolean in any spelling Ansible accepts (yes/no, true/false, on/off, 1/0, y/n)."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InputError(f"{where}: '{text}' is not true or false", None, "true or false (yes/no)")


def parse_int(text: str, where: str) -> int:
    """A positive integer setting."""
    try:
        value = int(text.strip())
    except ValueError:
        raise InputError(f"{where}: '{text}' is not an integer", None, "an integer") from None
    if value < 1:
        raise InputError(f"{where}: {value} is too small", None, "an integer of 1 or more")
    return value


def _pathlist(separator: str) -> Callable[[str, str, Path | None], list[str]]:
    def convert(text: str, where: str, base: Path | None) -> list[str]:
        return [_path(p, base) for p in text.split(separator) if p.strip()]

    return convert


def _path(text: str, base: Path | None) -> str:
    """A path as Ansible resolves it: `~` expanded, relative to the cfg file's folder."""
    path = Path(os.path.expandvars(os.path.expanduser(text.strip())))
    if base is not None and not path.is_absolute():
        path = base / path
    return str(path)


def _text(text: str, where: str, base: Path | None) -> str:
    return text.strip()


def _bool(text: str, where: str, base: Path | None) -> bool:
    return parse_bool(text, where)


def _int(text: str, where: str, base: Path | None) -> int:
    return parse_int(text, where)


def _one_path(text: str, where: str, base: Path | None) -> str:
    return _path(text, base)


def _identities(text: str, where: str, base: Path | None) -> list[str]:
    """`label@file` entries, each file resolved as a path (`prompt` stays a word)."""
    result = []
    for entry in (e.strip() for e in text.split(",")):
        label, at, source = entry.rpartition("@")
        if not entry:
            continue
        if source != "prompt":
            source = _path(source, base)
        result.append(f"{label}{at}{source}")
    return result


def _become_method(text: str, where: str, base: Path | None) -> str:
    method = text.strip()
    if method not in ("sudo", "su"):
        raise InputError(f"{where}: become_method '{method}' is not supported", None, "sudo, su")
    return method


def _gathering(text: str, where: str, base: Path | None) -> str:
    value = text.strip().lower()
    if value not in ("implicit", "explicit", "smart"):
        raise InputError(
            f"{where}: gathering '{text}' is not known", None, "implicit, explicit or smart"
        )
    return value


Converter = Callable[[str, str, Path | None], Any]

# (section, key) -> (our setting name, converter, environment variable)
KNOWN: dict[tuple[str, str], tuple[str, Converter, str]] = {
    ("defaults", "inventory"): ("inventory", _pathlist(","), "ANSIBLE_INVENTORY"),
    ("defaults", "hostfile"): ("inventory", _pathlist(","), "ANSIBLE_HOSTS"),
    ("defaults", "remote_user"): ("remote_user", _text, "ANSIBLE_REMOTE_USER"),
    ("defaults", "private_key_file"): ("private_key_file", _one_path, "ANSIBLE_PRIVATE_KEY_FILE"),
    ("defaults", "forks"): ("forks", _int, "ANSIBLE_FORKS"),
    ("defaults", "timeout"): ("connect_timeout", _int, "ANSIBLE_TIMEOUT"),
    ("defaults", "roles_path"): ("roles_path", _pathlist(os.pathsep), "ANSIBLE_ROLES_PATH"),
    ("defaults", "vault_password_file"): (
        "vault_password_file",
        _one_path,
        "ANSIBLE_VAULT_PASSWORD_FILE",
    ),
    ("defaults", "vault_identity_list"): (
        "vault_identity_list",
        _identities,
        "ANSIBLE_VAULT_IDENTITY_LIST",
    ),
    ("defaults", "ask_vault_pass"): ("ask_vault_pass", _bool, "ANSIBLE_ASK_VAULT_PASS"),
    ("defaults", "host_key_checking"): ("host_key_checking", _bool, "ANSIBLE_HOST_KEY_CHECKING"),
    ("defaults", "gathering"): ("gathering", _gathering, "ANSIBLE_GATHERING"),
    ("defaults", "ask_pass"): ("ask_pass", _bool, "ANSIBLE_ASK_PASS"),
    ("defaults", "connection_password_file"): (
        "connection_password_file",
        _one_path,
        "ANSIBLE_CONNECTION_PASSWORD_FILE",
    ),
    ("defaults", "become_password_file"): (
        "become_password_file",
        _one_path,
        "ANSIBLE_BECOME_PASSWORD_FILE",
    ),
    ("privilege_escalation", "become"): ("become", _bool, "ANSIBLE_BECOME"),
    ("privilege_escalation", "become_user"): ("become_user", _text, "ANSIBLE_BECOME_USER"),
    ("privilege_escalation", "become_method"): (
        "become_method",
        _become_method,
        "ANSIBLE_BECOME_METHOD",
    ),
    ("privilege_escalation", "become_ask_pass"): (
        "become_ask_pass",
        _bool,
        "ANSIBLE_BECOME_ASK_PASS",
    ),
    ("ssh_connection", "timeout"): ("connect_timeout", _int, "ANSIBLE_SSH_TIMEOUT"),
}

# Settings whose value is what machineroom does anyway: accepted without a warning.
ALREADY = {
    ("defaults", "retry_files_enabled"): False,
    ("defaults", "nocows"): True,
    ("defaults", "nocolor"): False,
    ("defaults", "deprecation_warnings"): True,
    ("defaults", "localhost_warning"): True,
    ("ssh_connection", "pipelining"): True,
    ("connection", "pipelining"): True,
}
# Variables read elsewhere (vault.py) or that only say where Ansible's own files are.
QUIET_VARIABLES = frozenset({"ANSIBLE_CONFIG", "ANSIBLE_HOME", "ANSIBLE_LOCAL_TEMP"})
# What machineroom does about a few common settings it ignores (said in the warning).
WHY_IGNORED = {
    ("defaults", "interpreter_python"): "no Python is needed on targets for native modules",
    ("defaults", "stdout_callback"): "machineroom prints its own report (--json for machines)",
    ("defaults", "callbacks_enabled"): "machineroom prints its own report (--json for machines)",
    ("defaults", "callback_whitelist"): "machineroom prints its own report (--json for machines)",
    ("ssh_connection", "ssh_args"): "machineroom speaks SSH itself; put options in ~/.ssh/config",
    ("ssh_connection", "control_path"): "one connection per host is kept for the whole run",
    ("ssh_connection", "control_path_dir"): "one connection per host is kept for the whole run",
    ("ssh_connection", "pipelining"): "machineroom always sends a task as one command",
    ("defaults", "retry_files_enabled"): "machineroom writes no retry files (apply --resume)",
    ("defaults", "fact_caching"): "facts are gathered per run and recorded in the state database",
}


def find_ansible_cfg(env: Mapping[str, str], cwd: Path, home: Path) -> Path | None:
    """The ansible.cfg ansible-core would read: the first that exists, in its order."""
    candidates: list[Path] = []
    named = env.get("ANSIBLE_CONFIG")
    if named:
        path = Path(os.path.expanduser(named))
        candidates.append(path / "ansible.cfg" if path.is_dir() else path)
    # ansible-core skips ./ansible.cfg in a world-writable folder (anyone could plant one)
    if not (cwd.stat().st_mode & 0o002):
        candidates.append(cwd / "ansible.cfg")
    candidates += [home / ".ansible.cfg", Path("/etc/ansible/ansible.cfg")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def parse_ini(text: str, source: str) -> list[Entry]:
    """The `key = value` (or `key: value`) lines of an INI file, with their line numbers.

    As Python's configparser reads ansible.cfg: `#` and `;` start a comment line, `;` after
    a value starts an inline comment, an indented line continues the value above, keys are
    lower-cased.
    """
    entries: list[Entry] = []
    section = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if raw[:1].isspace() and entries and entries[-1].section == section:
            last = entries[-1]
            entries[-1] = Entry(last.section, last.key, f"{last.value}\n{stripped}", last.line)
            continue
        header = re.fullmatch(r"\[([^\]]+)\]", stripped)
        if header:
            section = header.group(1).strip()
            continue
        match = re.match(r"([^=:]+?)\s*[=:]\s*(.*)$", stripped)
        if match is None or not section:
            raise InputError(
                "not a `key = value` line" if section else "a setting before any [section]",
                Location(source, number, 1),
                "[section] headers and key = value lines",
            )
        value = re.split(r"\s;", match.group(2), maxsplit=1)[0].strip()
        entries.append(Entry(section, match.group(1).strip().lower(), value, number))
    return entries


def read_ansible_settings(
    env: Mapping[str, str], cwd: Path, home: Path
) -> tuple[dict[str, Setting], list[str], Path | None]:
    """The settings machineroom takes from ansible.cfg and ANSIBLE_* (env over file), the
    warnings for the ones it ignores, and the file read (None: none found)."""
    path = find_ansible_cfg(env, cwd, home)
    settings: dict[str, Setting] = {}
    warnings: list[str] = []
    if path is not None:
        shown = _shown(path, cwd)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{shown}: cannot read: {exc}") from None
        for entry in parse_ini(text, shown):
            where = f"{shown}:{entry.line}"
            known = KNOWN.get((entry.section, entry.key))
            if known is not None:
                name, convert, _ = known
                settings[name] = Setting(convert(entry.value, where, path.parent), where)
                continue
            if _already(entry):
                continue
            why = WHY_IGNORED.get((entry.section, entry.key), "machineroom has no equivalent")
            warnings.append(
                f"{where}: [{entry.section}] {entry.key} is ignored by machineroom ({why})"
            )
    for name, convert, variable in KNOWN.values():
        value = env.get(variable)
        if value:
            settings[name] = Setting(convert(value, f"${variable}", None), f"${variable}")
    known_variables = {variable for _, _, variable in KNOWN.values()} | QUIET_VARIABLES
    for variable in sorted(env):
        if variable.startswith("ANSIBLE_") and variable not in known_variables:
            warnings.append(f"${variable} is ignored by machineroom (no equivalent)")
    settings.update(_host_key_setting(settings, warnings))
    gathering = settings.get("gathering")
    if gathering is not None and gathering.value == "explicit":
        warnings.append(
            f"{gathering.source}: gathering = explicit is ignored: machineroom gathers facts for "
            "a play that can read them unless it says gather_facts: false"
        )
    return settings, warnings, path


def _already(entry: Entry) -> bool:
    wanted = ALREADY.get((entry.section, entry.key))
    if wanted is None:
        return False
    try:
        return parse_bool(entry.value, "") is wanted
    except InputError:
        return False


def _host_key_setting(settings: dict[str, Setting], warnings: list[str]) -> dict[str, Setting]:
    """host_key_checking = False: never silently trusting any key. machineroom records a key
    it has not seen (first use) and still refuses a changed one, and says so."""
    checking = settings.get("host_key_checking")
    if checking is None or checking.value:
        return {}
    warnings.append(
        f"{checking.source}: host_key_checking = False: machineroom records unknown host keys "
        "on first use (as --accept-new-host-keys) and still refuses a changed key"
    )
    return {"accept_new_host_keys": Setting(True, checking.source)}


def _shown(path: Path, cwd: Path) -> str:
    try:
        relative = path.resolve().relative_to(cwd.resolve())
    except ValueError:
        return str(path)
    return str(relative)
