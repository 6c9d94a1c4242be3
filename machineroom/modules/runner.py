"""Running one module on one host: build the step, send it, interpret the output.

The executor calls this for every task; module tests call it directly on a lab host.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from machineroom.connection.base import Become, Connection
from machineroom.connection.output import count_not_kept
from machineroom.modules.base import CommandOutput, Module, ModuleContext, Outcome


def run_module(
    module: Module,
    args: Mapping[str, Any],
    ctx: ModuleContext,
    connection: Connection | None,
    *,
    become: Become | None = None,
    timeout: float | None = None,
) -> Outcome:
    """Run `module` with templated `args` on the host behind `connection` (one round trip)."""
    step = module.build(args, ctx)
    if step is None:
        return module.run_local(args, ctx)
    if connection is None:
        raise ValueError(f"module {module.name} needs a connection")
    result = connection.run(
        step.script,
        stdin=step.stdin,
        timeout=step.timeout if step.timeout is not None else timeout,
        become=become,
    )
    return module.interpret(
        args,
        ctx,
        CommandOutput(
            result.exit_code, result.stdout, result.stderr, count_not_kept(result.stdout)
        ),
    )
