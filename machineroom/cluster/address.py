"""The `--cluster` setting: where hosts walk when not in this process.

`local:N` starts N worker processes on this machine (TLS with a throwaway certificate);
`tls://HOST:PORT` is a Dask scheduler reached over TLS (the CA, certificate and key come
from `cluster_tls_ca`, `cluster_tls_cert`, `cluster_tls_key` in machineroom.yml or Dask's
own configuration); `tcp://HOST:PORT` is a plain one, refused for a run that carries secrets.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from machineroom.errors import UsageError

LOCAL = re.compile(r"local:(\d+)")
REMOTE = re.compile(r"(tls|tcp)://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})")
MAX_LOCAL_WORKERS = 256


@dataclass(frozen=True)
class ClusterAddress:
    """A parsed `--cluster` value and the TLS files to reach it with."""

    text: str
    local_workers: int = 0  # local:N: N; 0 for a scheduler's address
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @property
    def is_local(self) -> bool:
        """Whether the cluster is started here, for this run only."""
        return self.local_workers > 0

    @property
    def encrypted(self) -> bool:
        """Whether everything sent to workers travels under TLS."""
        return self.is_local or self.text.startswith("tls://")

    def security(self) -> Any:
        """Dask's `Security` for this address: the named files, else Dask's configuration;
        a plain tcp:// address gets none."""
        from distributed.security import Security

        if self.is_local:
            return Security.temporary()
        if not self.encrypted:
            return Security()
        named = (self.tls_ca, self.tls_cert, self.tls_key)
        if not any(named):
            return Security(require_encryption=True)  # dask's config names the files
        for label, path in zip(
            ("cluster_tls_ca", "cluster_tls_cert", "cluster_tls_key"), named, strict=False
        ):
            if not path:
                raise UsageError(f"{label}: a tls:// cluster needs all three TLS files")
            if not os.path.isfile(path):
                raise UsageError(f"{label}: {path}: no such file")
        return Security(
            tls_ca_file=self.tls_ca,
            tls_client_cert=self.tls_cert,
            tls_client_key=self.tls_key,
            require_encryption=True,
        )


def parse_cluster(
    text: str,
    *,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> ClusterAddress:
    """The ClusterAddress `text` names; anything else is a UsageError saying what is expected."""
    text = text.strip()
    local = LOCAL.fullmatch(text)
    if local:
        workers = int(local.group(1))
        if not 1 <= workers <= MAX_LOCAL_WORKERS:
            raise UsageError(f"--cluster {text}: local:N takes 1 to {MAX_LOCAL_WORKERS} workers")
        return ClusterAddress(text, local_workers=workers)
    remote = REMOTE.fullmatch(text)
    if remote is None or not 0 < int(remote.group(3)) < 65536:
        raise UsageError(
            f"--cluster {text!r}: expected local:N (N worker processes here), "
            "tls://HOST:PORT or tcp://HOST:PORT (a Dask scheduler)"
        )
    return ClusterAddress(text, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
