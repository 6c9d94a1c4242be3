"""`pip`: Python packages in a virtualenv or an interpreter, as Ansible's pip module.

One remote command (a module about Python: the host's Python runs pip and a small check).
The virtualenv is created first when `bin/activate` is missing (`virtualenv_command`);
then the host's Python tells which named requirements are already satisfied
(importlib.metadata; the version specifiers checked with pip's own `packaging`), and pip
runs only when something is to be done. `changed` follows Ansible: pip said "Successfully
installed" / "Successfully uninstalled", or the freeze list changed (requirements files,
VCS URLs), or the virtualenv was created.
"""

from __future__ import annotations

import shlex
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

STATE_ARGS = {
    "present": ["install"],
    "absent": ["uninstall", "-y"],
    "latest": ["install", "-U"],
    "forcereinstall": ["install", "-U", "--force-reinstall"],
}

# Run by the target's Python (the one pip installs into): how many of the requirements in
# $NAMES (one a line) are installed and satisfied. importlib.metadata lists what `pip list`
# lists, without pip's start-up time.
_CHECKER = r"""
import os
from importlib import metadata
try:
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name
except ImportError:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
have = {}
for dist in metadata.distributions():
    name = dist.metadata["Name"]
    if name:
        have.setdefault(canonicalize_name(name), dist.version)
present = missing = 0
for spec in os.environ["NAMES"].split("\n"):
    try:
        req = Requirement(spec)
    except Exception:
        missing += 1
        continue
    version = have.get(canonicalize_name(req.name))
    if version is not None and (
        not req.specifier or req.specifier.contains(version, prereleases=True)
    ):
        present += 1
    else:
        missing += 1
print("present=%d missing=%d" % (present, missing))
"""

_BODY = r"""set -f
fail() { printf 'machineroom: %s\n' "$*" >&2; exit 1; }
say() { printf '%s=%s\n' "$1" "$2"; }
[ -n "$chdir" ] || chdir=${TMPDIR:-/tmp}
cd -- "$chdir" || fail "cannot change into $chdir"
[ -z "$umask" ] || umask "$umask" || fail "umask must be an octal integer"
[ "$bsp" = 0 ] || { PIP_BREAK_SYSTEM_PACKAGES=1; export PIP_BREAK_SYSTEM_PACKAGES; }
created=0
if [ -n "$env" ]; then
  if [ ! -e "$env/bin/activate" ]; then
    created=1; say venv_created 1
    [ "$CHECK" = 0 ] || { say changed 1; exit 0; }
    eval "set -- $venv_words"
    command -v "$1" >/dev/null 2>&1 \
      || fail "Failed to find required executable \"$1\" (virtualenv_command)"
    out=$("$@" "$env" 2>&1) || fail "stdout: $out"
  fi
  pipbin=
  for c in pip3 pip pip2; do
    if [ -x "$env/bin/$c" ]; then pipbin=$env/bin/$c; break; fi
  done
  [ -n "$pipbin" ] || fail "Unable to find pip in the virtualenv, $env, under any of these" \
    "names: pip3, pip. Make sure pip is present in the virtualenv."
  py=$env/bin/python
  pipc() { "$pipbin" "$@"; }
elif [ -n "$executable" ]; then
  pipbin=$(command -v "$executable") \
    || fail "Unable to find any of $executable to use.  pip needs to be installed."
  py=$(sed -n '1s/^#![[:space:]]*\([^[:space:]]*\).*/\1/p' "$pipbin")
  [ -n "$py" ] || py=python3
  pipc() { "$pipbin" "$@"; }
else
  py=$(command -v python3 || command -v python) \
    || fail "Unable to find python3 or python to run pip"
  pipc() { "$py" -m pip.__main__ "$@"; }
fi
freeze() { pipc list --format=freeze 2>/dev/null || pipc freeze 2>/dev/null; }
counts() { NAMES=$NAMES "$py" -c "$CHECKER" 2>/dev/null; }
if [ "$CHECK" = 1 ]; then
  if [ "$simple_check" = 0 ]; then say changed 1; exit 0; fi
  eval "$(counts)"
  changed=0
  [ "$state" = present ] && [ "${missing:-1}" -gt 0 ] && changed=1
  [ "$state" = absent ] && [ "${present:-0}" -gt 0 ] && changed=1
  say changed "$changed"; exit 0
fi
# nothing to do: leave pip alone (Ansible runs it and reads "already satisfied")
if [ "$precheck" = 1 ]; then
  eval "$(counts)"
  if { [ "$state" = present ] && [ "${missing:-1}" = 0 ]; } \
    || { [ "$state" = absent ] && [ "${present:-1}" = 0 ]; }; then
    say changed "$created"; exit 0
  fi
fi
before=
[ "$compare_freeze" = 0 ] || before=$(freeze)
eval "set -- $pip_words"
out=$(pipc "$@" 2>"$chdir_err") && rc=0 || rc=$?
err=$(cat -- "$chdir_err"); rm -f -- "$chdir_err"
printf '%s\n' "$out" | sed 's/^/O /'
printf '%s\n' "$err" | sed 's/^/E /'
if [ $rc != 0 ]; then
  case "$state $out $err" in absent*"not installed"*) ;; *) say rc "$rc"; exit 0 ;; esac
fi
if [ "$state" = absent ]; then
  case "$out" in *"Successfully uninstalled"*) changed=1 ;; *) changed=0 ;; esac
elif [ "$compare_freeze" = 0 ]; then
  case "$out" in *"Successfully installed"*) changed=1 ;; *) changed=0 ;; esac
else
  after=$(freeze)
  if [ "$before" = "$after" ]; then changed=0; else changed=1; fi
fi
[ "$created" = 0 ] || changed=1
say changed "$changed"
exit 0
"""


