"""A run on a Dask cluster (`--cluster`): the runner made before the run's row is opened, so
a bad address, an unreachable scheduler, a zone without a worker or secrets bound for a plain
tcp:// cluster are one clear error before anything runs (docs/distributed.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from machineroom.cluster.runner import ClusterRunner
    from machineroom.inventory.model import Host
    from machineroom.runs.connect import ConnectSettings
    from machineroom.runs.prepare import Prepared
    from machineroom.runs.workspace import Workspace


def open_cluster_runner(
    workspace: Workspace, connect: ConnectSettings, prepared: Prepared
) -> ClusterRunner:
    """The ClusterRunner of `connect.cluster`, connected and checked."""
    from machineroom.cluster.address import parse_cluster
    from machineroom.cluster.client import open_cluster
    from machineroom.cluster.payload import connecting_for, refuse_plain, secrets_carried
    from machineroom.cluster.runner import ClusterRunner
    from machineroom.masking import SECRETS
    from machineroom.runs.connect import connect_options
    from machineroom.runs.settings import current_settings

    assert connect.cluster is not None
    ca, cert, key = connect.cluster_tls
    address = parse_cluster(connect.cluster, tls_ca=ca, tls_cert=cert, tls_key=key)
    hosts = list({h.id: h for hosts in prepared.play_hosts for h in hosts}.values())
    connecting = connecting_for(connect_options(workspace, connect), hosts)
    vault_key = _vault_key(prepared, hosts)
    carried = secrets_carried(connecting, hosts, vault_key, SECRETS.values())
    if carried and not address.encrypted:
        refuse_plain(address.text, carried, current_settings().source("cluster"))
    cluster = open_cluster(address, timeout=connect.connect_timeout)
    runner = ClusterRunner(cluster, connecting, vault_key=vault_key)
    try:
        runner.check_zones(hosts)
    except BaseException:
        runner.close()
        raise
    return runner


def _vault_key(prepared: Prepared, hosts: list[Host]) -> Any:
    """The vault key workers need: the one loading already read; else the run's when a
    variable or password is vault-encrypted (read, or asked for, here) or a password source
    that needs no prompt is named (files met at run time, include_vars, may be vaults)."""
    from machineroom.vault import current_key, loaded_key, source_named

    key = loaded_key()
    if key is not None:
        return key
    vaulted = [
        s
        for h in hosts
        for s in (h.password, h.become_password)
        if s is not None and s.kind == "vault"
    ]
    if prepared.vault_in_vars or vaulted or source_named():
        return current_key()
    return None
