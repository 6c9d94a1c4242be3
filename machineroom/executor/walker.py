"""One host walking a play: stages in order, blocks with rescue/always, handlers, includes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from machineroom.errors import InputError
from machineroom.events import StageStarted, TaskFinished, TaskStatus
from machineroom.executor.hoststate import HostState, PlayShared, RunShared
from machineroom.executor.once import run_once
from machineroom.executor.program import end_program
from machineroom.executor.program_plan import programs_allowed, start_program
from machineroom.executor.task import loop_items, run_task
from machineroom.executor.variables import Scope, task_vars
from machineroom.playbook.keywords import resolve_flags
from machineroom.playbook.model import Block, Item, RoleRef, Stage, Task
from machineroom.playbook.tags import tags_allow
from machineroom.templating import Where

FACTS_TASK = Task(module="facts", name="Gathering Facts", id="facts")


class HostWalker:
    """Runs one host through the stages of a play (a `HostWalk` for executor/runner.py).

    `state` is the host's own progress; `play_state` what the batch's walkers keep in common
    here; `run` the run's settings and its Coordinator, through which hosts wait for each
    other (strategy linear, run_once, throttle) and stop together.
    """

    def __init__(self, state: HostState, play_state: PlayShared, run: RunShared) -> None:
        self.state = state
        self.play_state = play_state
        self.run = run
        self.coordinator = run.coordinator

    @property
    def host_id(self) -> str:
        """The host this walker walks."""
        return self.state.host.id

    def walk(self) -> None:
        """Every stage of the play in order (from the resume point), then leave the gate."""
        try:
            if self.play_state.gathers_facts(self.run.playbook_dir) and not self._stopped():
                facts_task = FACTS_TASK
                if self.play_state.play.facts_args:  # the play's gather_subset, gather_timeout, ...
                    facts_task = replace(FACTS_TASK, args=self.play_state.play.facts_args)
                self._send_facts_ahead(facts_task)
                status = self._task(facts_task, Scope(stage="facts"))
                if status in ("failed", "unreachable"):
                    self._fail(facts_task, "facts")
                self._report_done()
            resume_at = self.run.options.start_stage.get(self.state.host.id)
            reached = resume_at is None
            for index, stage in enumerate(self.play_state.play.stages):
                reached = reached or stage.name == resume_at
                wanted = not self.run.options.stages or stage.name in self.run.options.stages
                if not (reached and wanted) or self.state.done or self._stopped():
                    self._pass_gate(index, len(stage.items))
                    continue
                self.state.stage = stage.name
                self.run.bus.emit(StageStarted(self.state.host.id, stage.name))
                self._stage(index, stage)
                if not self.state.done:
                    self.flush_handlers(stage.name)
                elif self.run.options.force_handlers or self.play_state.play.force_handlers:
                    self._forced_handlers(stage.name)
                self._report_done()
            # done with the play: walked to its end, or ended by end_host / end_play
            self.state.walked_through = self.state.ended or not self._stopped()
        finally:
            end_program(self.state)
            failed = self.state.failed or self.state.unreachable
            self.coordinator.walk_ended(self.host_id, failed=failed)

    def _send_facts_ahead(self, facts_task: Task) -> None:
        """Fact gathering and the first stage's tasks that read no fact, as one program,
        when every host starts at the first stage."""
        play, options = self.play_state.play, self.run.options
        if not play.stages or options.start_stage:
            return
        if not programs_allowed(self.play_state, self.run):
            return
        first = play.stages[0]
        if options.stages and first.name not in options.stages:
            return
        scope = Scope(stage=first.name, role=first.role, tags=play.tags)
        lead = (facts_task, Scope(stage="facts"))
        self.state.program = start_program(
            first.items, 0, self.state, self.play_state, self.run, scope, lead=lead
        )

    def _stage(self, index: int, stage: Stage) -> None:
        scope = Scope(stage=stage.name, role=stage.role, tags=self.play_state.play.tags)
        try:
            for position, item in enumerate(stage.items):
                self._arrive((index, position))
                if self.state.done or self._stopped():
                    continue  # keep arriving at the gate so lock-step partners are not held
                self._send_ahead(stage.items, position, scope)
                if not self._items([item], scope):
                    self._fail_current(stage.name)
                self._report_done()
            # The stage's handlers: strategy linear runs them once every host ended its tasks.
            self._arrive((index, len(stage.items)))
        finally:
            end_program(self.state)

    def _send_ahead(self, items: Sequence[Item], position: int, scope: Scope) -> None:
        """Before a task no program holds: send it and the independent tasks after it to
        the host as one program (executor/program_plan.py), when the play allows."""
        program = self.state.program
        if program is not None and not program.exhausted():
            return
        end_program(self.state)
        if isinstance(items[position], Task) and programs_allowed(self.play_state, self.run):
            self.state.program = start_program(
                items, position, self.state, self.play_state, self.run, scope
            )

    def _report_done(self) -> None:
        """Tell the others when this host will run no more tasks in the play (a run_once
        does not wait for it; max_fail_percentage counts it)."""
        if self.state.done:
            failed = self.state.failed or self.state.unreachable
            self.coordinator.host_done(self.host_id, failed=failed)

    def _items(self, items: Sequence[Item], scope: Scope) -> bool:
        """Run items in order; False as soon as one fails (not ignored) or the host is done."""
        for position, item in enumerate(items):
            if self.state.done or self._stopped():
                return not self.state.failed and not self.state.unreachable
            if len(items) > 1:  # a block's tasks (a stage's come one at a time)
                self._send_ahead(items, position, scope)
            ok = self._block(item, scope) if isinstance(item, Block) else self._one(item, scope)
            if not ok:
                return False
        return True

    def _block(self, block: Block, scope: Scope) -> bool:
        inner = scope.enter(block)
        ok = self._items(block.block, inner)
        if not ok and block.rescue and not self.state.unreachable:
            self.state.failed = False  # rescue gets its chance: the host is not failed yet
            self.state.registered["ansible_failed_task"] = {"name": self.state.failed_task}
            self.state.registered["ansible_failed_result"] = dict(self.state.failed_result)
            ok = self._items(block.rescue, inner)
        if block.always and not self.state.unreachable:
            was_failed = self.state.failed
            self.state.failed = False
            self.state.errors_cleared = False
            always_ok = self._items(block.always, inner)
            if self.state.errors_cleared:  # meta: clear_host_errors in always: the block is ok
                was_failed, ok = False, True
            self.state.failed = was_failed or not always_ok
            ok = ok and always_ok
        if not ok:
            self.state.failed = not self.state.unreachable
        return ok

    def _one(self, task: Task, scope: Scope) -> bool:
        tags = task.tags | scope.tags
        if not tags_allow(tags, self.run.options.tags, self.run.options.skip_tags):
            return True
        if task.kind == "meta":
            return self._meta(task, scope)
        if task.kind == "include":
            return self._include(task, scope)
        status = self._task(task, scope)
        if status in ("failed", "unreachable"):
            if status == "failed" and self.run.stop.is_set():
                self.state.interrupted = True  # most likely its command was killed by the stop
            if "any_errors_fatal" in task.templated:
                task = self._with_flags(task, scope)
            self._fail(task, scope.stage)
            return False
        return True

    def _task(self, task: Task, scope: Scope) -> TaskStatus:
        if "run_once" in task.templated:
            task = self._with_flags(task, scope)
        # add_host runs once for the batch, as Ansible's (it bypasses the host loop)
        if task.run_once or task.module == "add_host":  # the others wait, holding no fork
            return run_once(
                task,
                self.state,
                self.play_state,
                self.run,
                scope,
                lambda: self._throttled(task, scope),
            )
        return self._throttled(task, scope)

    def _throttled(self, task: Task, scope: Scope) -> TaskStatus:
        if task.throttle:  # at most `throttle` hosts run this task at once
            with self.coordinator.throttle(task.id, task.throttle):
                return self._slotted(task, scope)
        return self._slotted(task, scope)

    def _slotted(self, task: Task, scope: Scope) -> TaskStatus:
        with self.coordinator.task_slot():  # strategy linear: at most `forks` tasks at once
            return run_task(task, self.state, self.play_state, self.run, scope)

    def _with_flags(self, task: Task, scope: Scope) -> Task:
        """The task with its templated true/false keywords (`any_errors_fatal: "{{ x }}"`)
        evaluated on this host; unchanged when one cannot be (run_task said why)."""
        variables = task_vars(task, self.state, self.play_state, self.run, scope)
        where = Where(task.location, task.display_name, self.state.host.id)
        try:
            return resolve_flags(task, lambda t: self.run.templar.render(t, variables, where))
        except InputError:
            return task

    def _fail(self, task: Task, stage: str) -> None:
        if not self.state.unreachable:
            self.state.failed = True
        self.state.failed_task = task.id
        self.state.stage = stage
        fatal = task.any_errors_fatal if task.any_errors_fatal is not None else None
        if fatal or (fatal is None and self.play_state.play.any_errors_fatal):
            self.coordinator.abort_play()

    def _fail_current(self, stage: str) -> None:
        self.state.stage = stage
        if not self.state.unreachable:
            self.state.failed = True

    def _meta(self, task: Task, scope: Scope) -> bool:
        action = str(task.args.get("action", "noop"))
        conditions = (*scope.when, *task.when)
        if conditions and action != "flush_handlers":  # Ansible skips the others by `when`
            variables = task_vars(task, self.state, self.play_state, self.run, scope)
            where = Where(task.location, task.display_name, self.state.host.id)
            try:
                holds = all(
                    bool(self.run.templar.evaluate(c, variables, where)) for c in conditions
                )
            except InputError as exc:
                self.state.reason = str(exc)
                self.run.bus.emit(
                    TaskFinished(
                        self.state.host.id,
                        task.id,
                        f"meta: {action}",
                        scope.stage,
                        "failed",
                        msg=str(exc),
                        handler=scope.handler,
                    )
                )
                self._fail(task, scope.stage)
                return False
            if not holds:
                self.run.bus.emit(
                    TaskFinished(
                        self.state.host.id,
                        task.id,
                        f"meta: {action}",
                        scope.stage,
                        "skipped",
                        msg="condition false",
                        handler=scope.handler,
                    )
                )
                return True
        if action == "flush_handlers":
            self.flush_handlers(scope.stage)
        elif action == "end_host":
            self.state.ended = True
        elif action == "end_play":
            self.state.ended = True
            self.coordinator.abort_play()
        elif action == "clear_facts":
            self.state.facts.clear()
        elif action == "clear_host_errors":  # the host goes on as if nothing had failed
            self.state.failed = False
            self.state.failed_task = None
            self.state.errors_cleared = True
        self.run.bus.emit(
            TaskFinished(
                self.state.host.id,
                task.id,
                f"meta: {action}",
                scope.stage,
                "ok",
                handler=scope.handler,
            )
        )
        return not self.state.failed

    def _include(self, task: Task, scope: Scope) -> bool:
        """`include_tasks` / `include_role`: load now, for this host, then run them."""
        from machineroom.playbook.load import load_include

        variables = task_vars(task, self.state, self.play_state, self.run, scope)
        where = Where(task.location, task.display_name, self.state.host.id)
        try:
            loop = loop_items(task, variables, self.run, where)
            if loop is not None:  # a looped include: the files once per item, with the item
                loop_var = str(task.loop_control.get("loop_var", "item"))
                for item in loop:
                    if not self._include_one(task, scope, {**variables, loop_var: item}, where):
                        return False
                return True
            if not all(bool(self.run.templar.evaluate(c, variables, where)) for c in task.when):
                return True
            args = self.run.templar.render(dict(task.args), variables, where)
            items, role = load_include(task, args)
        except InputError as exc:
            self.state.reason = str(exc)
            self.run.bus.emit(
                TaskFinished(
                    self.state.host.id,
                    task.id,
                    task.display_name,
                    scope.stage,
                    "failed",
                    msg=str(exc),
                    handler=scope.handler,
                )
            )
            self._fail(task, scope.stage)
            return False
        return self._items(items, _include_scope(task, scope, role, {}))

    def _include_one(
        self, task: Task, scope: Scope, variables: dict[str, Any], where: Where
    ) -> bool:
        """One item of a looped include: its `when` with the item, then its tasks, which see
        the item (as `loop_var`) as an include variable."""
        from machineroom.playbook.load import load_include

        if not all(bool(self.run.templar.evaluate(c, variables, where)) for c in task.when):
            return True
        args = self.run.templar.render(dict(task.args), variables, where)
        items, role = load_include(task, args)
        loop_var = str(task.loop_control.get("loop_var", "item"))
        inner = _include_scope(
            task, scope, role, {loop_var: variables[loop_var], "ansible_loop_var": loop_var}
        )
        return self._items(items, inner)

    def flush_handlers(self, stage: str) -> None:
        """Run the notified handlers once each, in the order they are defined."""
        while self.state.notified and not self.state.done:
            notified = list(self.state.notified)
            self.state.notified.clear()
            for handler in self.play_state.play.handlers:
                names = {handler.name or "", *handler.listen}
                if not names & set(notified):
                    continue
                if not self._one(handler, Scope(stage=stage, role=handler.role, handler=True)):
                    return

    def _forced_handlers(self, stage: str) -> None:
        """--force-handlers: a host that failed still runs the handlers it notified before
        failing, as ansible-playbook does; it stays failed."""
        if not self.state.failed or self.state.unreachable or not self.state.notified:
            return
        self.state.failed = False
        try:
            self.flush_handlers(stage)
        finally:
            self.state.failed = True

    def _pass_gate(self, index: int, count: int) -> None:
        for position in range(count + 1):  # the tasks, then the handlers' place
            self._arrive((index, position))

    def _arrive(self, position: tuple[int, int]) -> None:
        """At top-level item `position`; strategy linear waits at its gate there."""
        self.coordinator.arrive(self.host_id, position)

    def _stopped(self) -> bool:
        return self.run.stop.is_set() or self.coordinator.play_aborted()


def _include_scope(
    task: Task, scope: Scope, role: RoleRef | None, extra: Mapping[str, Any]
) -> Scope:
    """The scope of an include's tasks: the includer's, with the include's become, tags,
    role and vars (and `extra`, a loop's item) on top."""
    return Scope(
        stage=scope.stage,
        blocks=scope.blocks,
        when=scope.when,
        become=task.become if task.become is not None else scope.become,
        become_user=task.become_user or scope.become_user,
        ignore_errors=scope.ignore_errors,
        tags=scope.tags | task.tags,
        role=role or scope.role,
        include_vars={**scope.include_vars, **dict(task.vars), **extra},
        handler=scope.handler,
    )
