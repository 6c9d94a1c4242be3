"""Compiling a playbook for an inventory into per-host task graphs, without connecting.

`compile_plan` decides for every host which plays, stages and tasks apply: tasks left out by
`--tags`/`--skip-tags`/`--stage`, tasks whose `when` is already false on static variables
(inventory, play, role and extra vars), and tasks decided only at run time (their `when` reads
facts or registered results). `render_*` print the plan as text, JSON, DOT or mermaid.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from machineroom.errors import InputError
from machineroom.inventory.model import Host, Inventory
from machineroom.modules.ansible_fallback import ENGINE, is_fallback
from machineroom.playbook.model import Block, Item, Play, Playbook, Task
from machineroom.templating import Templar, Where
from machineroom.vars import build_var_stack, magic_vars

Decision = Literal["run", "skip", "runtime"]


@dataclass(frozen=True)
class PlannedTask:
    """One task as a host will meet it: run, skipped (and why), or decided at run time."""

    id: str
    name: str
    module: str
    decision: Decision
    reason: str = ""
    section: str = ""  # "", "rescue", "always", "handler"
    depth: int = 0  # nesting inside blocks


@dataclass(frozen=True)
class PlannedStage:
    """A stage of a play for one host."""

    name: str
    tasks: tuple[PlannedTask, ...]
    selected: bool = True  # False when --stage leaves it out


@dataclass(frozen=True)
class HostPlan:
    """Everything a host will run in one play."""

    host: str
    stages: tuple[PlannedStage, ...]


@dataclass(frozen=True)
class PlayPlan:
    """One play: its hosts' plans and its handlers."""

    name: str
    pattern: str
    strategy: str
    serial: tuple[int | str, ...]
    hosts: tuple[HostPlan, ...]
    handlers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """The whole compiled playbook."""

    playbook: str
    plays: tuple[PlayPlan, ...]
    options: Mapping[str, Any] = field(default_factory=dict)


def compile_plan(
    playbook: Playbook,
    inventory: Inventory,
    play_hosts: Sequence[Sequence[Host]],
    *,
    tags: frozenset[str] = frozenset(),
    skip_tags: frozenset[str] = frozenset(),
    stages: frozenset[str] = frozenset(),
    extra_vars: Mapping[str, Any] | None = None,
    check: bool = False,
    playbook_dir: str = ".",
) -> Plan:
    """Compile every play for its hosts (already limited), deciding what runs where."""
    templar = Templar()
    plays: list[PlayPlan] = []
    for play, hosts in zip(playbook.plays, play_hosts, strict=True):
        host_plans = []
        ids = [h.id for h in hosts]
        for host in hosts:
            decider = _Decider(
                host=host,
                play=play,
                magic=magic_vars(host, inventory, ids, check_mode=check, playbook_dir=playbook_dir),
                templar=templar,
                tags=tags,
                skip_tags=skip_tags,
                extra_vars=extra_vars or {},
            )
            planned_stages = []
            for stage in play.stages:
                planned = _flatten(stage.items, decider, (), play.tags, 0, "")
                selected = not stages or stage.name in stages
                planned_stages.append(PlannedStage(stage.name, tuple(planned), selected))
            host_plans.append(HostPlan(host.id, tuple(planned_stages)))
        plays.append(
            PlayPlan(
                name=play.name or play.hosts,
                pattern=play.hosts,
                strategy=play.strategy,
                serial=play.serial,
                hosts=tuple(host_plans),
                handlers=tuple(h.name or h.module for h in play.handlers),
            )
        )
    options = {"tags": sorted(tags), "skip_tags": sorted(skip_tags), "stages": sorted(stages)}
    return Plan(playbook.path, tuple(plays), options)


@dataclass(frozen=True)
class _Decider:
    """Decides, for one host of one play, whether a task runs, is skipped, or waits."""

    host: Host
    play: Play
    magic: Mapping[str, Any]
    templar: Templar
    tags: frozenset[str]
    skip_tags: frozenset[str]
    extra_vars: Mapping[str, Any]

    def __call__(
        self, task: Task, conditions: tuple[Any, ...], task_tags: frozenset[str]
    ) -> tuple[Decision, str]:
        from machineroom.playbook.tags import tags_allow

        if not tags_allow(task_tags, self.tags, self.skip_tags):
            return "skip", "tags"
        if not conditions:
            return "run", ""
        text = "when: " + " and ".join(map(str, conditions))
        stack = build_var_stack(
            self.host,
            play=self.play,
            role=task.role,
            task=task,
            extra_vars=self.extra_vars,
            magic=self.magic,
        )
        where = Where(task.location, task.display_name, self.host.id)
        try:
            values = stack.resolve()
            if all(bool(self.templar.evaluate(c, values, where)) for c in conditions):
                return "run", ""
            return "skip", text
        except InputError:
            return "runtime", text


