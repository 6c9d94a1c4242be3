"""The reporters fed synthetic event sequences: plain lines, live progress on a pty, JSON."""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import struct
import termios
import time
from collections.abc import Iterator

import pytest

from machineroom.events import (
    Event,
    HostFinished,
    HostStats,
    PlayStarted,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskStarted,
)
from machineroom.report import (
    JsonReporter,
    LiveReporter,
    PlainReporter,
    console_reporter,
    make_reporter,
    render_recap,
)

DIFF = "--- before: /etc/app.conf\n+++ after: /etc/app.conf\n@@ -1 +1 @@\n-port=80\n+port=8080\n"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_events(check: bool = False) -> list[Event]:
    """A small run: web1 changes a file and loops, web2 fails, web3 is unreachable."""
    stats = {
        "web1": HostStats(ok=3, changed=2),
        "web2": HostStats(ok=1, failed=1),
        "web3": HostStats(unreachable=1),
    }
    return [
        RunStarted(12, "site.yml", ("web1", "web2", "web3"), check=check),
        PlayStarted("site", ("web1", "web2", "web3"), "linear"),
        TaskStarted("web1", "t1", "env : Write config", "env"),
        TaskFinished("web1", "t1", "env : Write config", "env", "changed", 0.5, diff=DIFF),
        TaskFinished("web2", "t1", "env : Write config", "env", "ok", 0.4, msg="already matches"),
        TaskFinished(
            "web3", "t1", "env : Write config", "env", "unreachable", 10.0, msg="connection refused"
        ),
        TaskFinished("web1", "t2", "env : Packages", "env", "changed", 0.2, item="nginx"),
        TaskFinished("web1", "t2", "env : Packages", "env", "ok", 0.1, item="curl"),
        TaskFinished("web1", "t2", "env : Packages", "env", "changed", 0.3),
        TaskFinished("web1", "t3", "env : Uptime", "env", "ok", 0.1, stdout="up 3 days"),
        TaskFinished(
            "web2", "t3", "env : Uptime", "env", "failed", 0.1, msg="exit 1", stderr="uptime: boom"
        ),
        HostFinished("web1", "ok"),
        HostFinished("web2", "failed", "env", "t3", "exit 1"),
        HostFinished("web3", "unreachable", "env", None, "connection refused"),
        RunFinished(12, "unreachable", stats, 12.5, check=check),
    ]


def feed(reporter: object, events: list[Event]) -> None:
    for event in events:
        reporter(event)  # type: ignore[operator]
    reporter.close()  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def no_color_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")


def test_plain_default_shows_changes_failures_and_the_recap() -> None:
    out = io.StringIO()
    feed(PlainReporter(out), run_events())
    text = out.getvalue()
    assert "\x1b[" not in text  # not a terminal: no colour
    assert text.startswith("\nPLAY [site] ****")
    lines = text.splitlines()
    assert lines[3].startswith("TASK [env : Write config] ****")
    assert lines[4:6] == ["changed: [web1]", "unreachable: [web3] => connection refused"]
    assert "changed: [web1] => (item=nginx)" in lines
    assert "failed: [web2] => exit 1" in lines
    assert "ok: [web2]" not in text and "item=curl" not in text and "up 3 days" not in text
    assert DIFF.splitlines()[0] not in text  # no --diff
    # web3's unreachable task already said it; HostFinished does not repeat it
    assert text.count("unreachable: [web3]") == 1
    recap = text[text.index("PLAY RECAP") :].splitlines()
    assert recap[1] == (
        "web1 : ok=3    changed=2    unreachable=0    failed=0    skipped=0    rescued=0    "
        "ignored=0"
    )
    assert recap[3].startswith("web3 : ok=0    changed=0    unreachable=1")
    assert recap[4] == "run 12: unreachable in 12.5s"


def test_plain_verbose_adds_ok_lines_messages_and_output() -> None:
    out = io.StringIO()
    feed(PlainReporter(out, verbosity=1), run_events())
    lines = out.getvalue().splitlines()
    assert "ok: [web2] => already matches" in lines
    assert "ok: [web1] => (item=curl)" in lines
    assert "    up 3 days" in lines
    assert "    uptime: boom" in lines  # a failure's stderr at -v


