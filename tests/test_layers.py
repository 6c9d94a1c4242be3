"""The layering rules of STYLE.md, checked on the source: who may import what."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "machineroom"

# third-party module -> the only package folders allowed to import it
ALLOWED = {
    "click": ("cli",),
    "fabric": ("connection",),
    "paramiko": ("connection",),
    "invoke": ("connection",),
    "sqlite_utils": ("state",),
    "sqlite3": ("state",),
    "jsonschema": ("schema",),
    "fastapi": ("web",),
    "starlette": ("web",),
    "uvicorn": ("web", "cli"),
    "distributed": ("cluster",),
    "dask": ("cluster",),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_third_party_imports_stay_in_their_layer() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for module in imported_modules(path) & set(ALLOWED):
            if part not in ALLOWED[module]:
                offenders.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert offenders == []


def test_cli_start_does_not_import_heavy_libraries() -> None:
    import subprocess
    import sys

    code = (
        "import sys, machineroom.cli as c; "
        "print(','.join(m for m in ('fabric', 'paramiko', 'jsonschema', 'sqlite_utils', 'jinja2')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- the internal layer order (STYLE.md "Package layout (→ may import)") ---------------------

# Each file or folder directly under machineroom/ belongs to one layer; a name not listed is
# its own layer. templating.py, filters.py, filters_more.py and lookups.py are one layer (the
# Jinja2 environment and what it offers); vault.py and ansible_vault.py are one (secrets).
LAYER_OF = {
    "filters": "templating",
    "filters_more": "templating",
    "lookups": "templating",
    "ansible_vault": "vault",
}

# layer -> the layers its modules may import at run time, bottom layer first: the order of
# this table is the layer order. As in STYLE.md, with these readings of it:
# - the package's own __init__ (__version__), errors and unsafe are plain types, and masking
#   (secrets replaced by *** wherever they leave: messages, logs, the DB, the console) imports
#   nothing: every layer may use them (FOUNDATION);
# - vault is pure cryptography over text; yamlio opens a whole-file vault when it loads one,
#   so vault sits below yamlio. lab (real sshd hosts for tests and `machineroom lab`) needs
#   nothing but errors;
# - templating sits low: it needs only yamlio (to_yaml/from_yaml), and the playbook loader
#   evaluates templates at load, so playbook may use it;
# - fleet reads its own YAML files (alerts, schedules) with yamlio and schema, and matches
#   alert rules to the inventory's hosts (inventory; vault for a notifier's secret settings);
#   the dashboard shows the inventory's groups and hosts (web -> inventory);
# - cli may start the other front ends (`serve` -> web, fleet commands -> fleet) and lab;
#   the dashboard shows fleet's schedules and alerts (web -> fleet); never the other way.
FOUNDATION = {"__init__", "errors", "unsafe", "masking"}
# what turns files into a plan: the executor and runs may use all of it
LOADING = {"vault", "yamlio", "schema", "inventory", "modules", "templating", "playbook"}
LOADING |= {"vars", "plan"}
LAYERS: dict[str, set[str]] = {
    "__init__": set(),
    "errors": set(),
    "unsafe": set(),
    "masking": set(),
    "lab": set(),
    "vault": set(),
    "yamlio": {"vault"},
    "schema": {"yamlio"},
    "inventory": {"schema", "yamlio"},
    "modules": set(),
    "templating": {"yamlio"},
    "playbook": {"modules", "schema", "yamlio", "templating"},
    "vars": {"playbook", "inventory", "templating", "yamlio"},
    "plan": {"playbook", "vars", "inventory", "modules", "templating", "schema", "yamlio"},
    "scan": set(),
    "connection": {"inventory"},
    "events": set(),
    "executor": LOADING | {"connection", "events"},
    "cluster": LOADING | {"connection", "events", "executor"},
    "state": {"events"},
    "report": {"events"},
    "runs": LOADING | {"scan", "connection", "events", "executor", "cluster", "state", "report"},
    "fleet": {"runs", "state", "schema", "yamlio", "inventory", "vault"},
    "web": {"runs", "state", "fleet", "inventory"},
    "cli": {"runs", "report", "fleet", "web", "lab"},
    "__main__": {"cli"},
}
RANK = {layer: number for number, layer in enumerate(LAYERS)}

# (importer, imported layer) pairs allowed to break the order. Empty since issue 12 moved the
# CLI's orchestration into runs/ and fleet/: an import against the order is fixed, not listed.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class InternalImport:
    """One `machineroom.*` import in a file: the layer it reaches, and whether it is only for
    type checking (inside `if TYPE_CHECKING:`)."""

    importer: str  # path under machineroom/, e.g. "fleet/collect.py"
    module: str  # the dotted module imported
    type_only: bool


def layer_of(module: str) -> str:
    """`machineroom.executor.adhoc` -> "executor"; `machineroom.filters` -> "templating"."""
    part = module.split(".")[1] if "." in module else "__init__"
    return LAYER_OF.get(part, part)


def internal_imports(path: Path) -> list[InternalImport]:
    """Every machineroom module `path` imports: top level, in functions, under TYPE_CHECKING;
    relative imports resolved; `from machineroom import x` counted as `machineroom.x`."""
    tree = ast.parse(path.read_text(), str(path))
    rel = path.relative_to(PACKAGE)
    package = ["machineroom", *rel.parts[:-1]]
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            names = [base]
            if base == "machineroom":  # `from machineroom import filters`
                names = [
                    f"machineroom.{alias.name}"
                    if (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").exists()
                    else "machineroom"  # a name the package itself defines (__version__)
                    for alias in node.names
                ]
        for name in names:
            if name == "machineroom" or name.startswith("machineroom."):
                found.append(InternalImport(str(rel), name, id(node) in type_only))
    return found


def layer_problems() -> set[tuple[str, str]]:
    """(importer, imported layer) for every import the table does not allow.

    Run-time imports (top level or in a function) must reach a layer the importer's row
    lists, FOUNDATION, or the importer's own layer. Imports only under TYPE_CHECKING are
    exempt from the rows, since they create no import at run time and annotations may name a
    type a lower layer hands along (a StateStore passed through); they must still not point
    to a higher layer.
    """
    problems = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        importer_layer = LAYER_OF.get(rel.parts[0].removesuffix(".py"), rel.parts[0])
        importer_layer = importer_layer.removesuffix(".py")
        assert importer_layer in LAYERS, f"{rel}: layer {importer_layer!r} not in LAYERS"
        for found in internal_imports(path):
            target = layer_of(found.module)
            assert target in LAYERS, f"{rel}: imports {found.module}, layer {target!r} unknown"
            if target == importer_layer or target in FOUNDATION:
                continue
            if found.type_only:
                allowed = RANK[target] < RANK[importer_layer]
            else:
                allowed = target in LAYERS[importer_layer]
            if not allowed:
                problems.add((str(rel), target))
    return problems


def test_layer_table_only_looks_down() -> None:
    for layer, allowed in LAYERS.items():
        upward = sorted(a for a in allowed if RANK[a] >= RANK[layer])
        assert upward == [], f"{layer} may import {upward}, which are not below it"


def test_internal_imports_follow_the_layer_order() -> None:
    problems = layer_problems()
    new = sorted(problems - KNOWN_VIOLATIONS)
    gone = sorted(KNOWN_VIOLATIONS - problems)
    assert new == [], (
        f"imports against the layer order (STYLE.md), fix them, never list them: {new}"
    )
    assert gone == [], f"fixed, remove these from KNOWN_VIOLATIONS: {gone}"


def test_runs_imports_no_click() -> None:
    """The application layer stays usable without the CLI: importing every module of runs/
    loads no click, directly or through anything it imports."""
    import subprocess
    import sys

    modules = sorted(
        "machineroom.runs." + p.stem
        for p in (PACKAGE / "runs").glob("*.py")
        if p.stem != "__init__"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print('click' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