def requirement(name: str, version: str | None) -> str:
    """`name` with `version` as Ansible's Package builds it (`1.0` means `==1.0`)."""
    if not version:
        return name
    version = version.strip()
    if version[0] in "<>=!~":
        return name + version
    return f"{name}=={version}"


def _is_vcs(name: str) -> bool:
    return any(name.startswith(p) for p in ("git+", "hg+", "svn+", "bzr+"))


class PipModule(Module):
    """name, version, requirements, virtualenv(+_command, _python, _site_packages), state,
    extra_args, editable, chdir, executable, umask, break_system_packages."""

    name: ClassVar[str] = "pip"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "name": {"type": ["array", "string"], "items": {"type": "string"}},
            "version": {"type": ["string", "number"]},
            "requirements": {"type": "string"},
            "virtualenv": {"type": "string"},
            "virtualenv_site_packages": {"type": "boolean", "default": False},
            "virtualenv_command": {"type": "string", "default": "virtualenv"},
            "virtualenv_python": {"type": "string"},
            "state": {"enum": list(STATE_ARGS), "default": "present"},
            "extra_args": {"type": "string"},
            "editable": {"type": "boolean", "default": False},
            "chdir": {"type": "string"},
            "executable": {"type": "string"},
            "umask": {"type": ["string", "integer"]},
            "break_system_packages": {"type": "boolean", "default": False},
        },
        "additionalProperties": False,
        "anyOf": [{"required": ["name"]}, {"required": ["requirements"]}],
        "x-expected": "name or requirements",
        "not": {
            "anyOf": [
                {"required": ["name", "requirements"]},
                {"required": ["executable", "virtualenv"]},
            ]
        },
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """Create the virtualenv, check what is installed, run pip when needed."""
        state = args.get("state", "present")
        names = _names(args.get("name"))
        version = args.get("version")
        if state == "latest" and version is not None:
            raise InputError("version is incompatible with state=latest")
        if version is not None:
            if len(names) > 1:
                raise InputError(
                    "'version' argument is ambiguous when installing multiple package "
                    "distributions. Please specify version restrictions next to each "
                    "package in 'name' argument."
                )
            if names and any(c in names[0] for c in "<>=!~"):
                raise InputError(
                    "The 'version' argument conflicts with any version specifier provided "
                    "along with a package name. Please keep the version specifier, but "
                    "remove the 'version' argument."
                )
        names = _requirements(args)
        extra = str(args.get("extra_args") or "")
        if args.get("editable") and "-e" not in extra.split(" "):
            extra = (extra + " -e").strip()
        venv_words = shlex.split(str(args.get("virtualenv_command") or "virtualenv"))
        if args.get("virtualenv_site_packages"):
            venv_words.append("--system-site-packages")
        venv_python = args.get("virtualenv_python")
        is_venv = "venv" in venv_words[-1:] or venv_words[0].endswith("pyvenv")
        if venv_python and is_venv:
            raise InputError(
                "virtualenv_python should not be used when using the venv module or pyvenv "
                "as virtualenv_command"
            )
        if venv_python:
            venv_words.append(f"-p{venv_python}")
        pip_words = [*STATE_ARGS[state], *shlex.split(extra)]
        requirements = args.get("requirements")
        pip_words += names if names else ["-r", str(requirements)]
        env = str(args.get("virtualenv") or "")
        chdir = str(args.get("chdir") or "")
        if env and chdir and not env.startswith("/"):
            env = f"{chdir.rstrip('/')}/{env}"
        umask = args.get("umask")
        if umask is not None:
            text = format(umask, "o") if isinstance(umask, int) else str(umask)
            if not text.isdigit() or any(c in "89" for c in text):
                raise InputError("umask must be an octal integer")
            umask = text
        plain = bool(names) and not extra and not requirements
        settings = (
            f"state={quote(state)} env={quote(env)} chdir={quote(chdir)} "
            f"executable={quote(args.get('executable') or '')} umask={quote(umask or '')} "
            f"bsp={int(bool(args.get('break_system_packages')))} CHECK={int(ctx.check)}\n"
            f"venv_words={quote(' '.join(quote(w) for w in venv_words))}\n"
            f"pip_words={quote(' '.join(quote(w) for w in pip_words))}\n"
            f"NAMES={quote(chr(10).join(names))}\n"
            f"simple_check={int(bool(names) and not extra and state != 'latest')} "
            f"precheck={int(plain and state in ('present', 'absent'))} "
            f"compare_freeze={int(bool(requirements) or any(_is_vcs(n) for n in names))}\n"
            f'chdir_err="$(mktemp)"\n'
            f"CHECKER={quote(_CHECKER)}\n"
        )
        return RemoteStep(settings + _BODY, timeout=None)

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Ansible's result keys: cmd, name, version, state, requirements, virtualenv,
        stdout, stderr."""
        report: dict[str, str] = {}
        out_lines: list[str] = []
        err_lines: list[str] = []
        for line in output.stdout.splitlines():
            if line.startswith("O "):
                out_lines.append(line[2:])
            elif line.startswith("E "):
                err_lines.append(line[2:])
            elif line in ("O", "E"):
                continue
            else:
                key, _, value = line.partition("=")
                report[key] = value
        state = args.get("state", "present")
        result: dict[str, Any] = {
            "cmd": ["pip", *STATE_ARGS[state], *_requirements(args)],
            "name": _names(args.get("name")) or None,
            "version": args.get("version"),
            "state": state,
            "requirements": args.get("requirements"),
            "virtualenv": args.get("virtualenv"),
            "stdout": "\n".join(out_lines),
            "stderr": "\n".join(err_lines),
        }
        if output.exit_code != 0:
            err = output.stderr
            at = err.rfind("machineroom: ")
            msg = err[at + len("machineroom: ") :].strip() if at >= 0 else err.strip()
            return Outcome("failed", msg=msg or f"pip: exit code {output.exit_code}", result=result)
        if "rc" in report:
            msg = f"stdout: {result['stdout']}\n\n:stderr: {result['stderr']}"
            return Outcome("failed", msg=msg.strip(), result={**result, "rc": int(report["rc"])})
        what = ", ".join(_requirements(args)) or str(args.get("requirements"))
        if report.get("changed") != "1":
            return Outcome("ok", msg=f"{what}: already {state}", result=result)
        verb = "would be" if ctx.check else "now"
        return Outcome("changed", msg=f"{what}: {verb} {state}", result=result)


def _requirements(args: Mapping[str, Any]) -> list[str]:
    """The names as pip gets them: `version` joined to a single name."""
    names = _names(args.get("name"))
    version = args.get("version")
    if version is not None and len(names) == 1 and not any(c in names[0] for c in "<>=!~"):
        return [requirement(names[0], str(version))]
    return names


def _names(value: object) -> list[str]:
    """`name` as a list (a string may hold several, comma-separated, as key=value gives)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [n.strip() for n in value.split(",") if n.strip()]
    if isinstance(value, list):
        return [str(n) for n in value]
    return [str(value)]
