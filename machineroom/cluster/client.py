"""Reaching the cluster: a Dask client on the scheduler (or on a local cluster started for
the run), the workers it has, and which zone each works in.

A worker started with a `zone-NAME` resource (`dask worker ... --resources zone-eu=1`) works
on the hosts whose inventory variable `zone` is NAME, and only those; hosts without a zone go
to workers without one (to every worker when all have a zone).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from machineroom.cluster.address import ClusterAddress
from machineroom.errors import UsageError
from machineroom.inventory.model import Host

ZONE_PREFIX = "zone-"
CONNECT_TIMEOUT = 10.0  # seconds to reach the scheduler before giving up (--connect-timeout)


@dataclass(frozen=True)
class Worker:
    """One worker of the cluster: its address, name, threads and zones."""

    address: str
    name: str
    threads: int
    zones: frozenset[str] = field(default_factory=frozenset)


class Cluster:
    """A connected cluster; `close()` ends the client (and a local cluster it started)."""

    def __init__(self, address: ClusterAddress, client: Any, local: Any = None) -> None:
        self.address = address
        self.client = client
        self._local = local

    def workers(self) -> list[Worker]:
        """The workers the scheduler knows now."""
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        found = []
        for addr, worker in sorted(info.items()):
            resources = worker.get("resources") or {}
            zones = frozenset(
                str(k)[len(ZONE_PREFIX) :] for k in resources if str(k).startswith(ZONE_PREFIX)
            )
            found.append(
                Worker(addr, str(worker.get("name", addr)), int(worker.get("nthreads", 1)), zones)
            )
        return found

    def close(self) -> None:
        """End the client, and the local cluster if this run started one."""
        with contextlib.suppress(Exception):
            self.client.close(timeout=5)
        if self._local is not None:
            with contextlib.suppress(Exception):
                self._local.close(timeout=10)


def open_cluster(address: ClusterAddress, timeout: float = CONNECT_TIMEOUT) -> Cluster:
    """A client on the cluster `address` names, with at least one worker; the scheduler
    unreachable (or refusing our certificate) is one UsageError naming the address."""
    _quiet_dask()
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError(
            f"--cluster {address.text}: Dask distributed is not installed "
            "(pip install 'machineroom[cluster]')"
        ) from None
    security = address.security()
    if address.is_local:
        return _local_cluster(address, security, LocalCluster, Client)
    try:
        client = Client(address.text, security=security, timeout=timeout)
    except Exception as exc:  # OSError, TimeoutError, ssl.SSLError, Dask's own: all one
        raise UsageError(
            f"--cluster {address.text}: the scheduler cannot be reached: {_reason(exc)}"
        ) from None
    cluster = Cluster(address, client)
    if not cluster.workers():
        cluster.close()
        raise UsageError(f"--cluster {address.text}: the scheduler has no worker")
    return cluster


def _local_cluster(
    address: ClusterAddress, security: Any, local_cluster: Any, client: Any
) -> Cluster:
    """N worker processes on this machine for this run, TLS with a throwaway certificate."""
    try:
        local = local_cluster(
            n_workers=address.local_workers,
            threads_per_worker=2,
            processes=True,
            security=security,
            host="127.0.0.1",
            dashboard_address=None,
            memory_limit=0,
        )
    except Exception as exc:  # a worker process that could not start
        raise UsageError(
            f"--cluster {address.text}: the local cluster did not start: {_reason(exc)}"
        ) from None
    return Cluster(address, client(local, security=security), local)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _quiet_dask() -> None:
    """Dask logs to stderr at INFO; a run's console is ours (warnings still show)."""
    for name in (
        "distributed",
        "distributed.client",
        "distributed.scheduler",
        "distributed.worker",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)


def host_zone(host: Host) -> str | None:
    """The host's `zone` variable, or None."""
    zone = host.vars.get("zone")
    return None if zone in (None, "") else str(zone)


def zone_workers(
    hosts: Sequence[Host], workers: Sequence[Worker], cluster: str
) -> dict[str | None, list[Worker]]:
    """Zone (None: no zone) -> the workers its hosts go to; a zone without a worker is a
    UsageError naming the zone, its hosts and how to start a worker for it."""
    plain = [w for w in workers if not w.zones] or list(workers)
    found: dict[str | None, list[Worker]] = {}
    missing: dict[str, list[str]] = {}
    for host in hosts:
        zone = host_zone(host)
        if zone in found:
            continue
        if zone is None:
            found[None] = plain
            continue
        matching = [w for w in workers if zone in w.zones]
        if matching:
            found[zone] = matching
        else:
            missing.setdefault(zone, []).append(host.id)
    if missing:
        for host in hosts:
            zone = host_zone(host)
            if zone in missing and host.id not in missing[zone]:
                missing[zone].append(host.id)
        lines = [
            f"zone '{zone}' (hosts {', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}): "
            f"no worker of {cluster} has the resource {ZONE_PREFIX}{zone}; start one inside "
            f"that network with: dask worker {cluster} --resources {ZONE_PREFIX}{zone}=1"
            for zone, ids in sorted(missing.items())
        ]
        raise UsageError("\n".join(lines))
    return found


def spread(
    hosts: Sequence[Host], by_zone: Mapping[str | None, Sequence[Worker]]
) -> tuple[list[tuple[Worker, list[Host]]], list[Host]]:
    """Hosts dealt to workers: each zone's hosts in inventory order, in contiguous runs of
    near-equal size over that zone's workers (weighted by their threads); and the hosts no
    worker can take (their zone's workers are gone)."""
    groups: dict[str | None, list[Host]] = {}
    for host in hosts:
        groups.setdefault(host_zone(host), []).append(host)
    shards: list[tuple[Worker, list[Host]]] = []
    uncovered: list[Host] = []
    for zone, members in groups.items():
        workers = list(by_zone.get(zone, ()))[: len(members)]
        if not workers:
            uncovered.extend(members)
            continue
        total = sum(w.threads for w in workers)
        start = 0
        for index, worker in enumerate(workers):
            if index == len(workers) - 1:
                size = len(members) - start
            else:
                size = max(1, round(len(members) * worker.threads / total))
                size = min(size, len(members) - start - (len(workers) - index - 1))
            if size > 0:
                shards.append((worker, members[start : start + size]))
            start += size
    return shards, uncovered


def shares(at_once: int, sizes: Sequence[int]) -> list[int]:
    """`at_once` (--forks) split over shards of these sizes, in proportion (largest
    remainders first), each at least 1 and at most its size."""
    total = sum(sizes)
    if at_once >= total:
        return list(sizes)
    exact = [at_once * size / total for size in sizes]
    result = [min(size, max(1, int(x))) for size, x in zip(sizes, exact, strict=True)]
    order = sorted(range(len(sizes)), key=lambda i: exact[i] - int(exact[i]), reverse=True)
    left = at_once - sum(result)
    for i in order:
        if left <= 0:
            break
        if result[i] < sizes[i]:
            result[i] += 1
            left -= 1
    return result
