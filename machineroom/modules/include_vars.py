"""`include_vars`: variables from YAML/JSON files on the controller, set for the host.

Pure like every module: the executor finds and reads the files (machineroom/executor/
varfiles.py: the role's `vars/`, the role, the playbook's `vars/`, the playbook, as Ansible
searches) and passes them in order as `args["__mr_loaded__"]`, a list of
`{"path": str, "vars": mapping}`. The module merges them (a later file wins, `hash_behaviour:
merge` merges mappings deeply), nests them under `name` when given, and returns them as
facts, which the executor keeps at include_vars' precedence (above task vars, below
set_fact). Never changed; the result carries `ansible_included_var_files` as Ansible's does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.modules.base import Module, ModuleContext, Outcome

# The key under which the executor passes the loaded files.
LOADED = "__mr_loaded__"


class IncludeVarsModule(Module):
    """`include_vars`: file (free form), dir, name, depth, files_matching, ignore_files,
    extensions, ignore_unknown_extensions, hash_behaviour."""

    name: ClassVar[str] = "include_vars"
    local: ClassVar[bool] = True
    free_form: ClassVar[str | None] = "file"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "file": {"type": "string", "minLength": 1},
            "dir": {"type": "string", "minLength": 1},
            "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            "depth": {"type": "integer", "minimum": 0, "default": 0},
            "files_matching": {"type": "string"},
            "ignore_files": {"type": "array", "items": {"type": "string"}},
            "extensions": {
                "type": "array",
                "items": {"type": "string"},
                "default": ["json", "yaml", "yml"],
            },
            "ignore_unknown_extensions": {"type": "boolean", "default": False},
            "hash_behaviour": {"enum": ["replace", "merge"]},
        },
        "additionalProperties": False,
        # one of file and dir; an empty task is refused as Ansible refuses it
        "oneOf": [{"required": ["file"]}, {"required": ["dir"]}],
    }

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """The loaded files' variables as facts; `ansible_included_var_files` in the result."""
        loaded = args.get(LOADED)
        if not isinstance(loaded, list):
            raise TypeError("include_vars: the executor must load the files first")
        merge = args.get("hash_behaviour") == "merge"
        values: dict[str, Any] = {}
        for entry in loaded:
            values = _deep_merge(values, entry["vars"]) if merge else {**values, **entry["vars"]}
        files = [str(entry["path"]) for entry in loaded]
        facts = {str(args["name"]): values} if args.get("name") else values
        result = {"ansible_included_var_files": files}
        names = ", ".join(sorted(facts)) or "no variables"
        return Outcome("ok", msg=f"{names} from {len(files)} file(s)", result=result, facts=facts)


def _deep_merge(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """`new` over `old`, mappings merged key by key (Ansible's hash_behaviour=merge)."""
    merged = dict(old)
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