def _flatten(
    items: Sequence[Item],
    decide: _Decider,
    conditions: tuple[Any, ...],
    tags: frozenset[str],
    depth: int,
    section: str,
) -> list[PlannedTask]:
    planned: list[PlannedTask] = []
    for item in items:
        if isinstance(item, Block):
            inner_conditions = (*conditions, *item.when)
            inner_tags = tags | item.tags
            for part, name in (
                (item.block, section),
                (item.rescue, "rescue"),
                (item.always, "always"),
            ):
                planned += _flatten(part, decide, inner_conditions, inner_tags, depth + 1, name)
            continue
        decision, reason = decide(item, (*conditions, *item.when), tags | item.tags)
        if item.kind == "include" and decision == "run":
            decision, reason = "runtime", f"{item.module}: loaded at run time"
        if item.kind == "module" and is_fallback(item.module):
            reason = f"{reason}; via {ENGINE}" if reason else f"via {ENGINE}"
        if item.deferred is not None and decision != "skip":
            # a task machineroom cannot run whose condition may hold here: it would fail
            reason = f"{reason}; " if reason else ""
            reason += f"fails here if it runs: {item.deferred}"
        planned.append(
            PlannedTask(
                id=item.id,
                name=item.display_name,
                module=item.module,
                decision=decision,
                reason=reason,
                section=section,
                depth=depth,
            )
        )
    return planned


def render_text(plan: Plan) -> str:
    """A readable outline: play, hosts, stages, tasks with their decision."""
    lines = [f"playbook {plan.playbook}"]
    marks = {"run": "+", "skip": "-", "runtime": "?"}
    for play in plan.plays:
        lines.append(
            f"\nPLAY {play.name}  (hosts: {play.pattern} -> {len(play.hosts)}, "
            f"strategy {play.strategy}"
            + (f", serial {list(play.serial)}" if play.serial else "")
            + ")"
        )
        # hosts with the same plan are listed together
        groups: dict[str, list[str]] = {}
        shapes: dict[str, HostPlan] = {}
        for host_plan in play.hosts:
            key = json.dumps([asdict(s) for s in host_plan.stages], sort_keys=True)
            groups.setdefault(key, []).append(host_plan.host)
            shapes[key] = host_plan
        for key, hosts in groups.items():
            lines.append(f"  hosts: {', '.join(hosts)}")
            for stage in shapes[key].stages:
                note = "" if stage.selected else "  (not selected by --stage)"
                lines.append(f"    stage {stage.name}{note}")
                for task in stage.tasks:
                    indent = "  " * (task.depth + 3)
                    section = f"[{task.section}] " if task.section else ""
                    reason = f"  ({task.reason})" if task.reason else ""
                    lines.append(
                        f"{indent}{marks[task.decision]} {section}{task.name} [{task.module}]"
                        f"  {task.id}{reason}"
                    )
        if play.handlers:
            lines.append(f"  handlers: {', '.join(play.handlers)}")
    lines.append("\n+ runs   - skipped   ? decided at run time")
    return "\n".join(lines) + "\n"


def render_json(plan: Plan) -> str:
    """The plan as JSON."""
    return json.dumps(asdict(plan), indent=2, default=str) + "\n"


def _node_id(*parts: object) -> str:
    return "n_" + "_".join("".join(c if c.isalnum() else "_" for c in str(p)) for p in parts)


def render_dot(plan: Plan) -> str:
    """The plan as a Graphviz DOT graph: one cluster per play and host, tasks in order."""
    out = ["digraph plan {", "  rankdir=LR;", "  node [shape=box, fontsize=10];"]
    style = {"run": "", "skip": ", style=dashed, color=grey", "runtime": ", style=dotted"}
    for p_index, play in enumerate(plan.plays):
        for host in play.hosts:
            out.append(f"  subgraph cluster_{_node_id(p_index, host.host)} {{")
            out.append(f'    label="{_dot(play.name)} @ {_dot(host.host)}";')
            previous = None
            for stage in host.stages:
                for t_index, task in enumerate(stage.tasks):
                    node = _node_id(p_index, host.host, stage.name, t_index)
                    label = _dot(f"{stage.name}: {task.name}")
                    out.append(f'    {node} [label="{label}"{style[task.decision]}];')
                    if previous:
                        out.append(f"    {previous} -> {node};")
                    previous = node
            out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"


def render_mermaid(plan: Plan) -> str:
    """The plan as a mermaid flowchart."""
    out = ["flowchart LR"]
    for p_index, play in enumerate(plan.plays):
        for host in play.hosts:
            out.append(f'  subgraph {_node_id(p_index, host.host)}["{play.name} @ {host.host}"]')
            previous = None
            for stage in host.stages:
                for t_index, task in enumerate(stage.tasks):
                    node = _node_id(p_index, host.host, stage.name, t_index)
                    label = f"{stage.name}: {task.name}".replace('"', "'")
                    shape = f'["{label}"]' if task.decision == "run" else f'("{label}")'
                    out.append(f"    {node}{shape}")
                    if previous:
                        arrow = "-->" if task.decision == "run" else "-.->"
                        out.append(f"    {previous} {arrow} {node}")
                    previous = node
            out.append("  end")
    return "\n".join(out) + "\n"


def _dot(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
