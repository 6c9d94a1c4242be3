"""The executor's logic on fake hosts (connection/fake.py): no lab, no SSH, fast.

Each test runs a small playbook on three fake hosts through `run_playbook` and checks the
events (TaskFinished, HostFinished, RunFinished) and the commands each host was sent.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from executorkit import FakeRun, logged, play_on_fakes

from machineroom.connection.fake import FakeConnection, Reply, UnexpectedCommand
from machineroom.errors import Unreachable
from machineroom.executor.hoststate import RunOptions
from machineroom.executor.runner import ThreadRunner
from machineroom.inventory.model import Host
from machineroom.vars import parse_extra_vars


def _play(tasks: str, **keywords: object) -> str:
    extra = "".join(f"  {k}: {v}\n" for k, v in keywords.items())
    return f"- hosts: all\n  gather_facts: false\n{extra}  tasks:\n{tasks}"


def test_when_loop_and_register(tmp_path: Path) -> None:
    tasks = """
    - name: ask
      command: hostname
      register: out
    - name: say
      debug:
        msg: "{{ out.stdout }} said"
      when: out.rc == 0
    - name: skip me
      debug:
        msg: never
      when: out.stdout == "nobody"
    - name: each
      command: "touch {{ item }}"
      loop: [x, y]
"""
    answers = {
        "a": {"exec hostname": Reply(stdout="alpha\n"), "exec touch": Reply()},
        "b": {"exec hostname": Reply(stdout="beta\n"), "exec touch": Reply()},
        "c": {"exec hostname": Reply(exit_code=0, stdout="gamma\n"), "exec touch": Reply()},
    }
    result = play_on_fakes(tmp_path, _play(tasks), answers, per_host=True)
    assert result.finished.status == "ok"
    assert result.task("a", "say").msg == "alpha said"
    assert result.task("b", "say").msg == "beta said"
    assert result.statuses("skip me") == {"a": "skipped", "b": "skipped", "c": "skipped"}
    assert result.statuses("each") == {"a": "changed", "b": "changed", "c": "changed"}
    items = [e.item for e in result.tasks("c", items=True) if e.task == "each" and e.item]
    assert items == ["x", "y"]
    assert result.sent("c", "exec touch x") and result.sent("c", "exec touch y")
    assert result.host_results() == {"a": "ok", "b": "ok", "c": "ok"}
    assert all(not c.unexpected for c in result.pool.connections.values())


def test_failed_when_and_ignore_errors(tmp_path: Path) -> None:
    tasks = """
    - name: may fail
      command: probe
      ignore_errors: true
    - name: judged
      command: check
      register: r
      failed_when: "'boom' in r.stdout"
    - name: after
      command: after
"""
    answers = {
        "exec probe": Reply(exit_code=3, stderr="nope"),
        "exec check": lambda command, stdin: Reply(stdout="ok"),
        "exec after": Reply(),
    }
    per_host = {h: dict(answers) for h in "abc"}
    per_host["b"]["exec check"] = Reply(stdout="boom")
    result = play_on_fakes(tmp_path, _play(tasks), per_host, per_host=True)
    probe = result.task("a", "may fail")
    assert probe.status == "failed" and probe.ignored
    assert result.statuses("judged") == {"a": "changed", "b": "failed", "c": "changed"}
    assert result.task("b", "judged").msg == "failed_when condition met"
    assert set(result.statuses("after")) == {"a", "c"}  # b stopped at its failure
    assert result.host_results() == {"a": "ok", "b": "failed", "c": "ok"}
    assert result.finished.status == "failed"
    assert result.finished.stats["a"].ignored == 1


def test_handlers_run_once_at_the_end(tmp_path: Path) -> None:
    playbook = """
- hosts: all
  gather_facts: false
  tasks:
    - name: one
      command: change-one
      notify: restart
    - name: two
      command: change-two
      notify: restart
    - name: three
      command: last
  handlers:
    - name: restart
      command: restart-app
"""
    log: list[tuple[str, str, str, float]] = []
    answers = {
        h: {
            "exec change-one": logged(log, h, Reply()),
            "exec change-two": logged(log, h, Reply()),
            "exec last": logged(log, h, Reply()),
            "exec restart-app": logged(log, h, Reply()),
        }
        for h in "abc"
    }
    result = play_on_fakes(tmp_path, playbook, answers, per_host=True)
    for host in "abc":
        assert len(result.sent(host, "exec restart-app")) == 1
        mine = [cmd for h, edge, cmd, _ in log if h == host and edge == "start"]
        assert "exec last" in mine[-2] and "restart-app" in mine[-1]  # after the last task
        assert result.task(host, "restart").status == "changed"


def test_linear_gate_holds_task_two_until_everyone_finished_task_one(tmp_path: Path) -> None:
    tasks = """
    - name: one
      command: step1
    - name: two
      command: step2