def test_plain_diff_and_check_mode() -> None:
    out = io.StringIO()
    feed(PlainReporter(out, diff=True), run_events(check=True))
    text = out.getvalue()
    assert "PLAY [site] (check mode)" in text
    assert "changed: [web1]\n" + DIFF in text
    assert "run 12: unreachable in 12.5s (check mode: nothing was changed)" in text


def test_free_play_names_the_task_on_each_line_and_prints_no_task_banner() -> None:
    out = io.StringIO()
    reporter = PlainReporter(out)
    for event in (
        PlayStarted("site", ("a", "b")),  # free, the default
        TaskFinished("a", "t1", "One", "", "changed"),
        TaskFinished("a", "t2", "Two", "", "changed", item="x"),
        TaskFinished("b", "t1", "One", "", "changed"),
        TaskFinished("a", "t2", "Two", "", "changed", item="y"),
        TaskFinished("a", "h1", "restart", "", "changed", handler=True),
    ):
        reporter(event)
    assert out.getvalue().splitlines()[2:] == [
        "changed: [a] One",
        "changed: [a] Two => (item=x)",
        "changed: [b] One",
        "changed: [a] Two => (item=y)",
        "changed: [a] handler: restart",
    ]


def test_linear_play_prints_each_banner_and_handlers_under_running_handler() -> None:
    out = io.StringIO()
    reporter = PlainReporter(out)
    for event in (
        PlayStarted("site", ("a", "b"), "linear"),
        TaskFinished("a", "t1", "One", "", "changed"),
        TaskFinished("b", "t1", "One", "", "changed"),
        TaskFinished("a", "h1", "restart", "", "changed", handler=True),
        TaskFinished("b", "h1", "restart", "", "changed", handler=True),
    ):
        reporter(event)
    lines = [line.split(" *")[0] for line in out.getvalue().splitlines() if line]
    assert lines[1:] == [
        "TASK [One]",
        "changed: [a]",
        "changed: [b]",
        "RUNNING HANDLER [restart]",
        "changed: [a]",
        "changed: [b]",
    ]


def test_a_free_play_of_one_host_reads_like_linear() -> None:
    out = io.StringIO()
    reporter = PlainReporter(out)
    reporter(PlayStarted("site", ("a",)))
    reporter(TaskFinished("a", "t1", "One", "", "changed"))
    assert [line for line in out.getvalue().splitlines() if line][1:] == [
        "TASK [One] " + "*" * 69,
        "changed: [a]",
    ]


def test_ignored_failure_says_ignoring() -> None:
    out = io.StringIO()
    PlainReporter(out)(TaskFinished("a", "t", "T", "", "failed", msg="nope", ignored=True))
    assert out.getvalue().splitlines()[-2:] == ["failed: [a] => nope", "...ignoring"]


def test_colour_follows_the_flag_and_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    feed(PlainReporter(out, diff=True, color=True), run_events())
    text = out.getvalue()
    assert "\x1b[33mchanged: [web1]\x1b[0m" in text
    assert "\x1b[32m+port=8080\x1b[0m" in text and "\x1b[31m-port=80\x1b[0m" in text
    assert ANSI.sub("", text) == _plain_with_diff()

    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            monkeypatch.setenv("NO_COLOR", "1")
            assert PlainReporter(tty).color is False
            monkeypatch.delenv("NO_COLOR")
            assert PlainReporter(tty).color is True
            monkeypatch.setenv("TERM", "dumb")
            assert PlainReporter(tty).color is False
            assert isinstance(console_reporter(tty), PlainReporter)  # dumb: no live redraw
    finally:
        os.close(master)
        os.close(slave)


def _plain_with_diff() -> str:
    out = io.StringIO()
    feed(PlainReporter(out, diff=True, color=False), run_events())
    return out.getvalue()


