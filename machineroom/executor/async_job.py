"""`async:` and `poll:` — a task's command run in the background on its host, as Ansible's.

The module builds its one step as always; instead of running it, the executor starts it as a
job (modules/async_status.py has the scripts: no Python on the host). `poll: 0` returns at
once with the job's id (`ansible_job_id`, `started`, `finished: false`), for `async_status`
later; `poll: N` reads the job every N seconds until it ends or `async` seconds have passed
(then the task fails with Ansible's message), and removes the job's folder once read.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Any

from machineroom.connection.base import Become, Connection
from machineroom.connection.output import count_not_kept
from machineroom.executor.coordinator import Flag
from machineroom.modules.async_status import (
    job_outcome,
    launch_script,
    parse_status,
    status_script,
)
from machineroom.modules.base import CommandOutput, Module, ModuleContext, Outcome, RemoteStep

DEFAULT_POLL = 15  # seconds, Ansible's DEFAULT_POLL_INTERVAL


def new_jid() -> str:
    """A job id shaped like Ansible's (`j` + digits + `.` + the controller's pid)."""
    return f"j{secrets.randbelow(10**12)}.{os.getpid()}"


def run_async(
    module: Module,
    args: Mapping[str, Any],
    ctx: ModuleContext,
    connection: Connection,
    *,
    limit: int,
    poll: int | None,
    become: Become | None,
    stop: Flag,
) -> Outcome:
    """Start the module's step as a job; with `poll` > 0 wait for it (see the module doc)."""
    step = module.build(args, ctx)
    if step is None:  # nothing to send (check mode of some modules): nothing to background
        return module.run_local(args, ctx) if module.local else Outcome("ok")
    jid = new_jid()
    # the job's stdin is saved on the host first: empty when the module sends none
    launch = launch_script(jid, step.script, limit, module.name, args)
    started = _send(connection, RemoteStep(launch, step.stdin or b""), become)
    if started.exit_code != 0:
        return Outcome(
            "failed",
            msg=f"could not start the async job: {started.stderr.strip() or started.stdout}",
            result={"ansible_job_id": jid},
        )
    folder = started.stdout.strip()
    if poll == 0:  # Ansible reports a started job as changed
        return Outcome(
            "changed",
            result={
                "ansible_job_id": jid,
                "started": True,
                "finished": False,
                "results_file": folder,
            },
        )
    interval = poll if poll is not None else DEFAULT_POLL
    left = float(limit)
    last: dict[str, Any] = {}
    while left > 0:
        # Ansible waits one interval before each read; `stop` (Ctrl-C) ends the wait at once
        if stop.wait(interval):
            return Outcome("failed", msg="interrupted while waiting for the async job")
        left -= interval
        job = parse_status(_send(connection, RemoteStep(status_script(jid, cleanup=True)), become))
        if job.state == "finished" and not job.timed_out:  # killed at the limit: as below
            return job_outcome(jid, job, ctx)
        last = {"ansible_job_id": jid, "started": True, "finished": False, "state": job.state}
    return Outcome(
        "failed",
        msg=f"async task did not complete within the requested time - {limit}s",
        result={"async_result": last, "ansible_job_id": jid},
    )


def _send(connection: Connection, step: RemoteStep, become: Become | None) -> CommandOutput:
    result = connection.run(step.script, stdin=step.stdin, timeout=step.timeout, become=become)
    return CommandOutput(
        result.exit_code, result.stdout, result.stderr, count_not_kept(result.stdout)
    )
