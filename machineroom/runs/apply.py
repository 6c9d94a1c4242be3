"""`apply`: a playbook run from a RunRequest, and `plan`, its preview without connecting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from machineroom.runs.habits import AnsibleHabits
from machineroom.runs.request import RunRequest, RunResult
from machineroom.runs.session import RunRecord, Subscriber, run_prepared

if TYPE_CHECKING:
    from machineroom.plan import Plan
    from machineroom.runs.play_inputs import Prompt
    from machineroom.runs.workspace import Workspace


def words(values: Sequence[str]) -> frozenset[str]:
    """Comma-separated, repeatable option values (`-t a,b -t c`) as one set."""
    return frozenset(t.strip() for v in values for t in v.split(",") if t.strip())


def apply_playbook(
    request: RunRequest,
    workspace: Workspace,
    subscribers: Sequence[Subscriber] = (),
    prompt: Prompt | None = None,
) -> RunResult:
    """Run the request's playbook on its hosts, recorded; `prompt` answers vars_prompt on a
    terminal. Invalid input raises before any host is contacted."""
    from machineroom.executor.hoststate import RunOptions
    from machineroom.runs.prepare import pending_for, prepare

    habits = AnsibleHabits(**request.habits)
    workspace.host_defaults = habits.host_defaults(workspace.host_defaults)
    store = workspace.open_state()
    try:
        store.mark_interrupted_runs()
        start_stage: dict[str, str] = {}
        only_hosts = None
        if request.resume:
            pending = pending_for(workspace, request.target, store)
            start_stage = {host: str(action["stage"]) for host, action in pending.items()}
            only_hosts = set(pending)
        stages = words(request.stages)
        prepared = prepare(
            workspace,
            request.target,
            request.limit,
            stages,
            request.extra_vars,
            only_hosts,
            prompt=prompt,
        )
        prepared.playbook = habits.reshape(prepared.playbook)
        if request.resume and not any(prepared.play_hosts):
            return RunResult(None, "ok", notes=("nothing to resume: no host has a pending stage",))
        tags = words(request.tags)
        if not request.resume:  # a resumed run skips stages: their templates need not work
            from machineroom.executor.template_check import check_templates

            check_templates(
                prepared.playbook,
                workspace.inventory,
                prepared.play_hosts,
                playbook_dir=prepared.playbook_dir,
                extra_vars=prepared.extra_vars,
                tags=tags,
                skip_tags=words(request.skip_tags),
                check=request.check,
                vault=prepared.vault_in_vars,
            )
        record = RunRecord(
            kind="apply",
            label=request.target,
            args={
                "limit": request.limit,
                "tags": sorted(tags),
                "check": request.check,
                "diff": request.diff,
                "stages": sorted(stages),
                "resume": request.resume,
                "extra_vars": sorted(prepared.extra_vars),
            },
            trigger=request.trigger,
            command_line=request.command_line,
        )
        run_options = RunOptions(
            check=request.check,
            diff=request.diff,
            forks=request.connect.forks,
            tags=tags,
            skip_tags=words(request.skip_tags),
            extra_vars=prepared.extra_vars,
            extra_var_sources=prepared.extra_sources,
            stages=stages,
            start_stage=start_stage,
            verbosity=request.verbosity,
            programs=bool(request.options.get("programs", True)),
            **habits.run_options(),
        )
        return run_prepared(
            workspace, store, prepared, record, run_options, request.connect, subscribers
        )
    finally:
        store.close()


PLAN_FORMATS = ("text", "json", "dot", "mermaid")


def plan_playbook(request: RunRequest, workspace: Workspace, output_format: str = "text") -> str:
    """What the request's playbook would run on which hosts, without connecting, rendered
    in one of PLAN_FORMATS."""
    from machineroom.plan import render_dot, render_json, render_mermaid, render_text

    render = {
        "text": render_text,
        "json": render_json,
        "dot": render_dot,
        "mermaid": render_mermaid,
    }[output_format]
    return render(compiled_plan(request, workspace))


def compiled_plan(request: RunRequest, workspace: Workspace) -> Plan:
    """The plan of the request's playbook: per host, which tasks run and why others do not."""
    from machineroom.plan import compile_plan
    from machineroom.runs.prepare import prepare

    stages = words(request.stages)
    prepared = prepare(workspace, request.target, request.limit, stages, request.extra_vars)
    return compile_plan(
        prepared.playbook,
        workspace.inventory,
        prepared.play_hosts,
        tags=words(request.tags),
        skip_tags=words(request.skip_tags),
        stages=stages,
        extra_vars=prepared.extra_vars,
        check=request.check,
        playbook_dir=prepared.playbook_dir,
    )