class Pty:
    """A pseudo-terminal of a given width; `read()` returns what was written so far."""

    def __init__(self, columns: int = 100) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        attrs = termios.tcgetattr(self.slave)
        attrs[1] &= ~termios.OPOST  # no \n -> \r\n translation: compare text as written
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        self.stream = open(self.slave, "w", closefd=False)  # noqa: SIM115 - closed in close()
        os.set_blocking(self.master, False)

    def read(self) -> str:
        chunks = []
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode()

    def close(self) -> None:
        self.stream.close()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def pty() -> Iterator[Pty]:
    terminal = Pty()
    yield terminal
    terminal.close()


def test_console_reporter_is_live_on_a_terminal_and_plain_elsewhere(pty: Pty) -> None:
    assert isinstance(console_reporter(pty.stream), LiveReporter)
    assert isinstance(console_reporter(io.StringIO()), PlainReporter)


def test_live_status_line_is_redrawn_in_place(pty: Pty) -> None:
    now = [100.0]
    reporter = LiveReporter(pty.stream, clock=lambda: now[0], redraw_interval=3600)
    events = run_events()
    for event in events[:3]:  # started, play, web1 starts "Write config"
        reporter(event)
    screen = pty.read()
    assert "PLAY [site]" in screen
    assert screen.endswith(
        "\r\x1b[K\x1b[2m0/3 hosts  0 tasks  0:00  | web1: env : Write config\x1b[0m"
    )
    now[0] = 165.0
    for event in events[3:6]:
        reporter(event)
    screen = ANSI.sub("", pty.read())
    # a result line is printed above the status line, which is then drawn again
    assert "changed: [web1] env : Write config\n" in screen
    assert "unreachable: [web3] env : Write config => connection refused\n" in screen
    assert screen.rsplit("\r", 1)[-1] == "0/3 hosts  3 tasks  1 changed  1:05"
    assert "ok: [web2]" not in screen
    for event in events[6:]:
        reporter(event)
    reporter.close()
    screen = ANSI.sub("", pty.read())
    assert "failed: [web2] env : Uptime => exit 1" in screen
    assert "PLAY RECAP" in screen and "run 12: unreachable in 12.5s" in screen
    assert screen.endswith("run 12: unreachable in 12.5s\n")  # the status line is gone


def test_live_status_line_fits_the_terminal(pty: Pty) -> None:
    narrow = Pty(columns=40)
    try:
        reporter = LiveReporter(narrow.stream, color=False, redraw_interval=3600)
        reporter(RunStarted(1, "p", tuple(f"host{n}" for n in range(6))))
        for n in range(6):
            reporter(TaskStarted(f"host{n}", "t", "A rather long task name", "stage"))
        line = narrow.read().rsplit("\r\x1b[K", 1)[-1]
        assert len(line) == 39
        reporter.close()
    finally:
        narrow.close()
    wide = LiveReporter(io.StringIO())
    wide(RunStarted(1, "p", tuple(f"h{n}" for n in range(6))))
    for n in range(6):
        wide(TaskStarted(f"h{n}", "t", "T", ""))
    assert wide.status_text().endswith("h0: T, h1: T, h2: T, +3 more")
    wide.close()


def test_live_redraw_thread_moves_the_clock(pty: Pty) -> None:
    now = [0.0]
    reporter = LiveReporter(pty.stream, color=False, clock=lambda: now[0], redraw_interval=0.01)
    reporter(RunStarted(1, "p", ("a",)))
    now[0] = 75.0
    deadline = 200
    screen = ""
    while "1:15" not in screen and deadline:
        time.sleep(0.01)
        screen += pty.read()
        deadline -= 1
    reporter.close()
    assert "0/1 hosts  0 tasks  1:15" in screen


