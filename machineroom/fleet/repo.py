"""Finding the fleet files (alerts.yml, schedules.yml) that sit in the inventory's repo."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def find_repo_file(inventory_paths: Sequence[str], name: str) -> Path | None:
    """The file `name` in the inventory's folder or the nearest folder above it, up to the
    top of its git repository (or the filesystem root when it is not in one); None if none.

    So `alerts.yml` can sit beside `inventory.yml`, or at the top of a repo whose inventories
    live in `inventories/prod/`.
    """
    for given in inventory_paths:
        start = Path(given).resolve()
        folder = start if start.is_dir() else start.parent
        for candidate in (folder, *folder.parents):
            path = candidate / name
            if path.is_file():
                return path
            if (candidate / ".git").exists():
                break
    return None
