"""The executor's part of `reboot`: wait for the host to come back and prove it works.

`run_reboot` runs the reboot module's step (which reads the boot id and starts the reboot
detached), closes the connection, reconnects until the boot id differs from the one before
(every second, within `reboot_timeout`), waits `post_reboot_delay`, then runs
`test_command` until it exits 0. The connection is left open for the next task. Messages
and result keys are Ansible's (`rebooted`, `elapsed`; "Timed out waiting for last boot
time check (timeout=600)").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from machineroom.connection.base import Become, Connection
from machineroom.errors import MachineroomError
from machineroom.executor.step import run_module
from machineroom.modules.base import ModuleContext, Outcome
from machineroom.modules.reboot import DEFAULT_BOOT_TIME_COMMAND, RebootModule


def run_reboot(
    module: RebootModule,
    args: Mapping[str, Any],
    ctx: ModuleContext,
    connection: Connection,
    *,
    become: Become | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Reboot the host behind `connection` and wait until it is back and passes the test."""
    if connection.host.connection == "local" and not ctx.check:
        msg = "Running reboot with local connection would reboot the control node."
        return Outcome("failed", msg=msg, result={"rebooted": False, "elapsed": 0})
    started = run_module(module, args, ctx, connection, become=become)
    if ctx.check or started.failed:
        return started
    start = clock()
    before = str(started.result.get("previous_boot_time", ""))
    timeout = float(args.get("reboot_timeout", 600))
    deadline = start + timeout
    per_try = float(args.get("connect_timeout") or 10)
    boot_command = str(args.get("boot_time_command") or DEFAULT_BOOT_TIME_COMMAND)
    test_command = str(args.get("test_command") or "whoami")

    def attempt(command: str, done: Callable[[str], bool]) -> bool:
        try:
            if not connection.is_alive():
                connection.open()
            result = connection.run(command, timeout=per_try, become=become)
        except MachineroomError:
            connection.close()
            return False
        return result.exit_code == 0 and done(result.stdout.strip().replace("\n", " "))

    def until(what: str, command: str, done: Callable[[str], bool]) -> Outcome | None:
        while not attempt(command, done):
            if clock() >= deadline:
                return Outcome(
                    "failed",
                    msg=f"Timed out waiting for {what} (timeout={int(timeout)})",
                    result={"rebooted": True, "elapsed": int(clock() - start)},
                )
            sleep(1.0)
        return None

    connection.close()
    sleep(1.0)  # the detached reboot command starts a second after the step
    timed_out = until("last boot time check", boot_command, lambda now: bool(now) and now != before)
    if timed_out:
        return timed_out
    post = max(0, int(args.get("post_reboot_delay", 0)))
    if post:
        sleep(post)
    timed_out = until("post-reboot test command", test_command, lambda _: True)
    if timed_out:
        return timed_out
    return Outcome(
        "changed",
        msg="rebooted",
        result={"rebooted": True, "elapsed": int(clock() - start)},
    )
