"""`async_status`: the state of a job started with `async:` (and `poll: 0`), as Ansible's.

Jobs need no Python on the host: the executor starts the task's own script in the background
(`setsid sh`, detached from the SSH session) in `~/.ansible_async/JID/` (Ansible's folder),
which receives its stdout, stderr and, when it ends, its exit code in `rc`; a watchdog kills
the job's process group after `async` seconds. This module reads that folder, and when the
job has finished, gives the job's module result (read by that module, whose name and
arguments the folder keeps) with `finished: true`. `mode: cleanup` removes the folder.

The scripts for starting and reading a job live here, so that the executor's `async` and this
module agree on the folder's layout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from machineroom.modules.base import (
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)

JOBS_DIR = "$HOME/.ansible_async"  # expanded by the host's shell, as Ansible's `~/.ansible_async`
STATE = "MR_ASYNC"
MODULE = "MR_ASYNC_MODULE"
TIMED_OUT = "Timeout exceeded"  # what Ansible's async_wrapper reports for a job it killed


def _folder(jid: str) -> str:
    return f'"{JOBS_DIR}"/{quote(jid)}'


def launch_script(jid: str, script: str, limit: int, module: str, args: Mapping[str, Any]) -> str:
    """Start `script` in the background as job `jid` (its stdin: this command's stdin), killed
    after `limit` seconds; prints the job's folder. Returns at once."""
    meta = json.dumps({"module": module, "args": dict(args)}, default=str)
    # the job runs in its own session (setsid: its pid is its process group, which the
    # watchdog kills whole); `rc` appears only once the job has ended (written, then moved)
    runner = (
        'd=$1; limit=$2; umask "$3"; '
        'setsid sh "$d/script" <"$d/stdin" >"$d/stdout" 2>"$d/stderr" & job=$!; '
        "( trap 'kill $s 2>/dev/null; exit 0' TERM; sleep \"$limit\" & s=$!; wait $s; "
        'kill -KILL -"$job" 2>/dev/null && : >"$d/timedout" ) & dog=$!; '
        'wait "$job"; rc=$?; kill "$dog" 2>/dev/null; '
        'echo "$rc" >"$d/rc.tmp"; mv "$d/rc.tmp" "$d/rc"'
    )
    return "\n".join(
        [
            "mask=$(umask); umask 077",  # the job's folder is private; the job keeps the umask
            f"d={_folder(jid)}",
            'mkdir -p "$d" || exit 1',
            'cat >"$d/stdin"',
            f'printf %s {quote(script)} >"$d/script"',
            f'printf "%s\\n" {quote(meta)} >"$d/module"',
            f'setsid sh -c {quote(runner)} async-job "$d" {int(limit)} "$mask"'
            " </dev/null >/dev/null 2>&1 &",
            'echo "$d"',
        ]
    )


def status_script(jid: str, *, cleanup: bool = False) -> str:
    """Print the job's state on stderr's first lines (then its stderr), its stdout on
    stdout; with `cleanup`, remove the folder of a finished job after reading it."""
    lines = [
        f"d={_folder(jid)}",
        f'if [ ! -d "$d" ]; then echo "{STATE} missing" >&2; exit 0; fi',
        f'if [ ! -f "$d/rc" ]; then echo "{STATE} running" >&2; exit 0; fi',
        't=0; [ -f "$d/timedout" ] && t=1',
        f'printf "{STATE} finished %s %s\\n" "$(cat "$d/rc")" "$t" >&2',
        f'printf "{MODULE} %s\\n" "$(cat "$d/module")" >&2',
        'cat "$d/stderr" >&2; cat "$d/stdout"',
    ]
    if cleanup:
        lines.append('rm -rf "$d"')
    return "\n".join(lines)


def cleanup_script(jid: str) -> str:
    """Remove the job's folder; prints it."""
    return f'd={_folder(jid)}; rm -rf "$d"; echo "$d"'


@dataclass(frozen=True)
class JobState:
    """What `status_script` said: running, missing or finished (with the job's output)."""

    state: str
    output: CommandOutput | None = None  # the job's exit code, stdout and stderr
    module: str = ""
    args: Mapping[str, Any] | None = None
    timed_out: bool = False


def parse_status(output: CommandOutput) -> JobState:
    """Read `status_script`'s output."""
    head, _, rest = output.stderr.partition("\n")
    words = head.split()
    if len(words) < 2 or words[0] != STATE:
        return JobState("unknown")
    if words[1] != "finished":
        return JobState(words[1])
    meta_line, _, stderr = rest.partition("\n")
    meta: dict[str, Any] = {}
    if meta_line.startswith(MODULE + " "):
        try:
            meta = json.loads(meta_line[len(MODULE) + 1 :])
        except json.JSONDecodeError:
            meta = {}
    code = int(words[2]) if len(words) > 2 and words[2].lstrip("-").isdigit() else -1
    return JobState(
        "finished",
        CommandOutput(code, output.stdout, stderr, output.stdout_not_kept),
        str(meta.get("module", "")),
        meta.get("args") if isinstance(meta.get("args"), dict) else {},
        timed_out=len(words) > 3 and words[3] == "1",
    )


def job_outcome(jid: str, job: JobState, ctx: ModuleContext) -> Outcome:
    """A finished job's result, read by the module that ran it, marked as Ansible marks it."""
    from machineroom.modules import get_module

    marks = {"ansible_job_id": jid, "finished": True}  # Ansible's: no `started` once done
    if job.timed_out:
        return Outcome("failed", msg=TIMED_OUT, result={**marks, "child_pid": None})
    module = get_module(job.module)
    if module is None or job.output is None:
        return Outcome("failed", msg=f"job {jid}: unknown module {job.module!r}", result=marks)
    inner = module.interpret(job.args or {}, ctx, job.output)
    return Outcome(
        inner.status,
        msg=inner.msg,
        diff=inner.diff,
        result={**inner.result, **marks},
        facts=inner.facts,
        record=inner.record,
    )


class AsyncStatusModule(Module):
    """`async_status`: `jid` (from a `poll: 0` task's `ansible_job_id`), `mode`."""

    name: ClassVar[str] = "async_status"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "jid": {"type": "string", "minLength": 1},
            "mode": {"enum": ["status", "cleanup"]},
        },
        "required": ["jid"],
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep | None:
        """Read (or remove) the job's folder: one command, even in check mode (it changes
        nothing)."""
        jid = str(args["jid"])
        if args.get("mode") == "cleanup":
            return RemoteStep(cleanup_script(jid))
        return RemoteStep(status_script(jid))

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """running: `finished: false`; finished: the job's own result; missing: failed."""
        jid = str(args["jid"])
        if args.get("mode") == "cleanup":
            return Outcome("ok", result={"ansible_job_id": jid, "erased": output.stdout.strip()})
        job = parse_status(output)
        if job.state == "running":
            return Outcome("ok", result={"ansible_job_id": jid, "started": True, "finished": False})
        if job.state == "finished":
            return job_outcome(jid, job, ctx)
        return Outcome(
            "failed",
            msg="could not find job",
            result={"ansible_job_id": jid, "started": True, "finished": True},
        )
