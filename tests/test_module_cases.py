"""Data-driven module cases: arguments in, script out, `sh -n` on it, outcome from canned output.

One JSON file per case, `tests/data/module_cases/<module>/<case>.json` (as pyinfra keeps one
file per operation case). A case holds:

- `args`: the task's arguments, as the playbook gives them (aliases and types are resolved,
  and the schema checked, as at run time);
- `context` (optional): `check`, `diff`, `vars`, `remote_user`, `become_user` of the
  ModuleContext, `file` (what a local `src` reads as), `template` (what a template renders to),
  `folder` (the local folder a `src` names, under tests/data);
- `script_contains` / `script_absent`: strings the (first) built script must / must not hold;
  `stdin_contains`: strings its stdin must hold. Robust fragments, never a whole script;
- `no_script: true` when the module has nothing to ask the host (check mode of command...):
  its outcome then comes from run_local() and the outcomes carry no `output`;
- `outcomes`: each a run of the module with canned output, `output` (`exit_code`, `stdout`,
  `stderr`; stdout may be a list of lines) for one step, or `outputs` for a conversation (one
  per step; `steps_contain` lists strings each later step's script must hold), and `expect`:
  `status` or `changed`/`failed`, `msg` or `msg_contains`, `diff_contains` (or `diff: ""`),
  `result`, `facts` and `record` (subsets: each key given must have that value).

Every script a case builds goes through `sh -n` (dash here: the scripts must be POSIX sh).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from machineroom.errors import Location
from machineroom.modules import MODULES, get_module
from machineroom.modules.base import CommandOutput, Module, ModuleContext, Outcome, RemoteStep
from machineroom.playbook.args import prepare_args
from tests.test_module_scripts import CONTROLLER_ONLY, context, sh_syntax_error

CASES = Path(__file__).parent / "data" / "module_cases"
CASE_FILES = sorted(CASES.glob("*/*.json"))

# The modules most playbooks use: each has several cases.
CORE = [
    "command",
    "shell",
    "copy",
    "template",
    "file",
    "lineinfile",
    "blockinfile",
    "authorized_key",
    "apt",
    "package",
    "service",
    "user",
    "group",
    "cron",
    "replace",
    "get_url",
    "unarchive",
    "systemd",
    "sysctl",
    "mount",
    "git",
]

KEYS = {
    "description",
    "args",
    "context",
    "script_contains",
    "script_absent",
    "stdin_contains",
    "no_script",
    "outcomes",
}
EXPECT_KEYS = {
    "status",
    "changed",
    "failed",
    "msg",
    "msg_contains",
    "diff",
    "diff_contains",
    "result",
    "facts",
    "record",
}


def load_case(path: Path) -> dict[str, Any]:
    """A case file, its keys checked (a typo would silently check nothing)."""
    case: dict[str, Any] = json.loads(path.read_text())
    assert set(case) <= KEYS, f"unknown keys {set(case) - KEYS}"
    assert case.get("outcomes"), "a case needs at least one outcome"
    for outcome in case["outcomes"]:
        assert set(outcome["expect"]) <= EXPECT_KEYS, set(outcome["expect"]) - EXPECT_KEYS
    return case


def case_context(spec: Mapping[str, Any]) -> ModuleContext:
    """The ModuleContext a case asks for (built on the matrix's fixed local files)."""
    ctx = context(bool(spec.get("check")), bool(spec.get("diff")))
    vars_ = {**ctx.vars, **spec.get("vars", {})}
    ctx = replace(ctx, vars=vars_, remote_user=spec.get("remote_user", "root"))
    if "become_user" in spec:
        ctx = replace(ctx, become_user=spec["become_user"])
    if "file" in spec:
        data = str(spec["file"]).encode()
        ctx = replace(ctx, read_file=lambda src: data)
    if "folder" in spec:
        folder = str(Path(__file__).parent / "data" / spec["folder"])
        ctx = replace(ctx, local_folder=lambda src: folder)
    if "template" in spec:
        text = str(spec["template"])
        ctx = replace(ctx, render_template=lambda src, **options: text)
    return ctx


def canned(spec: Mapping[str, Any]) -> CommandOutput:
    """A CommandOutput from a case's `output`; stdout as a list means lines."""
    stdout = spec.get("stdout", "")
    if isinstance(stdout, list):
        stdout = "".join(line + "\n" for line in stdout)
    return CommandOutput(int(spec.get("exit_code", 0)), stdout, spec.get("stderr", ""))


def check_script(step: RemoteStep, contains: Sequence[str], absent: Sequence[str] = ()) -> None:
    """The step parses as POSIX sh and holds (or lacks) the given fragments."""
    assert sh_syntax_error(step.script) == "", step.script
    for text in contains:
        assert text in step.script, f"{text!r} not in the script:\n{step.script}"
    for text in absent:
        assert text not in step.script, f"{text!r} in the script:\n{step.script}"


def run_case(
    module: Module,
    args: Mapping[str, Any],
    ctx: ModuleContext,
    case: Mapping[str, Any],
    outcome_spec: Mapping[str, Any],
) -> Outcome:
    """One outcome: build (or converse), check the scripts, feed the canned output."""
    conversation = module.converse(args, ctx)
    if conversation is None:
        step = module.build(args, ctx)
        if case.get("no_script"):
            assert step is None, "the case says no script, the module built one"
            return module.run_local(args, ctx)
        assert step is not None, "the module built no script"
        check_script(step, case.get("script_contains", []), case.get("script_absent", []))
        stdin = step.stdin
        if case.get("stdin_contains"):
            assert stdin is not None, "the step sends nothing on stdin"
            data = stdin if isinstance(stdin, bytes) else Path(stdin).read_bytes()
            for text in case["stdin_contains"]:
                assert text.encode() in data, f"{text!r} not on stdin"
        return module.interpret(args, ctx, canned(outcome_spec["output"]))
    outputs = outcome_spec["outputs"] if "outputs" in outcome_spec else [outcome_spec["output"]]
    later = outcome_spec.get("steps_contain", [])
    sent = 0
    try:
        step = next(conversation)
        check_script(step, case.get("script_contains", []), case.get("script_absent", []))
        for output in outputs:
            sent += 1
            step = conversation.send(canned(output))
            check_script(step, later[sent - 1] if sent <= len(later) else [])
        raise AssertionError(f"the conversation asked for more than {len(outputs)} steps")
    except StopIteration as done:
        assert sent == len(outputs), f"the conversation took {sent} of {len(outputs)} outputs"
        result: Outcome = done.value
        return result


def subset_problems(want: Mapping[str, Any], got: Mapping[str, Any], what: str) -> list[str]:
    """What differs from `want` in `got`: each key given must have that value; a mapping
    value is itself a subset (only the keys it names are compared)."""
    problems = []
    for key, value in want.items():
        have = got.get(key, "<missing>")
        if isinstance(value, Mapping) and isinstance(have, Mapping):
            problems += subset_problems(value, have, f"{what}[{key!r}]")
        elif have != value:
            problems.append(f"{what}[{key!r}] = {have!r}, want {value!r}")
    return problems


def check_outcome(outcome: Outcome, expect: Mapping[str, Any]) -> None:
    """The outcome matches what the case expects."""
    problems = []
    if "status" in expect and outcome.status != expect["status"]:
        problems.append(f"status {outcome.status}, want {expect['status']}")
    for key in ("changed", "failed"):
        if key in expect and getattr(outcome, key) != expect[key]:
            problems.append(f"{key} {getattr(outcome, key)}, want {expect[key]}")
    if "msg" in expect and outcome.msg != expect["msg"]:
        problems.append(f"msg {outcome.msg!r}, want {expect['msg']!r}")
    if "msg_contains" in expect and expect["msg_contains"] not in outcome.msg:
        problems.append(f"msg {outcome.msg!r} lacks {expect['msg_contains']!r}")
    if "diff" in expect and outcome.diff != expect["diff"]:
        problems.append(f"diff {outcome.diff!r}, want {expect['diff']!r}")
    wanted = expect.get("diff_contains", [])
    for text in [wanted] if isinstance(wanted, str) else wanted:
        if text not in outcome.diff:
            problems.append(f"diff lacks {text!r}: {outcome.diff!r}")
    problems += subset_problems(expect.get("result", {}), outcome.result, "result")
    problems += subset_problems(expect.get("facts", {}), outcome.facts, "facts")
    problems += subset_problems(expect.get("record", {}), outcome.record, "record")
    assert problems == [], f"{outcome}"


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_module_case(path: Path) -> None:
    case = load_case(path)
    module = get_module(path.parent.name)
    assert module is not None, f"no module {path.parent.name}"
    args = prepare_args(module.name, case["args"], module.schema, Location(str(path)))
    ctx = case_context(case.get("context", {}))
    for outcome_spec in case["outcomes"]:
        outcome = run_case(module, args, ctx, case, outcome_spec)
        check_outcome(outcome, outcome_spec["expect"])


def test_every_remote_module_has_cases() -> None:
    """Each module that builds a remote script has a case, the core ones two or more;
    controller-only modules (CONTROLLER_ONLY says why) have none to give."""
    counts = {name: len(list((CASES / name).glob("*.json"))) for name in MODULES}
    missing = [name for name in MODULES if name not in CONTROLLER_ONLY and not counts[name]]
    thin = [name for name in CORE if counts[name] < 2]
    stray = [p.name for p in CASES.iterdir() if p.name not in MODULES]
    assert (missing, thin, stray) == ([], [], [])