"""
    log: list[tuple[str, str, str, float]] = []
    answers = {
        h: {
            "exec step1": logged(log, h, Reply(delay=0.3 if h == "a" else 0.0)),
            "exec step2": logged(log, h, Reply()),
        }
        for h in "abc"
    }
    play_on_fakes(tmp_path, _play(tasks, strategy="linear"), answers, per_host=True)
    last_one = max(t for _, edge, cmd, t in log if edge == "end" and "step1" in cmd)
    first_two = min(t for _, edge, cmd, t in log if edge == "start" and "step2" in cmd)
    assert last_one <= first_two  # b and c waited for a's slow task one


def test_free_strategy_lets_fast_hosts_go_on(tmp_path: Path) -> None:
    tasks = """
    - name: one
      command: step1
    - name: two
      command: step2
"""
    log: list[tuple[str, str, str, float]] = []
    answers = {
        h: {
            "exec step1": logged(log, h, Reply(delay=0.4 if h == "a" else 0.0)),
            "exec step2": logged(log, h, Reply()),
        }
        for h in "abc"
    }
    play_on_fakes(tmp_path, _play(tasks, strategy="free"), answers, per_host=True)
    a_one_end = next(t for h, e, cmd, t in log if h == "a" and e == "end" and "step1" in cmd)
    b_two_start = next(t for h, e, cmd, t in log if h == "b" and e == "start" and "step2" in cmd)
    assert b_two_start < a_one_end  # b did not wait for a


def test_any_errors_fatal_stops_every_host(tmp_path: Path) -> None:
    tasks = """
    - name: one
      command: step1
    - name: two
      command: step2
"""
    per_host = {h: {"exec step1": Reply(), "exec step2": Reply()} for h in "abc"}
    # a fails last (b and c finished task one): nobody starts task two
    per_host["a"]["exec step1"] = Reply(exit_code=1, stderr="broken", delay=0.2)
    result = play_on_fakes(
        tmp_path, _play(tasks, strategy="linear", any_errors_fatal="true"), per_host, per_host=True
    )
    assert result.statuses("one") == {"a": "failed", "b": "changed", "c": "changed"}
    assert not any(result.sent(h, "step2") for h in "abc")
    assert result.host_results()["a"] == "failed"
    assert result.finished.status == "failed"


def test_serial_batches_and_max_fail_percentage(tmp_path: Path) -> None:
    tasks = """
    - name: one
      command: step1
"""
    per_host = {h: {"exec step1": Reply()} for h in "abc"}
    per_host["a"]["exec step1"] = Reply(exit_code=1)
    result = play_on_fakes(
        tmp_path, _play(tasks, serial=1, max_fail_percentage=0), per_host, per_host=True
    )
    assert result.statuses("one") == {"a": "failed"}  # batch 1 failed: b and c never start
    assert not result.sent("b", "step1") and not result.sent("c", "step1")
    assert result.finished.status == "failed"

    # serial without a limit: every batch runs, one after the other
    log: list[tuple[str, str, str, float]] = []
    answers = {h: {"exec step1": logged(log, h, Reply(delay=0.05))} for h in "abc"}
    again = tmp_path / "again"
    again.mkdir()
    play_on_fakes(again, _play(tasks, serial=1), answers, per_host=True)
    order = [h for h, edge, _, _ in log]
    assert order == ["a", "a", "b", "b", "c", "c"]  # start, end of each host in turn


def test_run_once_result_reaches_every_host(tmp_path: Path) -> None:
    tasks = """
    - name: once
      command: make-token
      run_once: true
      register: token
    - name: use
      debug:
        msg: "token {{ token.stdout }}"
"""
    answers = {"exec make-token": Reply(stdout="t-123")}
    result = play_on_fakes(tmp_path, _play(tasks), answers)
    ran = [h for h in "abc" if result.sent(h, "make-token")]
    assert ran == ["a"]  # the first host of the batch
    assert [e.host for e in result.tasks() if e.task == "once"] == ["a"]  # reported once
    assert {h: result.task(h, "use").msg for h in "abc"} == dict.fromkeys("abc", "token t-123")


def test_stop_run_interrupts_the_running_commands(tmp_path: Path) -> None:
    tasks = """
    - name: slow
      command: sleep-long
    - name: next
      command: never
"""

    def stop_soon(run: object) -> None:
        time.sleep(0.2)
        run.stop_run()  # type: ignore[attr-defined]

    started = time.monotonic()
    result = play_on_fakes(
        tmp_path, _play(tasks), {"exec sleep-long": Reply(delay=10)}, during=stop_soon
    )
    assert time.monotonic() - started < 5
    assert result.finished.status == "interrupted"
    assert set(result.host_results().values()) == {"interrupted"}
    assert not any(result.sent(h, "never") for h in "abc")
    assert result.run.stop.is_set()


def test_unreachable_host(tmp_path: Path) -> None:
    tasks = """
    - name: one
      command: step1
