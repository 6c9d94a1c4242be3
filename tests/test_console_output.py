"""What `machineroom apply` prints, as a user sees it: piped (plain lines) and on a terminal
(the live reporter), for a real run on lab host h15 reached under three inventory names.

The playbook has a linear play (one `TASK` banner per task, handlers under `RUNNING
HANDLER`) and a free play (hosts at different tasks at once: every line names its task, no
banner repeats) whose loop changes on every host and whose build fails on one host with more
stderr lines than are shown without -v.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from machineroom.lab import Lab
from tests.clirun import machineroom

LAB_HOST = "h15"  # files of this test's own names only (`/tmp/mr-console-*`)
NAMES = ("web1", "web2", "web3")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

PLAYBOOK = """\
- name: Configure
  hosts: all
  strategy: linear
  gather_facts: false
  tasks:
    - name: Write the config
      copy:
        dest: "/tmp/mr-console-{{ inventory_hostname }}-{{ stamp }}.conf"
        content: "v1\\n"
      notify: restart app
  handlers:
    - name: restart app
      command: "true"

- name: Build
  hosts: all
  gather_facts: false
  vars: {kind: build}
  tasks:
    - name: Install {{ kind }} packages  # named as Ansible names it: Install build packages
      command: "echo {{ item }}"
      loop: [curl, git]
    - name: Compile
      shell: "for i in 1 2 3 4 5 6 7; do echo build line $i >&2; done; exit 3"
      when: inventory_hostname == 'web2'
"""


@pytest.fixture
def project(tmp_path: Path, lab: Lab) -> Path:
    host = next(h for h in lab.hosts if h.name == LAB_HOST)
    lines = ["all:", "  vars:", f"    ssh_key: {lab.key}", "    user: root", "  hosts:"]
    lines += [f"    {name}: {{host: {host.address}}}" for name in NAMES]
    (tmp_path / "inventory.yml").write_text("\n".join(lines) + "\n")
    (tmp_path / ".machineroom").mkdir(mode=0o700)
    (tmp_path / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    return tmp_path


def _stamp(project: Path) -> str:
    # a fresh file name for each test, so every run changes and notifies its handler
    return project.name.replace("/", "-")


def test_piped_output_reads_like_ansible_and_names_tasks_under_free(project: Path) -> None:
    out = machineroom("apply", "site.yml", "-e", f"stamp={_stamp(project)}", cwd=project)
    assert out.returncode == 2, out.stdout + out.stderr
    text = out.stdout
    assert "\x1b" not in text  # a pipe gets no colour and no redraws
    lines = text.splitlines()
    configure = lines.index(next(line for line in lines if line.startswith("PLAY [Configure]")))
    build = lines.index(next(line for line in lines if line.startswith("PLAY [Build]")))
    linear = lines[configure:build]
    free = lines[build:]

    # linear: each banner once, the handler under RUNNING HANDLER, results without task names
    banners = [line.split(" *")[0] for line in linear if line.endswith("*")]
    assert banners[1:] == ["TASK [Write the config]", "RUNNING HANDLER [restart app]"]
    handler_at = linear.index(next(line for line in linear if "RUNNING HANDLER" in line))
    assert {line for line in linear[handler_at + 1 :] if line} == {
        f"changed: [{name}]" for name in NAMES
    }

    # free: no task banner at all; every line says its task, loop items included
    assert [line for line in free if line.startswith(("TASK", "RUNNING"))] == []
    for name in NAMES:
        for item in ("curl", "git"):
            assert f"changed: [{name}] Install build packages => (item={item})" in free
    failed = free.index("failed: [web2] Compile => non-zero return code (rc=3)")
    assert free[failed + 1 : failed + 7] == [
        "    ... (2 lines above; -v shows all)",
        "    build line 3",
        "    build line 4",
        "    build line 5",
        "    build line 6",
        "    build line 7",
    ]
    assert re.search(r"^web2 +: ok=3 +changed=3 .*failed=1", text, re.M), text


def _on_a_terminal(project: Path, *args: str) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its stdout and stderr; its exit code and all it
    wrote."""
    master, slave = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "machineroom", *args],
        cwd=project,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "120"},
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_terminal_output_names_tasks_and_handlers(project: Path) -> None:
    code, raw = _on_a_terminal(project, "apply", "site.yml", "-e", f"stamp={_stamp(project)}")
    assert code == 2, raw
    assert "\x1b[" in raw  # a terminal gets colour and the redrawn status line
    # What stays on the screen: each \r-redrawn status line is overwritten by what follows.
    screen = [ANSI.sub("", line.rstrip("\r").split("\r")[-1]) for line in raw.split("\n")]
    for name in NAMES:
        assert f"changed: [{name}] Write the config" in screen
        assert f"changed: [{name}] handler: restart app" in screen
        assert f"changed: [{name}] Install build packages => (item=git)" in screen
    failed = screen.index("failed: [web2] Compile => non-zero return code (rc=3)")
    assert screen[failed + 1] == "    ... (2 lines above; -v shows all)"
    assert screen[failed + 6] == "    build line 7"
    assert any(line.startswith("web2") and "failed=1" in line for line in screen), screen


