"""`ModuleContext.local_files`: the controller's files a module reads and writes (fetch).

Relative paths are the playbook folder's, as Ansible's `fetch` resolves `dest` (path_dwim).
Writes go to a temp file beside the target and are renamed over it: a reader never sees a
half-written file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from machineroom.errors import InputError


class PlaybookFiles:
    """Local files, relative paths taken from `base` (the playbook's folder)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def resolve(self, path: str) -> str:
        """The absolute, normalised local path `path` names."""
        return os.path.normpath(os.path.join(self.base, os.path.expanduser(path)))

    def digest(self, path: str, algorithm: str = "sha1") -> str | None:
        """The file's hex digest, None when it does not exist or is not a file."""
        target = Path(self.resolve(path))
        if not target.is_file():
            return None
        h = hashlib.new(algorithm)
        with target.open("rb") as f:
            for piece in iter(lambda: f.read(1 << 20), b""):
                h.update(piece)
        return h.hexdigest()

    def write(self, path: str, data: bytes) -> None:
        """Write `data` atomically, making the folders."""
        target = Path(self.resolve(path))
        if target.is_dir():
            raise InputError(f"{target} is an existing directory")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                # an existing file keeps its mode, as Ansible's open(dest, "wb") does
                os.chmod(temp, target.stat().st_mode & 0o7777 if target.exists() else 0o644)
                os.replace(temp, target)
            except BaseException:
                os.unlink(temp)
                raise
        except OSError as exc:
            raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None
