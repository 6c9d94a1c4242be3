"""executor/program.py: several steps as one sh program, each step's output and exit code
read back on its own. Run by a real `sh` (the local connection), no lab needed."""

from __future__ import annotations

from typing import Any

import pytest

from machineroom.connection.local import LocalConnection
from machineroom.executor.program import Program, ProgramStep, _Split
from machineroom.inventory.model import Host
from machineroom.modules.base import ModuleContext


def step(script: str, stdin: bytes | None = None, *, go_on: bool = False, name: str = "") -> Any:
    return ProgramStep(name or script[:20], script, stdin, go_on, {}, ModuleContext("local"), None)


def run(steps: list[ProgramStep]) -> list[Any]:
    connection = LocalConnection(Host(id="local", host="127.0.0.1", connection="local"))
    program = Program(steps, None)
    program.start(connection, 60)
    outputs = [program.output(s) for s in steps]
    program.finish()
    return outputs


def test_each_step_gets_its_own_output_exit_code_and_input() -> None:
    outputs = run(
        [
            step("printf 'no newline at the end'"),
            step("echo to stderr >&2; echo out"),
            step("cat", b"first input\n"),
            step("true", b"unread input the next step must not see"),
            step("wc -c", b"12345"),
            step("exit 3", go_on=True),
            step("echo after an ignored failure; printf 'x\\n\\n'"),
        ]
    )
    assert [(o.exit_code, o.stdout, o.stderr) for o in outputs] == [
        (0, "no newline at the end", ""),
        (0, "out\n", "to stderr\n"),
        (0, "first input\n", ""),
        (0, "", ""),
        (0, "5\n", ""),
        (3, "", ""),
        (0, "after an ignored failure\nx\n\n", ""),
    ]


def test_a_failed_step_stops_the_program_and_the_rest_never_run(tmp_path: Any) -> None:
    marker = tmp_path / "ran"
    outputs = run([step("echo one"), step("echo bad >&2; exit 2"), step(f"touch {marker}")])
    assert outputs[0].stdout == "one\n"
    assert (outputs[1].exit_code, outputs[1].stderr) == (2, "bad\n")
    assert outputs[2] is None  # the walker runs it alone, if it still wants to
    assert not marker.exists()


def test_a_step_does_not_read_the_program_from_stdin() -> None:
    # without input of its own a step reads /dev/null, not the rest of the program
    outputs = run([step("cat; echo done"), step("echo second")])
    assert [o.stdout for o in outputs] == ["done\n", "second\n"]


def test_big_output_is_capped_per_step_and_markers_survive() -> None:
    outputs = run([step("head -c 3000000 /dev/zero | tr '\\0' y"), step("echo small")])
    assert len(outputs[0].stdout) < 400_000
    assert outputs[0].stdout.startswith("yyyy") and outputs[0].stdout.endswith("yyyy")
    assert outputs[0].stdout_not_kept > 2_000_000
    assert outputs[1].stdout == "small\n"


@pytest.mark.parametrize("size", [1, 2, 7, 4096])
def test_output_split_in_any_pieces(size: int) -> None:
    """Markers and step output may arrive cut anywhere (SSH packets)."""
    program = Program([step("a"), step("b")], None)
    mark = program.marker
    stream = (
        f"{mark} B 0\nfirst\nline{mark[:3]}\n{mark} E 0 0\n"
        f"{mark} B 1\nsecond, no newline\n{mark} E 1 7\n"
    ).encode()
    split = _Split(program, 0)
    for at in range(0, len(stream), size):
        split.add(stream[at : at + size])
    assert split.step_text(0) == f"first\nline{mark[:3]}"
    assert split.step_text(1) == "second, no newline"
    assert program._codes == {0: 0, 1: 7}