def test_verbose_shows_every_stderr_line(project: Path) -> None:
    out = machineroom("apply", "site.yml", "-v", "-e", f"stamp={_stamp(project)}", cwd=project)
    assert out.returncode == 2
    assert "lines above" not in out.stdout
    lines = out.stdout.splitlines()
    failed = lines.index("failed: [web2] Compile => non-zero return code (rc=3)")
    assert lines[failed + 1 : failed + 8] == [f"    build line {n}" for n in range(1, 8)]


TEMPLATE_PLAYS = """\
- hosts: web1
  gather_facts: false
  tasks:
    - name: Probe
      command: "true"
      register: probe
      when: false
    - name: Write WHICH.conf
      template: {src: WHICH.j2, dest: /tmp/mr-console-WHICH.conf}
"""


@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_template_errors_name_the_template_line(project: Path, terminal: bool) -> None:
    (project / "templates").mkdir()
    # line 3 opens a block it never closes: found before any host is contacted
    (project / "templates" / "broken.j2").write_text("port=80\nname=x\n{% if tls %}\nssl=on\n")
    # `probe` is registered (by a skipped task): only the run can tell it has no stdout_lines
    (project / "templates" / "late.j2").write_text("a=1\nout={{ probe.stdout_lines | first }}\n")
    outputs = {}
    for which in ("broken", "late"):
        (project / f"{which}.yml").write_text(TEMPLATE_PLAYS.replace("WHICH", which))
        args = ("apply", f"{which}.yml")
        if terminal:
            code, raw = _on_a_terminal(project, *args)
            text = ANSI.sub("", raw.replace("\r\n", "\n"))
        else:
            out = machineroom(*args, cwd=project)
            code, text = out.returncode, out.stdout + out.stderr
        outputs[which] = (code, text)
    code, text = outputs["broken"]
    assert code == 4, text  # an error in the input, found before any host was contacted
    assert (
        'broken.yml:8:7: task "Write broken.conf": templates/broken.j2:3: template syntax error:'
        " the 'if' block opened here is not closed"
    ) in text
    assert "found before contacting any host" in text and "PLAY [" not in text
    assert "{% if tls %}" not in text and "ssl=on" not in text  # no template text dumped
    code, text = outputs["late"]
    assert code == 2, text
    assert (
        "failed: [web1] Write late.conf => late.yml:8:7: "
        if terminal
        else "failed: [web1] => late.yml:8:7: "
    ) in text
    assert (
        "templates/late.j2:2: undefined variable 'probe.stdout_lines'"
        " ('probe' has no key 'stdout_lines') ['probe' set by registered and set_fact]"
    ) in text
    assert "out={{" not in text