"""
    result = play_on_fakes(
        tmp_path, _play(tasks), {"exec step1": Reply()}, unreachable={"c": "connection refused"}
    )
    assert result.statuses("one") == {"a": "changed", "b": "changed", "c": "unreachable"}
    finished = {e.host: e for e in result.events if type(e).__name__ == "HostFinished"}
    assert finished["c"].status == "unreachable"  # type: ignore[attr-defined]
    assert "connection refused" in finished["c"].reason  # type: ignore[attr-defined]
    assert result.finished.status == "unreachable"
    assert result.finished.stats["c"].unreachable == 1


def test_unexpected_command_fails_the_task_naming_it(tmp_path: Path) -> None:
    result = play_on_fakes(tmp_path, _play("    - name: odd\n      command: rm -rf /x\n"), {})
    event = result.task("a", "odd")
    assert event.status == "failed"
    assert "unexpected command" in event.msg and "rm -rf /x" in event.msg
    assert result.pool.connections["a"].unexpected


def test_fake_connection_alone() -> None:
    host = Host(id="h", host="10.0.0.1")
    conn = FakeConnection(host, {"uname": Reply(stdout="Linux\n")})
    assert conn.run("uname -s").stdout == "Linux\n"
    try:
        conn.run("reboot")
    except UnexpectedCommand as exc:
        assert "reboot" in str(exc) and "uname" in str(exc)
    else:
        raise AssertionError("an unexpected command must raise")
    failing = FakeConnection(host, {"x": Reply(raises=Unreachable("h", "gone"))})
    try:
        failing.run("x")
    except Unreachable as exc:
        assert "gone" in str(exc)
    assert [c.command for c in conn.commands] == ["uname -s", "reboot"]


def test_extra_var_provenance_at_run_time(tmp_path: Path) -> None:
    """An error on a variable set by -e says which -e argument set it (RunOptions'
    extra_var_sources reach the executor's variables)."""
    (tmp_path / "vars.yml").write_text("app:\n  name: shop\n")
    values, sources = parse_extra_vars([f"@{tmp_path / 'vars.yml'}"])
    options = RunOptions(extra_vars=values, extra_var_sources=sources)
    tasks = """
    - name: version
      debug:
        msg: "{{ app.version }}"
"""
    result = play_on_fakes(tmp_path, _play(tasks), {}, hosts=("a",), options=options)
    version = result.task("a", "version")
    assert version.status == "failed"
    assert "'app' set by extra vars (-e), " in version.msg
    assert f"{tmp_path / 'vars.yml'}:" in version.msg  # the file -e @ named


def test_extra_var_provenance_of_a_key_value(tmp_path: Path) -> None:
    values, sources = parse_extra_vars(["greeting={{nothing}}"])
    tasks = """
    - name: greet
      debug:
        msg: "{{ greeting }}"
"""
    result = play_on_fakes(
        tmp_path,
        _play(tasks),
        {},
        hosts=("a",),
        options=RunOptions(extra_vars=values, extra_var_sources=sources),
    )
    msg = result.task("a", "greet").msg
    assert "undefined variable 'nothing'" in msg
    assert "'greeting' set by extra vars (-e), -e argument 1 (greeting=...)" in msg


def test_a_runner_is_given_each_batch(tmp_path: Path) -> None:
    """run_playbook walks hosts through the runner it is given, batch by batch."""

    class CountingRunner(ThreadRunner):
        def __init__(self) -> None:
            self.batches: list[tuple[list[str], int]] = []

        def run_walks(self, walks, *, at_once, interrupt):  # type: ignore[no-untyped-def]
            self.batches.append(([w.host_id for w in walks], at_once))
            super().run_walks(walks, at_once=at_once, interrupt=interrupt)

    runner = CountingRunner()
    tasks = "    - name: one\n      command: step1\n"
    result: FakeRun = play_on_fakes(
        tmp_path,
        _play(tasks, serial=2),
        {"exec step1": Reply()},
        runner=runner,
        options=RunOptions(forks=1),
    )
    assert result.finished.status == "ok"
    assert runner.batches == [(["a", "b"], 1), (["c"], 1)]
    assert threading.active_count() < 50


def test_fakes_through_the_connection_registry(tmp_path: Path) -> None:
    """A fake registered as a connection type reaches the executor through the real pool."""
    from machineroom.connection.registry import register, unregister

    fakes: dict[str, FakeConnection] = {}

    def make(host: Host, options: object, tunnels: object) -> FakeConnection:
        fakes[host.id] = FakeConnection(host, {"exec hostname": Reply(stdout=host.id)})
        return fakes[host.id]

    register("fake", make)  # type: ignore[arg-type]
    try:
        tasks = "    - name: ask\n      command: hostname\n"
        result = play_on_fakes(tmp_path, _play(tasks), {}, via_registry=True)
    finally:
        unregister("fake")
    assert result.finished.status == "ok"
    assert {h: result.task(h, "ask").stdout for h in "abc"} == {"a": "a", "b": "b", "c": "c"}
    assert all(fakes[h].ran("exec hostname") for h in "abc")
