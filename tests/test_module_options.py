"""Module options ansible-core's own integration targets use, end to end on lab host h20.

Real runs of `machineroom apply` (a subprocess) in paths of their own (/tmp/mr-options):
`file`'s access_time/modification_time and attributes, blockinfile's prepend_newline and
append_newline, authorized_key's comment, command's executable and the result keys roles
read. Each: the first run changes, a second changes nothing, check mode writes nothing.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from machineroom.lab import Lab
from tests.clirun import machineroom

HOST = "h20"
ROOT = "/tmp/mr-options"


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def setup(root: Path, lab: Lab, site: str) -> None:
    address = next(h.address for h in lab.hosts if h.name == HOST)
    write(
        root,
        "inventory.yml",
        f"all:\n  vars: {{ssh_key: {lab.key}}}\n"
        f"  hosts:\n    {HOST}: {{host: {address}, user: root}}\n",
    )
    (root / ".machineroom").mkdir(mode=0o700, exist_ok=True)
    (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    write(root, "site.yml", site)


def apply(root: Path, *args: str) -> tuple[Any, Any]:
    out = machineroom("apply", "-i", "inventory.yml", "site.yml", "--json", *args, cwd=root)
    try:
        return out, json.loads(out.stdout)
    except json.JSONDecodeError:
        return out, None


def sh(root: Path, command: str) -> str:
    out = machineroom("run", "-i", "inventory.yml", HOST, "--json", "--", command, cwd=root)
    return str(json.loads(out.stdout)["hosts"][HOST]["stdout"])


def tasks_of(report: Any) -> dict[str, Any]:
    return {t["task"]: t for t in report["hosts"][HOST]["tasks"]}


def changed(report: Any) -> list[str]:
    return [t["task"] for t in report["hosts"][HOST]["tasks"] if t["status"] == "changed"]


def test_file_times_and_touch_preserve(tmp_path: Path, lab: Lab) -> None:
    setup(
        tmp_path,
        lab,
        f"""\
        - hosts: all
          tasks:
            - file: {{path: {ROOT}/times, state: directory}}
            - name: given times
              file:
                path: {ROOT}/times/a
                state: touch
                access_time: "202001021030.15"
                modification_time: "2019-03-04 05:06"
                modification_time_format: "%Y-%m-%d %H:%M"
            - name: touch preserving
              file:
                path: {ROOT}/times/b
                state: touch
                access_time: preserve
                modification_time: preserve
            - name: times on state file
              file: {{path: {ROOT}/times/b, modification_time: "200001010000.00"}}
              when: not ansible_check_mode
        """,
    )
    check, report = apply(tmp_path, "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert set(changed(report)) >= {"given times", "touch preserving"}
    assert (
        sh(tmp_path, f"ls {ROOT}/times 2>&1 || true").strip().endswith("No such file or directory")
    )

    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(changed(report)) >= {"given times", "touch preserving", "times on state file"}
    stamps = sh(tmp_path, f"stat -c '%n %x %y' {ROOT}/times/a {ROOT}/times/b").splitlines()
    assert stamps[0].startswith(f"{ROOT}/times/a 2020-01-02 10:30:15.000000000")
    assert " 2019-03-04 05:06:00.000000000" in stamps[0]
    assert " 2000-01-01 00:00:00.000000000" in stamps[1]

    again, report = apply(tmp_path, "--diff")
    assert again.returncode == 0, again.stdout + again.stderr
    assert changed(report) == []

    # a default touch sets both times to now: always changed, as in Ansible
    write(
        tmp_path,
        "site.yml",
        f"- hosts: all\n  tasks:\n    - file: {{path: {ROOT}/times/a, state: touch}}\n",
    )
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert changed(report) != []
    assert "2019-03-04" not in sh(tmp_path, f"stat -c %y {ROOT}/times/a")


def test_file_bad_time_names_format(tmp_path: Path, lab: Lab) -> None:
    setup(
        tmp_path,
        lab,
        f"""\
        - hosts: all
          tasks:
            - file: {{path: {ROOT}/x, state: touch, modification_time: "yesterday"}}
        """,
    )
    out, _ = apply(tmp_path)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "Error while obtaining timestamp for time yesterday using format %Y%m%d%H%M.%S" in text


def test_file_attributes_set_kept_and_cleared(tmp_path: Path, lab: Lab) -> None:
    site = f"""\
        - hosts: all
          tasks:
            - file: {{path: {ROOT}/attr, state: directory}}
            - file: {{path: {ROOT}/attr/f, state: touch, modification_time: preserve,
                      access_time: preserve}}
            - name: flags
              file: {{path: {ROOT}/attr/f, attributes: "{{{{ flags }}}}"}}
        """
    setup(tmp_path, lab, site)
    before = sh(tmp_path, f"mkdir -p {ROOT}/attr; touch {ROOT}/attr/f; lsattr -d {ROOT}/attr/f")
    try:
        check, report = apply(tmp_path, "--check", "-e", "flags=+i")
        assert check.returncode == 0, check.stdout + check.stderr
        assert changed(report) == ["flags"]
        assert sh(tmp_path, f"lsattr -d {ROOT}/attr/f") == before

        out, report = apply(tmp_path, "--diff", "-e", "flags=+i")
        assert out.returncode == 0, out.stdout + out.stderr
        assert changed(report) == ["flags"]
        assert "+attributes: +i" in tasks_of(report)["flags"]["diff"]
        assert "i" in sh(tmp_path, f"lsattr -d {ROOT}/attr/f").split()[0]
        _, report = apply(tmp_path, "-e", "flags=+i")
        assert changed(report) == []
        # the immutable flag is real: the host refuses a write
        assert sh(tmp_path, f"echo x >> {ROOT}/attr/f 2>/dev/null || echo refused") == "refused\n"

        out, report = apply(tmp_path, "-e", "flags=-i")
        assert changed(report) == ["flags"]
        assert "i" not in sh(tmp_path, f"lsattr -d {ROOT}/attr/f").split()[0]
        _, report = apply(tmp_path, "-e", "flags=-i")
        assert changed(report) == []
    finally:
        sh(tmp_path, f"chattr -i {ROOT}/attr/f 2>/dev/null; true")


def test_file_attributes_unsupported_is_ansibles_error(tmp_path: Path, lab: Lab) -> None:
    setup(
        tmp_path,
        lab,
        """\
        - hosts: all
          tasks:
            - file: {path: /proc/version, attr: +i}
        """,
    )
    out, report = apply(tmp_path)
    assert out.returncode != 0
    assert (
        "chattr failed: Error while setting attributes" in report["hosts"][HOST]["tasks"][0]["msg"]
    )


def test_blockinfile_prepend_and_append_newline(tmp_path: Path, lab: Lab) -> None:
    # The outcomes below are what ansible-playbook 2.19's blockinfile leaves (checked by hand).
    setup(
        tmp_path,
        lab,
        f"""\
        - hosts: all
          tasks:
            - name: middle
              blockinfile:
                path: {ROOT}/bif/a
                block: "new"
                insertafter: "^one"
                prepend_newline: true
                append_newline: true
            - name: already blank around
              blockinfile:
                path: {ROOT}/bif/b
                block: "new"
                insertafter: "^one"
                prepend_newline: true
                append_newline: true
            - name: at the end
              blockinfile: {{path: {ROOT}/bif/c, block: new, prepend_newline: true,
                            append_newline: true}}
        """,
    )
    sh(
        tmp_path,
        f"mkdir -p {ROOT}/bif; printf 'one\\ntwo\\n' > {ROOT}/bif/a; "
        f"printf 'one\\n\\ntwo\\n' > {ROOT}/bif/b; printf 'one\\n' > {ROOT}/bif/c",
    )
    check, report = apply(tmp_path, "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert len(changed(report)) == 3
    assert sh(tmp_path, f"cat {ROOT}/bif/a") == "one\ntwo\n"

    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    block = "# BEGIN ANSIBLE MANAGED BLOCK\nnew\n# END ANSIBLE MANAGED BLOCK\n"
    assert sh(tmp_path, f"cat {ROOT}/bif/a") == f"one\n\n{block}\ntwo\n"
    # "one" gets a blank line before the block; the old blank line already follows it
    assert sh(tmp_path, f"cat {ROOT}/bif/b") == f"one\n\n{block}\ntwo\n"
    assert sh(tmp_path, f"cat {ROOT}/bif/c") == f"one\n\n{block}"
    again, report = apply(tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert changed(report) == []
