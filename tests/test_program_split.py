"""executor/program.py: several steps as one sh program, each step's output and exit code
read back on its own. Run by a real `sh` (the local connection), no lab needed."""

from __future__ import annotations

import os
from typing import Any

import pytest

from machineroom.connection.local import LocalConnection
from machineroom.executor.program import Program, ProgramStep, _Split
from machineroom.inventory.model import Host
from machineroom.modules.base import ModuleContext


def step(script: str, stdin: bytes | None = None, *, go_on: bool = False, name: str = "") -> Any:
    return ProgramStep(name or script[:20], script, stdin, go_on, {}, ModuleContext("local"), None)


def started(steps: list[ProgramStep], timeout: float = 60) -> Program:
    """The steps as a program running on this machine's sh."""
    program = Program(steps, None)
    program.start(LocalConnection(Host(id="local", host="127.0.0.1", connection="local")), timeout)
    return program


def run(steps: list[ProgramStep]) -> list[Any]:
    program = started(steps)
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


def test_each_step_gets_exactly_its_input_where_head_reads_ahead(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """busybox's and BSD's `head -c` read past their count through stdio: the program takes
    each step's bytes another way there, and the next step's input stays whole."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "head").write_text(
        "#!/bin/sh\n"
        'case "$1" in --version) echo "head (BusyBox)"; exit 0 ;; esac\n'
        "# as stdio does: read everything there is, give back the first N bytes\n"
        't=$(mktemp); cat >"$t"; /usr/bin/head -c "$2" "$t"; rm -f "$t"\n'
    )
    (fake / "head").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    outputs = run(
        [
            step("cat", b"first\n", name="a"),
            step("echo none", name="b"),
            step("cat", b"second\n", name="c"),
            step("wc -c", b"12345", name="d"),
        ]
    )
    assert [o.stdout for o in outputs] == ["first\n", "none\n", "second\n", "5\n"]


def _began(program: Program, index: int) -> None:
    """Wait until the host began step `index` (the program's own condition)."""
    with program._lock:
        assert program._lock.wait_for(lambda: index in program._began, timeout=60)


def test_a_program_the_walker_leaves_is_stopped_on_the_host(tmp_path: Any) -> None:
    never = tmp_path / "never"
    steps = [
        step("echo a", name="a"),
        step("sleep 60", name="b"),
        step(f"touch {never}", name="c"),
    ]
    program = started(steps, 120)
    assert program.claim("a") is steps[0]
    _began(program, 1)
    # the walker skipped b (its `when` turned false) and wants c: the program is killed
    # where it is; c, which had not begun, runs alone (None), and never from the program
    assert program.claim("c") is None
    assert program.output(steps[0]).stdout == "a\n"
    assert not never.exists()


def test_a_step_the_program_already_began_is_not_run_a_second_time(tmp_path: Any) -> None:
    never = tmp_path / "never"
    steps = [
        step("echo a", name="a"),
        step("echo b-began; sleep 60", name="b"),
        step(f"touch {never}", name="c"),
    ]
    program = started(steps, 120)
    _began(program, 1)
    # the walker skipped a and wants b, which the host is running: b stays the program's
    # (killed there, reported as cut), it is not sent again
    claimed = program.claim("b")
    assert claimed is steps[1]
    cut = program.output(claimed)
    assert cut is not None and cut.exit_code == -1
    assert "ended inside this task" in cut.stderr
    assert not never.exists()