def test_json_is_one_document_with_results_per_host() -> None:
    out = io.StringIO()
    feed(JsonReporter(out), run_events())
    doc = json.loads(out.getvalue())
    assert doc["run_id"] == 12 and doc["status"] == "unreachable" and doc["duration"] == 12.5
    assert doc["playbook"] == "site.yml" and doc["check"] is False
    assert doc["stats"]["web1"] == {
        "ok": 3,
        "changed": 2,
        "skipped": 0,
        "failed": 0,
        "unreachable": 0,
        "rescued": 0,
        "ignored": 0,
    }
    web1 = doc["hosts"]["web1"]
    assert web1["status"] == "ok"
    assert [t["task"] for t in web1["tasks"]] == [
        "env : Write config",
        "env : Packages",
        "env : Uptime",
    ]
    assert web1["tasks"][0]["diff"] == DIFF and web1["tasks"][0]["duration"] == 0.5
    assert [i["item"] for i in web1["tasks"][1]["items"]] == ["nginx", "curl"]
    assert web1["tasks"][1]["items"][1]["status"] == "ok"
    web2 = doc["hosts"]["web2"]
    assert (web2["status"], web2["stage"], web2["task_id"]) == ("failed", "env", "t3")
    assert web2["tasks"][-1]["stderr"] == "uptime: boom"
    assert doc["hosts"]["web3"]["reason"] == "connection refused"


def test_json_written_once_and_on_close_when_cut_short() -> None:
    out = io.StringIO()
    reporter = JsonReporter(out, indent=None)
    events = run_events()
    for event in events[:5]:
        reporter(event)
    reporter.close()
    reporter.close()
    assert len(out.getvalue().splitlines()) == 1
    doc = json.loads(out.getvalue())
    assert doc["status"] == "interrupted"
    assert doc["stats"]["web1"]["changed"] == 1  # counted from the results seen


def test_make_reporter_json_keeps_stdout_for_the_document(pty: Pty) -> None:
    out, err = io.StringIO(), io.StringIO()
    feed(make_reporter(as_json=True, stdout=out, stderr=err), run_events())
    assert json.loads(out.getvalue())["run_id"] == 12
    assert err.getvalue() == ""  # stderr not a terminal: nothing there either
    out = io.StringIO()
    feed(make_reporter(as_json=True, stdout=out, stderr=pty.stream), run_events())
    json.loads(out.getvalue())
    assert "PLAY RECAP" in pty.read()
    out = io.StringIO()
    feed(make_reporter(verbosity=1, stdout=out), run_events())
    assert "ok: [web2] => already matches" in out.getvalue()


def test_recap_colours_hosts_by_their_worst_outcome() -> None:
    text = render_recap(
        {"a": HostStats(ok=1), "b": HostStats(changed=1, ok=1), "c": HostStats(failed=1)},
        run_id=None,
        status="failed",
        duration=125.0,
        color=True,
    )
    assert "\x1b[32ma\x1b[0m :" in text
    assert "\x1b[33mb\x1b[0m :" in text
    assert "\x1b[31mc\x1b[0m :" in text
    assert ANSI.sub("", text).splitlines()[-1] == "run: failed in 2m05s"


def test_a_failure_shows_its_exit_code_and_the_end_of_its_output_without_v() -> None:
    out = io.StringIO()
    reporter = PlainReporter(out)
    stderr = "".join(f"line {n}\n" for n in range(1, 9))
    reporter(
        TaskFinished(
            "web1", "t", "Build", "", "failed", msg="non-zero return code", stderr=stderr,
            stdout="compiling\n", result={"rc": 2},
        )
    )  # fmt: skip
    reporter(
        TaskFinished(
            "web2", "t", "Build", "", "failed", msg="non-zero return code",
            stdout="only stdout\n", result={"rc": 1},
        )
    )  # fmt: skip
    lines = out.getvalue().splitlines()
    start = lines.index("failed: [web1] => non-zero return code (rc=2)")
    assert lines[start + 1 : start + 7] == [
        "    ... (3 lines above; -v shows all)",
        "    line 4",
        "    line 5",
        "    line 6",
        "    line 7",
        "    line 8",
    ]
    assert "compiling" not in out.getvalue()  # stderr says what went wrong; stdout waits for -v
    end = lines.index("failed: [web2] => non-zero return code (rc=1)")
    assert lines[end + 1] == "    only stdout"
