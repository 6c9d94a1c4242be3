"""`include_vars` and `stat` as public roles and ansible-core's tests use them, end to end.

Real runs of `machineroom apply` (a subprocess) against lab host h14, in paths of their own
(/tmp/mr-ivstat): a role's `vars/{{ ansible_os_family }}.yml` reaching a file on the host,
`name:` and `dir:`, a missing file naming the paths searched; `stat` on a file, a folder, a
link and a missing path, its checksum, and `st.stat.exists` in a `when`.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path
from typing import Any

from machineroom.lab import Lab
from machineroom.vault import encrypt_text
from tests.clirun import machineroom

HOST = "h14"


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


def test_a_role_includes_its_os_family_vars_and_uses_them(tmp_path: Path, lab: Lab) -> None:
    setup(
        tmp_path,
        lab,
        """\
        - hosts: all
          vars: {port: 1, who: play}
          roles: [web]
          tasks:
            - name: named
              include_vars: {file: extra.yml, name: extra}
            - name: folder
              include_vars:
                dir: conf.d
                files_matching: "^[0-9]"
                ignore_files: [skipped.yml]
              register: folder
            - name: show folder
              debug: {msg: "{{ folder.ansible_included_var_files | to_json }}"}
            - name: set_fact outranks include_vars
              set_fact: {late: from set_fact}
            - name: write
              copy:
                dest: /tmp/mr-ivstat/vars.txt
                content: "{{ extra.colour }} {{ first }} {{ second }} {{ late }}\\n"
        """,
    )
    # the role's own vars, its OS family file, and a template inside it rendered when used
    write(tmp_path, "roles/web/vars/main.yml", "listen: 0.0.0.0\n")
    write(tmp_path, "roles/web/vars/Debian.yml", "port: 8081\nwho: debian\ngreet: 'hi {{ who }}'\n")
    write(tmp_path, "roles/web/vars/RedHat.yml", "port: 9999\n")
    write(
        tmp_path,
        "roles/web/tasks/main.yml",
        """\
        - name: os vars
          include_vars: "{{ ansible_os_family }}.yml"
          register: included
        - name: show
          debug: {msg: "{{ included.ansible_included_var_files | to_json }}"}
        - file: {path: /tmp/mr-ivstat, state: directory}
        - name: role file
          copy: {dest: /tmp/mr-ivstat/role.txt, content: "{{ greet }} {{ listen }}:{{ port }}\\n"}
        """,
    )
    # the playbook's vars/ is searched; a !vault value is decrypted when used
    secret = textwrap.indent(encrypt_text("blue", "pw"), "  ")
    write(tmp_path, "vars/extra.yml", f"colour: !vault |\n{secret}\n")
    write(tmp_path, "vault-pass", "pw\n").chmod(0o600)
    write(tmp_path, "conf.d/10-first.yml", "first: one\nlate: from include_vars\n")
    write(tmp_path, "conf.d/sub/20-second.yaml", "second: two\n")
    write(tmp_path, "conf.d/skipped.yml", "first: wrong\n")
    write(tmp_path, "conf.d/README", "not a vars file, not matching\n")

    out, report = apply(tmp_path, "--vault-password-file", "vault-pass")
    assert out.returncode == 0, out.stdout + out.stderr
    assert sh(tmp_path, "cat /tmp/mr-ivstat/role.txt") == "hi debian 0.0.0.0:8081\n"
    assert sh(tmp_path, "cat /tmp/mr-ivstat/vars.txt") == "blue one two from set_fact\n"
    tasks = tasks_of(report)
    assert tasks["web : os vars"]["status"] == "ok"
    files = json.loads(tasks["web : show"]["msg"])
    assert files == [str(tmp_path / "roles/web/vars/Debian.yml")]
    assert json.loads(tasks["show folder"]["msg"]) == [
        str(tmp_path / "conf.d/10-first.yml"),
        str(tmp_path / "conf.d/sub/20-second.yaml"),
    ]
    # a second run changes nothing
    again, report = apply(tmp_path, "--vault-password-file", "vault-pass")
    assert again.returncode == 0, again.stdout + again.stderr
    assert not [t["task"] for t in report["hosts"][HOST]["tasks"] if t["status"] == "changed"]


def test_a_missing_vars_file_fails_naming_the_paths_searched(tmp_path: Path, lab: Lab) -> None:
    setup(
        tmp_path,
        lab,
        """\
        - hosts: all
          gather_facts: false
          roles: [web]
        """,
    )
    write(tmp_path, "roles/web/tasks/main.yml", "- name: os vars\n  include_vars: Plan9.yml\n")
    out, report = apply(tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    task = tasks_of(report)["web : os vars"]
    assert task["status"] == "failed"
    searched = [
        tmp_path / "roles/web/vars/Plan9.yml",
        tmp_path / "roles/web/Plan9.yml",
        tmp_path / "vars/Plan9.yml",
        tmp_path / "Plan9.yml",
    ]
    assert "include_vars: file 'Plan9.yml' not found" in task["msg"]
    assert ", ".join(str(p) for p in searched) in task["msg"]


def test_stat_reports_files_folders_links_and_missing_paths(tmp_path: Path, lab: Lab) -> None:
    setup(
        tmp_path,
        lab,
        """\
        - hosts: all
          gather_facts: false
          tasks:
            - file: {path: /tmp/mr-ivstat/st, state: directory, mode: "0750"}
            - copy: {dest: "/tmp/mr-ivstat/st/it's a file", content: "abc\\n", mode: "0640"}
            - file: {path: /tmp/mr-ivstat/st/link, src: "it's a file", state: link}
            - name: file
              stat: {path: "/tmp/mr-ivstat/st/it's a file"}
              register: f
            - name: folder
              stat: {path: /tmp/mr-ivstat/st, get_mime: false}
              register: d
            - name: link
              stat: {path: /tmp/mr-ivstat/st/link}
              register: ln
            - name: followed
              stat: {path: /tmp/mr-ivstat/st/link, follow: true, checksum_algorithm: sha256}
              register: fl
            - name: missing
              stat: {path: /tmp/mr-ivstat/st/nothing}
              register: gone
            - name: runs when it exists
              copy: {dest: /tmp/mr-ivstat/st/seen, content: "{{ f.stat.checksum }}"}
              when: f.stat.exists and f.stat.isreg
            - name: skipped when it does not
              command: "false"
              when: gone.stat.exists
            - name: show
              debug:
                msg: "{{ {'file': f.stat, 'folder': d.stat, 'link': ln.stat, 'followed': fl.stat,
                          'missing': gone.stat} | to_json }}"
        """,
    )
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    tasks = tasks_of(report)
    shown = json.loads(tasks["show"]["msg"])
    sha1 = hashlib.sha1(b"abc\n").hexdigest()
    st = shown["file"]
    assert st["exists"] and st["isreg"] and not st["isdir"] and not st["islnk"]
    assert (st["mode"], st["size"], st["checksum"]) == ("0640", 4, sha1)
    assert (st["pw_name"], st["gr_name"], st["uid"], st["gid"]) == ("root", "root", 0, 0)
    assert st["readable"] and st["writeable"] and not st["executable"]
    assert st["mimetype"] == "text/plain" and st["charset"] == "us-ascii"
    assert isinstance(st["mtime"], float) and st["mtime"] > 1.6e9
    assert st["path"] == "/tmp/mr-ivstat/st/it's a file" and st["nlink"] == 1
    folder = shown["folder"]
    assert folder["isdir"] and folder["mode"] == "0750" and "checksum" not in folder
    assert "mimetype" not in folder
    link = shown["link"]
    assert link["islnk"] and not link["isreg"] and "checksum" not in link
    assert link["lnk_target"] == "it's a file"
    assert link["lnk_source"] == "/tmp/mr-ivstat/st/it's a file"
    followed = shown["followed"]
    assert followed["isreg"] and not followed["islnk"] and followed["mode"] == "0640"
    assert followed["checksum"] == hashlib.sha256(b"abc\n").hexdigest()
    assert shown["missing"] == {"exists": False}
    assert all(tasks[name]["status"] == "ok" for name in ("file", "folder", "link", "missing"))
    assert tasks["skipped when it does not"]["status"] == "skipped"
    assert sh(tmp_path, "cat /tmp/mr-ivstat/st/seen") == sha1
    # check mode runs stat too (read-only): the registered result is real
    checked, report = apply(tmp_path, "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(tasks_of(report)["show"]["msg"])["file"]["checksum"] == sha1
