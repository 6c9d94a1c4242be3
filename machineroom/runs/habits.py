"""ansible-playbook's common flags as plain data, and what each does to a run, as in
ansible-playbook (the CLI's options for them: machineroom/cli/ansible_habits.py):

- `-b/--become`, `--become-user`, `--become-method`: every play becomes (ansible.cfg's
  [privilege_escalation] settings are the defaults); `-K/--ask-become-pass` asks for the sudo
  password once, for hosts whose inventory gives none;
- `-u/--user`, `--private-key`, `-k/--ask-pass`: login user, key and password of hosts whose
  inventory entry gives none (the inventory wins, as in Ansible);
- `--start-at-task NAME`: skip every task before the first whose name matches;
- `--force-handlers`: notified handlers run on a host even after it failed.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from machineroom.errors import UsageError
from machineroom.runs.settings import current_settings

if TYPE_CHECKING:
    from machineroom.playbook.model import Playbook
    from machineroom.runs.workspace import HostDefaults


@dataclass(frozen=True)
class AnsibleHabits:
    """The values of ansible-playbook's flags on one command line."""

    become: bool = False
    become_user: str | None = None
    become_method: str | None = None
    ask_become_pass: bool = False
    user: str | None = None
    ask_pass: bool = False
    private_key: str | None = None
    start_at_task: str | None = None
    list_hosts: bool = False
    list_tasks: bool = False
    list_tags: bool = False
    syntax_check: bool = False
    force_handlers: bool = False
    flush_cache: bool = False

    @property
    def describes(self) -> bool:
        """Whether the command only describes the playbook (nothing is contacted)."""
        return self.list_hosts or self.list_tasks or self.list_tags or self.syntax_check

    def host_defaults(self, base: HostDefaults) -> HostDefaults:
        """`base` (from ansible.cfg, machineroom.yml) with these flags' user, key, passwords."""
        return login_defaults(
            base, self.user, self.private_key, self.ask_pass, self.wants_become_password()
        )

    def wants_become_password(self) -> bool:
        """-K, or ansible.cfg's become_ask_pass."""
        return self.ask_become_pass or bool(current_settings().get("become_ask_pass"))

    def reshape(self, playbook: Playbook) -> Playbook:
        """The playbook as these flags run it: becoming, from the start task."""
        from machineroom.runs.playbook_flags import start_at_task, with_become

        settings = current_settings()
        become = self.become or bool(settings.get("become"))
        user = self.become_user or settings.get("become_user")
        method = self.become_method or settings.get("become_method")
        if become or user or method:
            playbook = with_become(playbook, become, user, method)
        if self.start_at_task:
            playbook = start_at_task(playbook, self.start_at_task)
        return playbook

    def run_options(self) -> dict[str, Any]:
        """RunOptions fields these flags set."""
        from machineroom.executor.hoststate import RunOptions

        if self.force_handlers:
            if "force_handlers" not in {f.name for f in dataclasses.fields(RunOptions)}:
                raise UsageError("--force-handlers is not available in this version")
            return {"force_handlers": True}
        return {}


def login_defaults(
    base: HostDefaults,
    user: str | None,
    private_key: str | None,
    ask_pass: bool,
    ask_become_pass: bool,
) -> HostDefaults:
    """`base` with `-u`, `--private-key`, and the passwords `-k` / `-K` ask for."""
    from machineroom.inventory.model import Secret
    from machineroom.masking import add_secret

    changes: dict[str, Any] = {}
    if user:
        changes["user"] = user
    if private_key:
        changes["ssh_key"] = private_key
    if ask_pass or current_settings().get("ask_pass"):
        password = _prompt("SSH password: ")
        add_secret(password)
        changes["password"] = Secret("plain", password)
    if ask_become_pass:
        password = _prompt("BECOME password: ")
        add_secret(password)
        changes["become_password"] = Secret("plain", password)
    return dataclasses.replace(base, **changes) if changes else base


def _prompt(message: str) -> str:
    if not os.isatty(0):
        raise UsageError(f"cannot ask '{message.strip()}': stdin is not a terminal")
    return getpass.getpass(message)
