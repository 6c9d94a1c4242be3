"""Where and as whom a task connects: `delegate_to`, `connection: local`, `remote_user`,
`port`, and how it becomes another user (`become_method`, `become_flags`).

As in ansible-core, a delegated task keeps the variables of the host it runs for
(`inventory_hostname` stays that host's); only the way to connect (address, user, port, key,
passwords) comes from the delegate. The delegate's connection is the run's pooled one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from machineroom.connection.base import Become
from machineroom.errors import InputError
from machineroom.executor.hoststate import HostState, PlayShared, RunShared
from machineroom.filters import to_bool
from machineroom.inventory.model import Host
from machineroom.masking import add_secret
from machineroom.playbook.model import Task
from machineroom.templating import Where

# Names that mean the workstation itself when the inventory has no host of that name.
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
BECOME_METHODS = ("sudo", "su")


@dataclass(frozen=True)
class Target:
    """The host a task's command goes to, and the inventory id of the delegate (or None)."""

    host: Host
    delegate: str | None = None


def delegate_host(name: str, origin: Host, run: RunShared) -> Host:
    """The host `delegate_to: name` connects to: the inventory's host of that name, the
    workstation for `localhost`, else `name` as an address reached like `origin`."""
    known = run.inventory.hosts.get(name)
    if known is not None:
        return known
    if name in LOCAL_NAMES:
        return Host(id="localhost", host="127.0.0.1", connection="local", groups=("all",))
    # Not in the inventory: Ansible makes an implicit host with that address; its user and
    # key are the delegating host's (Ansible's would be the defaults of ansible.cfg).
    return Host(id=name, host=name, user=origin.user, ssh_key=origin.ssh_key, groups=("all",))


def task_target(
    task: Task,
    state: HostState,
    play_state: PlayShared,
    run: RunShared,
    variables: dict[str, Any],
    where: Where,
) -> Target:
    """Where the task's command runs on this host (per loop item: `delegate_to: "{{ item }}"`)."""
    host = state.host
    delegate: str | None = None
    if task.delegate_to is not None:
        name = str(run.templar.render(task.delegate_to, variables, where)).strip()
        if not name:
            raise InputError("delegate_to gave an empty host name", where.location, "a host")
        host = delegate_host(name, state.host, run)
        delegate = host.id
    if task.connection == "local":
        host = replace(host, connection="local")
    # remote_user wins over the inventory's user: machineroom needs a user for every host,
    # so the inventory cannot leave it unsaid (in Ansible an ansible_user outranks it). The
    # inventory's port does outrank the `port` keyword, as ansible_port does.
    user = task.remote_user or play_state.play.remote_user
    if user:
        host = replace(host, user=str(run.templar.render(user, variables, where)))
    port = task.port if task.port is not None else play_state.play.port
    if port is not None and "port" not in host.field_locations:
        host = replace(host, port=_port(run.templar.render(port, variables, where), where))
    return Target(host, delegate)


def _port(value: Any, where: Where) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if not 0 < number < 65536:
        raise InputError(f"port: {value!r} is not a port number", where.location, "1-65535")
    return number


def task_become(
    task: Task,
    scope_become: bool | None,
    scope_user: str | None,
    target: Host,
    play_state: PlayShared,
    run: RunShared,
    variables: dict[str, Any],
    where: Where,
) -> Become | None:
    """How the task becomes another user: task > block > play keywords, the variables
    `ansible_become*` above them (as in Ansible); the password from the target's inventory."""
    wanted = task.become if task.become is not None else scope_become
    if wanted is None:
        wanted = play_state.play.become
    if "ansible_become" in variables:
        wanted = to_bool(run.templar.render(variables["ansible_become"], variables, where))
    if not wanted:
        return None
    method = task.become_method or play_state.play.become_method or "sudo"
    method = str(
        run.templar.render(variables.get("ansible_become_method", method), variables, where)
    )
    if method not in BECOME_METHODS:
        raise InputError(f"become_method '{method}' is not supported", where.location, "sudo or su")
    flags = task.become_flags or play_state.play.become_flags or ""
    flags = str(run.templar.render(variables.get("ansible_become_flags", flags), variables, where))
    user = task.become_user or scope_user or play_state.play.become_user or "root"
    user = str(run.templar.render(variables.get("ansible_become_user", user), variables, where))
    password = _become_password(variables, run, where)
    if password is None:
        secret = target.become_password or target.password
        password = secret.reveal(run.decrypt) if secret else None
    return Become(user=user, password=password, method=method, flags=flags.strip())


def _become_password(variables: dict[str, Any], run: RunShared, where: Where) -> str | None:
    """`ansible_become_password` (or `_pass`) set as a play, task or role variable, as
    Ansible reads it (the inventory's own is the host's `become_password` field)."""
    for name in ("ansible_become_password", "ansible_become_pass"):
        if variables.get(name) is not None:
            value = str(run.templar.render(variables[name], variables, where))
            add_secret(value)
            return value
    return None


def delegate_state(play_state: PlayShared, delegate: str | None) -> HostState | None:
    """The play's state of the delegated host (where `delegate_facts` puts facts), if any."""
    if delegate is None:
        return None
    return next((h for h in play_state.hosts if h.host.id == delegate), None)
