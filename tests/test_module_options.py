"""Module options ansible-core's own integration targets use, end to end on lab host h20.

Real runs of `machineroom apply` (a subprocess) in paths of their own (/tmp/mr-options):
`file`'s access_time/modification_time and attributes, blockinfile's prepend_newline and
append_newline, authorized_key's comment, command's executable and the result keys roles
read. Each: the first run changes, a second changes nothing, check mode writes nothing.
"""

from __future__ import annotations

import hashlib
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
              register: st
            - name: file result
              debug: {{msg: "{{{{ [st.path, st.state, st.uid, st.gid, st.size, st.mode] }}}}"}}
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
    shown = tasks_of(report)["file result"]["msg"]
    assert shown.startswith(f"['{ROOT}/times/b', 'file', 0, 0, 0, '0"), shown

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


def test_file_errors_as_ansibles_and_wait_for(tmp_path: Path, lab: Lab) -> None:
    address = next(h.address for h in lab.hosts if h.name == HOST)
    setup(
        tmp_path,
        lab,
        f"""\
        - hosts: all
          tasks:
            - name: bad time
              file: {{path: {ROOT}/x, state: touch, modification_time: "yesterday"}}
              ignore_errors: true
            - name: drained
              wait_for: {{port: 1, state: drained, exclude_hosts: [10.0.0.1], timeout: 5}}
            - name: banner
              wait_for: {{host: "{address}", port: 22, search_regex: OpenSSH, timeout: 10}}
            - name: no such banner
              wait_for:
                host: "{address}"
                port: 22
                search_regex: "^HTTP"
                timeout: 2
                connect_timeout: 1
                msg: no web server here
              ignore_errors: true
            - name: no flags here
              file: {{path: /proc/version, attr: +i}}
        """,
    )
    out, report = apply(tmp_path)
    assert out.returncode != 0
    tasks = tasks_of(report)
    assert (
        "Error while obtaining timestamp for time yesterday using format %Y%m%d%H%M.%S"
        in tasks["bad time"]["msg"]
    )
    assert "chattr failed: Error while setting attributes" in tasks["no flags here"]["msg"]
    assert tasks["drained"]["status"] == "ok"
    assert tasks["banner"]["status"] == "ok"
    assert tasks["no such banner"]["status"] == "failed"
    assert tasks["no such banner"]["msg"] == "no web server here"


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
        # the immutable flag is real: lsattr shows it and the host refuses a write
        shown = sh(tmp_path, f"lsattr -d {ROOT}/attr/f; echo x >> {ROOT}/attr/f || echo refused")
        assert "i" in shown.split()[0] and shown.endswith("refused\n"), shown
        _, report = apply(tmp_path, "-e", "flags=+i")
        assert changed(report) == []

        out, report = apply(tmp_path, "-e", "flags=-i")
        assert changed(report) == ["flags"]
        _, report = apply(tmp_path, "-e", "flags=-i")
        assert changed(report) == []
        assert "i" not in sh(tmp_path, f"lsattr -d {ROOT}/attr/f").split()[0]
    finally:
        sh(tmp_path, f"chattr -i {ROOT}/attr/f 2>/dev/null; true")


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
    shown = sh(tmp_path, f"cd {ROOT}/bif; cat a; echo ==; cat b; echo ==; cat c").split("==\n")
    assert shown[0] == f"one\n\n{block}\ntwo\n"
    # "one" gets a blank line before the block; the old blank line already follows it
    assert shown[1] == f"one\n\n{block}\ntwo\n"
    assert shown[2] == f"one\n\n{block}"
    again, report = apply(tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert changed(report) == []


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOptionsTestKeyBlobOptionsTestKeyBlob00 old@laptop"


def test_authorized_key_comment_follow_and_command_options(tmp_path: Path, lab: Lab) -> None:
    setup(
        tmp_path,
        lab,
        f"""\
        - hosts: all
          vars:
            keys: [checksum, md5sum, dest, size, mode, owner, group, uid, gid, state]
          tasks:
            - name: key
              authorized_key:
                user: root
                key: "{KEY}"
                comment: deploy@ci
                path: {ROOT}/ak/link
                follow: true
                manage_dir: false
                exclusive: true
                validate_certs: false
              register: ak
            - name: keyfile
              debug: {{msg: "{{{{ ak.keyfile }}}}"}}
            - name: expanded
              command: printf '%s|' $HOME ~root/x $MR_UNSET '${{HOME}}'
              register: expanded
            - name: literal
              command:
                argv: [printf, "%s|", $HOME, "~"]
                expand_argument_vars: false
                executable: /bin/bash
                stdin: ""
                stdin_add_newline: false
                strip_empty_ends: false
              register: literal
            - name: copied
              copy: {{dest: {ROOT}/ak/copied, content: "hello\\n", owner: deploy, mode: "0640"}}
              register: copied
            - name: results
              copy:
                dest: {ROOT}/ak/results
                content: |
                  {{{{ expanded.stdout }}}}
                  {{{{ literal.stdout }}}}
                  {{{{ literal.warnings }}}}
                  {{{{ copied | dict2items | selectattr('key', 'in', keys)
                     | items2dict | to_json }}}}
              when: not ansible_check_mode
        """,
    )
    sh(
        tmp_path,
        f"mkdir -p {ROOT}/ak; printf 'ssh-rsa AAAAB3other other@x\\n' > {ROOT}/ak/keys; "
        f"ln -sfn keys {ROOT}/ak/link",
    )
    check, report = apply(tmp_path, "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "key" in changed(report)
    assert sh(tmp_path, f"cat {ROOT}/ak/keys") == "ssh-rsa AAAAB3other other@x\n"

    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    # the comment replaced, the other key gone (exclusive), written through the link
    new_key = KEY.rsplit(" ", 1)[0] + " deploy@ci\n"
    assert sh(tmp_path, f"cat {ROOT}/ak/keys; test -L {ROOT}/ak/link && echo link") == (
        new_key + "link\n"
    )
    assert tasks_of(report)["keyfile"]["msg"] == f"{ROOT}/ak/keys"
    results = sh(tmp_path, f"cat {ROOT}/ak/results").splitlines()
    assert results[0] == "/root|/root/x|$MR_UNSET|/root|"
    assert results[1] == "$HOME|~|"
    assert "no longer supported with the 'command' module. Not using '/bin/bash'" in results[2]
    # copy's result carries the keys roles read, as Ansible's
    uid = int(sh(tmp_path, "id -u deploy"))
    assert json.loads(results[3]) == {
        "checksum": hashlib.sha1(b"hello\n").hexdigest(),
        "md5sum": hashlib.md5(b"hello\n").hexdigest(),
        "dest": f"{ROOT}/ak/copied",
        "size": 6,
        "mode": "0640",
        "owner": "deploy",
        "group": "root",
        "uid": uid,
        "gid": 0,
        "state": "file",
    }

    again, report = apply(tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "key" not in changed(report)
