"""The layering rules of STYLE.md, checked on the source: who may import what."""

from __future__ import annotations

import ast
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
