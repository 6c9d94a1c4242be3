"""Host keys a dashboard action met and refused, and an admin's "Trust this key".

A run records, in `runs.summary.host_keys`, each host whose key was refused with the key the
server presented during that run (connection/hostkeys.py `offered_key`: its known_hosts
name, type, base64 key, SHA256 fingerprint, and `state`: unknown, changed or revoked). The
action page shows them; an admin may trust an unknown one. Trusting writes exactly the key
that was shown (read back from the run, checked against the fingerprint the form sent),
never one fetched again from the host: a key fetched at trust time could be another than
the one the admin read. A changed or revoked key is never offered: the old entry must be
removed by hand first (`ssh-keygen -R`), which is a decision about that host, not a click.

Before writing, the known_hosts name the run recorded must be a plain host name or
`[host]:port`, and one the inventory gives that host now (its address and port, or its jump
host's); the key's type is the one its own bytes name. The key is checked again, under the
file's lock, against every file a run reads (the project's, `serve --known-hosts`', the
user's, the system's): another key for that name in any of them is a changed key, refused.

Each trust is one audit-log entry of its own (`audit_log.action` `trust host key TYPE
SHA256:...`, an empty `command` and no exit code: nothing was sent to the host), under the
run that refused the key, and a line in the server's log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from machineroom.errors import HostKeyError, InputError
from machineroom.inventory.model import Inventory
from machineroom.runs.hostkeys import (
    expected_key_names,
    key_fingerprint,
    key_is_known,
    remove_command,
    run_known_hosts,
    trust_host_key,
)
from machineroom.state import StateStore
from machineroom.state.records import RunRow
from machineroom.web.data import natural_key
from machineroom.web.errors import ApiError

log = logging.getLogger("machineroom.web")


@dataclass(frozen=True)
class HostKeySettings:
    """Where the dashboard's runs look for host keys: the project's known_hosts (where a
    trusted key is written) and the extra files `serve --known-hosts` named."""

    project_file: str
    extra_files: tuple[str, ...] = ()

    def files(self) -> tuple[str, ...]:
        """Every file a run of the dashboard checks, the project's first."""
        return (self.project_file, *self.extra_files)


def offered_keys(run: RunRow | None, settings: HostKeySettings) -> list[dict[str, Any]]:
    """The keys the run refused, each with `trusted_now` (the project's files hold it now,
    e.g. trusted since: a rerun will accept it) and `remove` (for a changed key, the command
    that removes the old entry)."""
    if run is None:
        return []
    found = run.summary.get("host_keys")
    if not isinstance(found, list):
        return []
    keys = []
    for item in found:
        if not isinstance(item, dict) or not _well_formed(item):
            continue
        shown = dict(item)
        try:
            shown["trusted_now"] = key_is_known(settings.files(), item["name"], item["key"])
        except InputError:
            continue  # not a key: nothing to show or trust
        if item.get("state") == "changed" and item.get("known_file"):
            shown["remove"] = remove_command(item["name"], item["known_file"])
        keys.append(shown)
    return sorted(keys, key=lambda k: natural_key(str(k["host"])))


def trust_offered_key(
    store: StateStore,
    run: RunRow | None,
    settings: HostKeySettings,
    host: str,
    shown_fingerprint: str,
    by: str,
    inventory: Inventory | None,
) -> dict[str, Any]:
    """Add to the project's known_hosts the key `host` presented in `run`, if it is the one
    whose fingerprint the admin was shown (`shown_fingerprint`); audit it. 404 when the run
    refused no key of that host, 409 when the fingerprints differ, the key is not unknown
    (changed, revoked) or a file a run reads now holds another key for that name; 422 when
    the recorded name is not the inventory host's (or its jump host's) known_hosts name now,
    or not a plain name at all."""
    offered = next((k for k in offered_keys(run, settings) if k.get("host") == host), None)
    if run is None or offered is None:
        raise ApiError(404, f"this action's run refused no host key of {host!r}")
    if offered["fingerprint"] != shown_fingerprint:
        raise ApiError(
            409,
            f"{host} presented {offered['fingerprint']} in run {run.id}, not "
            f"{shown_fingerprint}; reload the page and check the fingerprint again",
        )
    if offered.get("state") != "unknown":
        raise ApiError(
            409,
            f"the key of {host} is {offered.get('state')}, not unknown: it is never trusted "
            "from the dashboard (remove the old entry first, then run again)",
        )
    name, key, key_type = str(offered["name"]), str(offered["key"]), str(offered["key_type"])
    if key_fingerprint(key) != shown_fingerprint:  # the recorded key is the shown one
        raise ApiError(409, f"run {run.id} recorded a damaged key for {host}")
    expected = expected_key_names(inventory, host) if inventory is not None else []
    if name not in expected:
        now = " or ".join(expected) or "no host of that name"
        raise ApiError(
            422,
            f"run {run.id} recorded the key of {host} under {name!r}, but the inventory "
            f"connects to {now} now: not trusted (run again to see the key it presents)",
        )
    try:
        added = trust_host_key(
            settings.project_file, name, key_type, key, run_known_hosts(settings.files())
        )
    except HostKeyError as exc:
        raise ApiError(409, f"not trusted: {exc.reason}") from None
    except InputError as exc:
        raise ApiError(422, f"not trusted: {exc}") from None
    except OSError as exc:
        raise ApiError(500, f"cannot write {settings.project_file}: {exc.strerror}") from None
    if added:
        store.record_command(
            run.id,
            host,
            "",  # nothing was sent to the host
            None,
            0.0,
            action=(
                f"trust host key {key_type} {shown_fingerprint} for {name} "
                f"(dashboard: {by!r}, added to {settings.project_file})"
            ),
        )
        log.warning(
            "host key %s %s of %s (%s) trusted by %r", key_type, shown_fingerprint, host, name, by
        )
    return {"host": host, "name": name, "fingerprint": shown_fingerprint, "added": added}


def _well_formed(item: dict[str, Any]) -> bool:
    keys = ("host", "name", "key_type", "key", "fingerprint", "state")
    return all(isinstance(item.get(k), str) for k in keys)
