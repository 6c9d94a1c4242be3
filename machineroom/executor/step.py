"""Running one module on one host: build the step, send it, interpret the output.

The executor calls this for every task (it is the step of STYLE.md: build -> run ->
interpret); module tests call it directly on a lab host.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from machineroom.connection.base import Become, Connection
from machineroom.connection.command import acting
from machineroom.connection.output import count_not_kept
from machineroom.executor.action_text import describe_call
from machineroom.modules.base import (
    CommandOutput,
    Conversation,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)


def run_module(
    module: Module,
    args: Mapping[str, Any],
    ctx: ModuleContext,
    connection: Connection | None,
    *,
    become: Become | None = None,
    timeout: float | None = None,
    environment: Mapping[str, str] | None = None,
) -> Outcome:
    """Run `module` with templated `args` on the host behind `connection` (one round trip,
    or the few a conversing module asks for); `environment` (the task's `environment:`)
    is exported for each of its steps. The audit log shows each command it sends with
    the call as the task wrote it (`command: systemctl restart nginx`)."""
    with acting(describe_call(module.name, args, module.free_form)):
        return _run_module(module, args, ctx, connection, become, timeout, environment)


def _run_module(
    module: Module,
    args: Mapping[str, Any],
    ctx: ModuleContext,
    connection: Connection | None,
    become: Become | None,
    timeout: float | None,
    environment: Mapping[str, str] | None,
) -> Outcome:
    conversation = module.converse(args, ctx)
    if conversation is not None:
        if connection is None:
            raise ValueError(f"module {module.name} needs a connection")
        return _converse(conversation, connection, become, timeout, environment)
    step = module.build(args, ctx)
    if step is None:
        return module.run_local(args, ctx)
    if connection is None:
        raise ValueError(f"module {module.name} needs a connection")
    return module.interpret(args, ctx, _run_step(connection, step, become, timeout, environment))


def exports(environment: Mapping[str, str] | None) -> str:
    """`export NAME='value'` lines for a step's script (names checked, values quoted)."""
    return "".join(f"export {name}={quote(value)}\n" for name, value in (environment or {}).items())


def _run_step(
    connection: Connection,
    step: RemoteStep,
    become: Become | None,
    timeout: float | None,
    environment: Mapping[str, str] | None = None,
) -> CommandOutput:
    result = connection.run(
        exports(environment) + step.script,
        stdin=step.stdin,
        timeout=step.timeout if step.timeout is not None else timeout,
        become=become,
    )
    return CommandOutput(
        result.exit_code, result.stdout, result.stderr, count_not_kept(result.stdout)
    )


def _converse(
    conversation: Conversation,
    connection: Connection,
    become: Become | None,
    timeout: float | None,
    environment: Mapping[str, str] | None,
) -> Outcome:
    """Send each step the module yields, give it the output, until it returns its Outcome."""
    try:
        step = next(conversation)
        while True:
            step = conversation.send(_run_step(connection, step, become, timeout, environment))
    except StopIteration as done:
        outcome: Outcome = done.value
        return outcome
