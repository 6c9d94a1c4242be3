"""`getent`: entries of a name service database as facts, as Ansible's `ansible.builtin.getent`.

One read-only remote command, `getent [-s SERVICE] DATABASE [KEY]`; the entries become the
fact `getent_<database>`: a mapping of each entry's first field to its other fields (split
on `:` for passwd, shadow, group and gshadow, on `split` when given, else on whitespace; a
key found twice maps to a list of lists). A key not found fails unless `fail_key: false`
(then it maps to null). Never changed; check mode runs it.
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

COLON_DATABASES = ("passwd", "shadow", "group", "gshadow")
MISSING = "__machineroom_no_getent__"
EXIT_MESSAGES = {
    1: "Missing arguments, or database unknown.",
    2: "One or more supplied key could not be found in the database.",
    3: "Enumeration not supported on this database.",
}


def parse_entries(text: str, split: str | None) -> dict[str, Any]:
    """getent's lines as Ansible's module stores them."""
    entries: dict[str, Any] = {}
    seen: dict[str, int] = {}
    for line in text.splitlines():
        record = line.split(split) if split else line.split()
        if not record:
            continue
        name, rest = record[0], record[1:]
        if name in seen:
            if seen[name] == 1:
                entries[name] = [entries[name]]
            entries[name].append(rest)
            seen[name] += 1
        else:
            entries[name] = rest
            seen[name] = 1
    return entries


class GetentModule(Module):
    """`getent`: database, key, service, split, fail_key."""

    name: ClassVar[str] = "getent"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "database": {"type": "string", "minLength": 1},
            "key": {"type": "string"},
            "service": {"type": "string"},
            "split": {"type": "string", "minLength": 1},
            "fail_key": {"type": "boolean", "default": True},
        },
        "required": ["database"],
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """`getent`, read-only: the same in check mode."""
        words = ["getent"]
        if args.get("service") is not None:
            words += ["-s", quote(args["service"])]
        words.append(quote(args["database"]))
        if args.get("key") is not None:
            words.append(quote(args["key"]))
        return RemoteStep(
            f"command -v getent >/dev/null 2>&1 || {{ echo {MISSING} >&2; exit 127; }}\n"
            f"exec {' '.join(words)}"
        )

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """`ansible_facts.getent_<database>`; the failures Ansible names by exit code."""
        database = str(args["database"])
        tree = f"getent_{database}"
        if output.exit_code == 0:
            split = args.get("split")
            if split is None and database in COLON_DATABASES:
                split = ":"
            entries = parse_entries(output.stdout, split)
            return Outcome("ok", msg=f"{len(entries)} {database} entries", facts={tree: entries})
        if MISSING in output.stderr:
            return Outcome("failed", msg="getent is not installed on the host")
        msg = EXIT_MESSAGES.get(output.exit_code, output.stderr.strip() or "Unexpected failure!")
        if output.exit_code == 2 and not args.get("fail_key", True):
            return Outcome("ok", msg=msg, facts={tree: {str(args.get("key")): None}})
        return Outcome("failed", msg=msg, result={"rc": output.exit_code})
