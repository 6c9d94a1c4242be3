"""Tasks machineroom cannot run, judged by whether they certainly run.

A task whose module machineroom lacks (`yum:` in a role written for several systems, a
collection's module) or that uses an argument machineroom does not implement is loaded with
its problem kept in `Task.deferred`. Once the whole playbook is read, each such task is
settled: behind a condition (its own `when`, its block's, an import's or a role's) it may
never run, so the problem is a warning at load and the task's failure on a host where it
runs; so it is for a task written to fail (`ignore_errors`, `failed_when`, inside a block
with a `rescue`), whatever its arguments' problem, as Ansible finds it only when it runs;
with no condition it would certainly run, so the problem is a load error as before.
What is certainly wrong wherever it runs (a typo with a close match, a bad type) is never
deferred: `tasks.py` reports it at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from machineroom.errors import InputError
from machineroom.playbook.model import Block, Item, Task

WHY = "only a warning: behind a condition or expected to fail, it fails a host where it runs"


def is_unimplemented(problem: InputError) -> bool:
    """An argument check's problem that means "not implemented here", not "wrong": an
    unknown argument with no close known one (a close one is more likely a typo)."""
    # args.py words them "...: unknown argument 'x'" plus " (did you mean 'y'?)" for a typo
    return "unknown argument '" in problem.problem and "did you mean" not in problem.problem


def deferred_text(problems: Sequence[InputError]) -> str:
    """One line for a task's deferred problems: the first with its place, then the others."""
    first = problems[0]
    head = f"{first.location}: {first.problem}" if first.location else first.problem
    return "; ".join([head, *(p.problem for p in problems[1:])])


def conditional(when: Iterable[Any]) -> bool:
    """Whether conditions may be false: any that is not the literal `true`."""
    return any(condition is not True for condition in when)


def settle(items: Sequence[Item], errors: list[InputError], warnings: list[str]) -> None:
    """Sort the deferred tasks of `items`: those behind a condition have their problem added to
    `warnings`, those that would certainly run are load errors (added to `errors`)."""
    _walk(items, False, errors, warnings)


def _walk(
    items: Sequence[Item], guarded: bool, errors: list[InputError], warnings: list[str]
) -> None:
    for item in items:
        if isinstance(item, Block):
            inner = guarded or conditional(item.when)
            # a block with a rescue expects its tasks may fail
            _walk(
                item.block, inner or bool(item.rescue) or bool(item.ignore_errors), errors, warnings
            )
            for section in (item.rescue, item.always):
                _walk(section, inner, errors, warnings)
        elif isinstance(item, Task) and item.deferred is not None:
            expected = item.ignore_errors or item.failed_when is not None  # fails on purpose
            if guarded or expected or conditional(item.when):
                warnings.append(item.deferred)
            else:
                errors.append(InputError(item.deferred))


def warning_text(deferred: str) -> str:
    """How a deferred task is announced at load (by `apply`, `plan` and `validate`)."""
    return f"{deferred} ({WHY})"


def strict_error(deferred: str) -> InputError:
    """A deferred task as `validate --strict` reports it."""
    return InputError(f"{deferred} (behind a condition; an error under --strict)")
