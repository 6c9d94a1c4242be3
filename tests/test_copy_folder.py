"""`copy` with `src` a local folder, as public roles use it, end to end on lab host h22.

Real `machineroom apply` runs (subprocesses) of a role whose files/conf.d holds a.conf,
sub/b.conf and a link to a.conf: `conf.d/` puts the content into dest, `conf.d` the folder
itself; mode on files, directory_mode on created folders; a second run changes nothing; a
changed local file is the only one sent again; check mode writes nothing; --diff names the
files. Paths of their own: /tmp/mr-copydir.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

from machineroom.lab import Lab
from tests.clirun import machineroom

HOST = "h22"
BASE = "/tmp/mr-copydir"

SITE = """\
- hosts: all
  roles: [web]
"""

ROLE_TASKS = f"""\
- name: content
  copy: {{src: conf.d/, dest: {BASE}/content, mode: "0640", directory_mode: "0750"}}
- name: folder
  copy: {{src: files/conf.d, dest: {BASE}/folder/}}
"""


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def setup(root: Path, lab: Lab) -> None:
    address = next(h.address for h in lab.hosts if h.name == HOST)
    write(
        root,
        "inventory.yml",
        f"all:\n  vars: {{ssh_key: {lab.key}}}\n"
        f"  hosts:\n    {HOST}: {{host: {address}, user: root}}\n",
    )
    (root / ".machineroom").mkdir(mode=0o700, exist_ok=True)
    (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    write(root, "site.yml", SITE)
    write(root, "roles/web/tasks/main.yml", ROLE_TASKS)
    write(root, "roles/web/files/conf.d/a.conf", "alpha\n")
    write(root, "roles/web/files/conf.d/sub/b.conf", "beta\n")
    os.symlink("a.conf", root / "roles/web/files/conf.d/link.conf")


def apply(root: Path, *args: str) -> dict[str, Any]:
    out = machineroom("apply", "-i", "inventory.yml", "site.yml", "--json", *args, cwd=root)
    try:
        report: dict[str, Any] = json.loads(out.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON report: {out.stdout}\n{out.stderr}") from None
    return report


def sh(root: Path, command: str) -> str:
    out = machineroom("run", "-i", "inventory.yml", HOST, "--json", "--", command, cwd=root)
    return str(json.loads(out.stdout)["hosts"][HOST]["stdout"])


def tasks_of(report: dict[str, Any]) -> dict[str, Any]:
    return {t["task"].split(" : ")[-1]: t for t in report["hosts"][HOST]["tasks"]}


def listing(root: Path) -> str:
    """Every file and folder under BASE with its mode and content, one per line."""
    return sh(
        root,
        f"cd {BASE} 2>/dev/null && find . -mindepth 1 | sort | while read -r p; do "
        'if [ -d "$p" ]; then echo "$p $(stat -c %a "$p")/"; '
        'else echo "$p $(stat -c %a "$p") $(cat "$p")"; fi; done',
    )


def test_a_role_copies_a_folder_idempotently(tmp_path: Path, lab: Lab) -> None:
    setup(tmp_path, lab)
    sh(tmp_path, f"rm -rf {BASE}")

    # check mode: both tasks would change, nothing is written
    report = apply(tmp_path, "--check")
    tasks = tasks_of(report)
    assert tasks["content"]["status"] == "changed", json.dumps(tasks["content"])
    assert tasks["folder"]["status"] == "changed", json.dumps(tasks["folder"])
    assert listing(tmp_path) == ""

    report = apply(tmp_path, "--diff")
    tasks = tasks_of(report)
    assert tasks["content"]["status"] == "changed", json.dumps(tasks["content"])
    assert f"{BASE}/content/sub/b.conf" in json.dumps(tasks["content"])
    # trailing slash: the content into dest (files 0640, created folders 0750); no slash:
    # the folder itself inside dest, default modes; the link arrives as the file it names
    assert listing(tmp_path).splitlines() == [
        "./content 750/",
        "./content/a.conf 640 alpha",
        "./content/link.conf 640 alpha",
        "./content/sub 750/",
        "./content/sub/b.conf 640 beta",
        "./folder 755/",
        "./folder/conf.d 755/",
        "./folder/conf.d/a.conf 644 alpha",
        "./folder/conf.d/link.conf 644 alpha",
        "./folder/conf.d/sub 755/",
        "./folder/conf.d/sub/b.conf 644 beta",
    ]
    assert not sh(tmp_path, f"test -h {BASE}/content/link.conf && echo link")

    # second run: nothing to do
    tasks = tasks_of(apply(tmp_path))
    assert [t["status"] for t in tasks.values()] == ["ok", "ok"], tasks

    # one local file changed, one mode changed on the host: only those are touched
    write(tmp_path, "roles/web/files/conf.d/sub/b.conf", "beta two\n")
    sh(tmp_path, f"chmod 600 {BASE}/content/a.conf; touch -d 2001-01-01 {BASE}/content/link.conf")
    before = listing(tmp_path)
    tasks = tasks_of(apply(tmp_path, "--check", "--diff"))
    assert "sub/b.conf" in json.dumps(tasks["content"]), json.dumps(tasks["content"])
    assert listing(tmp_path) == before  # check mode wrote nothing
    tasks = tasks_of(apply(tmp_path, "--diff"))
    content = tasks["content"]
    assert content["status"] == "changed", content
    text = json.dumps(content)
    assert "sub/b.conf" in text and "a.conf (attributes)" in text and "link.conf" not in text
    assert "b.conf 640 beta two" in listing(tmp_path)
    assert f"{BASE}/content/a.conf 640" in listing(tmp_path).replace("./", f"{BASE}/")
    # the untouched file was not rewritten
    assert sh(tmp_path, f"date -r {BASE}/content/link.conf +%Y").strip() == "2001"
    assert tasks["folder"]["status"] == "changed"
    tasks = tasks_of(apply(tmp_path))
    assert [t["status"] for t in tasks.values()] == ["ok", "ok"], tasks
