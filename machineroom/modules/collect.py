"""`collect`: one collection of a host's metrics (what `machineroom collect` runs on each host).

One remote command: the collection script (collect_script.py) reading /proc, `df` and
`docker ps`, plus the host's custom collectors; or, on a host whose inventory names a
`collect_key`, the fixed word a restricted key's forced command ignores (sshd runs the
installed copy of the script instead). The outcome's result holds the readings: `metrics`,
`containers`, `problems` and the raw `counters` the next collection's rates are computed
from. It reads the host and changes nothing, so check mode runs it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.modules.base import CommandOutput, Module, ModuleContext, Outcome, RemoteStep
from machineroom.modules.collect_script import (
    RESTRICTED_COMMAND,
    build_script,
    collectors_from,
    failure_of,
    is_collection,
    parse_collection,
)


class CollectModule(Module):
    """`collect`: `collectors` (default: the host's variable of that name), `restricted`
    (default: whether the host has a `collect_key`), and the previous collection's
    `counters` with the time `at` of this one, for CPU and network rates."""

    name: ClassVar[str] = "collect"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "collectors": {"type": "object"},
            "restricted": {"type": "boolean"},
            "counters": {"type": "object", "additionalProperties": {"type": "number"}},
            "at": {"type": "integer", "minimum": 0},
        },
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep | None:
        """The collection script with the host's collectors, or the restricted key's word."""
        if _restricted(args, ctx):
            return RemoteStep(RESTRICTED_COMMAND)
        # The inventory's value as written: a collector's command line is the user's shell
        # code (`docker inspect -f '{{.State}}'` is no template).
        declared = args["collectors"] if "collectors" in args else ctx.vars.get("collectors")
        return RemoteStep(build_script(collectors_from(declared, ctx.host_id, "collectors")))

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """The readings; failed when the host printed no collection."""
        if not is_collection(output.exit_code, output.stdout):
            return Outcome("failed", msg=failure_of(output.exit_code, output.stdout, output.stderr))
        parsed = parse_collection(output.stdout, args.get("counters"), int(args.get("at", 0)))
        return Outcome(
            "ok",
            msg=f"{len(parsed.metrics)} metrics"
            + (f", {len(parsed.containers)} containers" if parsed.containers else "")
            + "".join(f"; {problem}" for problem in parsed.problems),
            result={
                "metrics": parsed.metrics,
                "containers": parsed.containers,
                "problems": parsed.problems,
                "counters": parsed.counters,
            },
        )


def _restricted(args: Mapping[str, Any], ctx: ModuleContext) -> bool:
    if "restricted" in args:
        return bool(args["restricted"])
    return bool(ctx.vars.get("collect_key"))
