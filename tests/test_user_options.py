"""`user` and `group` options that ansible-core's own targets and public roles use, end to end.

Real runs of `machineroom apply` (a subprocess) against lab host h21: account expiry, password
lock, ageing (chage), umask, ssh key generation, supplementary groups with append, and
groupadd's `gid_min`/`gid_max` range, each checked in `getent shadow|passwd|group` on the host;
a second run changes nothing, check mode changes nothing; options of other systems are refused
with a message naming them.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

from machineroom.lab import Lab
from machineroom.modules.base import ModuleContext
from machineroom.modules.group import GroupModule
from machineroom.modules.user import UserModule, expiry, looks_unhashed, path_word
from tests.clirun import machineroom

HOST = "h21"
HASH = "$6$rounds=656000$TT4O7jz2M57npccl$33LF6FcUMSW11qrESXL1HX0BS.bsiT6aenFLLiVpsQh6hDtI9pJh5iY7x8J7ePkN4fP8hmElidHXaeD51pbGS."  # noqa: E501


def setup(root: Path, lab: Lab) -> None:
    address = next(h.address for h in lab.hosts if h.name == HOST)
    (root / "inventory.yml").write_text(
        f"all:\n  vars: {{ssh_key: {lab.key}}}\n"
        f"  hosts:\n    {HOST}: {{host: {address}, user: root}}\n"
    )
    (root / ".machineroom").mkdir(mode=0o700, exist_ok=True)
    (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())


def apply(root: Path, site: str, *args: str) -> tuple[Any, Any]:
    (root / "site.yml").write_text(textwrap.dedent(site))
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


def shadow(root: Path, name: str) -> list[str]:
    return sh(root, f"getent shadow {name}").strip().split(":")


ACCOUNT = f"""\
- hosts: all
  gather_facts: false
  tasks:
    - name: team
      group: {{name: mrx-team, gid_min: 4500, gid_max: 4510}}
      register: team
    - name: twin
      group: {{name: mrx-twin, gid: "{{{{ team.gid }}}}", non_unique: true}}
      register: twin
    - name: account
      user:
        name: mrx-user
        comment: expiring account
        password: "{HASH}"
        expires: 2529881062
        password_expire_max: 10
        password_expire_min: 5
        password_expire_warn: 3
        umask: "077"
        groups: mrx-team
        append: true
        generate_ssh_key: true
        ssh_key_type: ed25519
        ssh_key_passphrase: secret words
        ssh_key_comment: mrx key
      register: account
    - name: show
      debug: {{msg: "{{{{ {{'team': team, 'twin': twin, 'account': account}} | to_json }}}}"}}
"""

CHANGE = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: unexpire and lock
      user:
        name: mrx-user
        expires: -1
        password_lock: true
        password_expire_max: 0
        password_expire_min: 0
        groups: [mrx-twin]
        append: true
"""


def test_user_and_group_options_change_once_and_show_in_shadow(tmp_path: Path, lab: Lab) -> None:
    setup(tmp_path, lab)
    sh(tmp_path, "userdel -r mrx-user; groupdel mrx-twin; groupdel mrx-team; true")

    check, report = apply(tmp_path, ACCOUNT.replace('"{{ team.gid }}"', "4500"), "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert {"team", "account"} <= set(changed(report))
    assert sh(tmp_path, "getent passwd mrx-user; getent group mrx-team; true") == ""

    out, report = apply(tmp_path, ACCOUNT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert changed(report) == ["team", "twin", "account"]
    shown = json.loads(tasks_of(report)["show"]["msg"])
    team, twin, account = shown["team"], shown["twin"], shown["account"]
    # groupadd -K GID_MIN=4500 -K GID_MAX=4510: the first free gid of the range
    assert 4500 <= team["gid"] <= 4510 and team["name"] == "mrx-team"
    assert twin["gid"] == team["gid"] and team["system"] is False
    assert (
        sh(tmp_path, "getent group mrx-team mrx-twin | cut -d: -f3").split()
        == [str(team["gid"])] * 2
    )

    entry = sh(tmp_path, "getent passwd mrx-user").strip().split(":")
    assert account["uid"] == int(entry[2]) and account["group"] == int(entry[3])
    assert account["home"] == "/home/mrx-user" and account["comment"] == "expiring account"
    assert account["groups"] == "mrx-team" and account["create_home"] is True
    assert account["password"] == "NOT_LOGGING_PASSWORD"
    fields = shadow(tmp_path, "mrx-user")
    # hash, min 5, max 10, warn 3, expiry 2050-03-03 = day 29281 (ansible-core's own figure)
    assert fields[1] == HASH and fields[3:6] == ["5", "10", "3"] and fields[7] == "29281"
    assert sh(tmp_path, "id -Gn mrx-user").split() == ["mrx-user", "mrx-team"]
    # useradd -K UMASK=077 made the home 0700
    assert sh(tmp_path, "stat -c %a /home/mrx-user").strip() == "700"
    # the key is there, owned by the user, and opens only with its passphrase
    key = "/home/mrx-user/.ssh/id_ed25519"
    assert account["ssh_key_file"] == key
    assert account["ssh_public_key"].startswith("ssh-ed25519 ")
    assert account["ssh_public_key"].endswith(" mrx key")
    assert "SHA256:" in account["ssh_fingerprint"] and "(ED25519)" in account["ssh_fingerprint"]
    assert sh(tmp_path, f"stat -c %U:%a {key} /home/mrx-user/.ssh").split() == [
        "mrx-user:600",
        "mrx-user:700",
    ]
    public = sh(tmp_path, f"ssh-keygen -y -P 'secret words' -f {key}").strip()
    assert account["ssh_public_key"].startswith(public)
    assert sh(tmp_path, f"ssh-keygen -y -P '' -f {key} >/dev/null 2>&1 || echo refused") == (
        "refused\n"
    )

    again, report = apply(tmp_path, ACCOUNT)
    assert again.returncode == 0, again.stdout + again.stderr
    assert changed(report) == []
    shown = json.loads(tasks_of(report)["show"]["msg"])
    assert shown["account"]["ssh_public_key"] == account["ssh_public_key"]
    assert any("no force" in w for w in shown["account"]["warnings"])

    # check mode reports the change and leaves shadow as it was
    check, report = apply(tmp_path, CHANGE, "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    msg = tasks_of(report)["unexpire and lock"]["msg"]
    for what in ("expires", "password_lock", "password_expire_max", "groups"):
        assert what in msg, msg
    assert shadow(tmp_path, "mrx-user") == fields

    out, report = apply(tmp_path, CHANGE)
    assert out.returncode == 0, out.stdout + out.stderr
    assert changed(report) == ["unexpire and lock"]
    after = shadow(tmp_path, "mrx-user")
    assert after[1] == "!" + HASH and after[3:5] == ["0", "0"] and after[7] == ""
    # mrx-twin shares mrx-team's gid (non_unique), so read the member lists, not `id`
    members = sh(tmp_path, "getent group mrx-team mrx-twin | cut -d: -f1,4").split()
    assert members == ["mrx-team:mrx-user", "mrx-twin:mrx-user"]
    again, report = apply(tmp_path, CHANGE)
    assert again.returncode == 0 and changed(report) == []

    # unlock: usermod -U; the same hash with update_password on_create changes nothing else
    unlock = CHANGE.replace("password_lock: true", "password_lock: false")
    out, report = apply(tmp_path, unlock)
    assert changed(report) == ["unexpire and lock"]
    assert shadow(tmp_path, "mrx-user")[1] == HASH

    gone = """\
    - hosts: all
      gather_facts: false
      tasks:
        - name: user gone
          user: {name: mrx-user, state: absent, remove: true, force: true}
          register: u
        - name: groups gone
          group: {name: "{{ item }}", state: absent}
          loop: [mrx-twin, mrx-team]
        - debug: {msg: "{{ u | to_json }}"}
    """
    out, report = apply(tmp_path, gone)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(tasks_of(report)["debug"]["msg"])
    assert result["force"] is True and result["remove"] is True
    assert sh(tmp_path, "getent passwd mrx-user; ls -d /home/mrx-user 2>/dev/null; true") == ""


def test_options_of_other_systems_are_refused_by_name(tmp_path: Path, lab: Lab) -> None:
    setup(tmp_path, lab)
    out, report = apply(
        tmp_path,
        """\
        - hosts: all
          gather_facts: false
          tasks:
            - name: solaris
              user: {name: mrx-sol, profile: "Primary Administrator"}
              ignore_errors: true
            - name: local umask
              user: {name: mrx-loc, umask: "077", local: true}
              ignore_errors: true
            - name: local
              user: {name: mrx-loc, local: true}
              ignore_errors: true
            - name: local group range
              group: {name: mrx-loc, gid_min: 1000, local: true}
              ignore_errors: true
            - name: non_unique without gid
              group: {name: mrx-loc, non_unique: true}
              ignore_errors: true
        """,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    tasks = tasks_of(report)
    assert all(t["status"] == "failed" for t in tasks.values()), tasks
    assert "'profile' is a Solaris/illumos option" in tasks["solaris"]["msg"]
    assert "'umask' can not be used with 'local'" in tasks["local umask"]["msg"]
    # Debian has no libuser: Ansible's own words
    assert 'Failed to find required executable "luseradd"' in tasks["local"]["msg"]
    assert "'gid_min' can not be used with 'local'" in tasks["local group range"]["msg"]
    assert "missing: gid" in tasks["non_unique without gid"]["msg"]
    assert sh(tmp_path, "getent passwd mrx-sol mrx-loc; getent group mrx-loc; true") == ""


# ------------------------------------------------------------ pure parts (no host needed)


def test_expiry_is_the_day_ansible_compares() -> None:
    # ansible-core's test_expires.yml: 2529881062 is day 29281 (2050-03-03)
    assert expiry(2529881062) == (29281, "2050-03-03")
    assert expiry(0) == (0, "1970-01-01") and expiry(86399.9) == (0, "1970-01-01")
    assert expiry(-1) is None and expiry(-2529881062) is None


def test_plain_text_passwords_are_told_from_hashes_as_ansible_does() -> None:
    assert looks_unhashed("plaintextpassword")
    assert looks_unhashed("$6$salt$" + "x" * 85)  # sha512's hash part is 86 characters
    assert looks_unhashed("$6$rounds=1$salt$" + "+" * 86)  # not crypt's alphabet
    assert not looks_unhashed(HASH)
    assert not looks_unhashed(
        "$y$jCT$ZiF3ZV39/maUl9Lzt2Hk80$Ih6bI4OXU52OnWWqt3T1BAmVn8eH.4qlcP.8/NOjGN5"
    )
    for placeholder in ("!", "*", "*************", ""):
        assert not looks_unhashed(placeholder)


def test_every_script_is_valid_sh_with_awkward_values() -> None:
    awkward = 'it\'s "x"; $(touch /tmp/pwned) `id` \\ ~'
    every: dict[str, Any] = {
        "name": "mrx",
        "uid": 5,
        "non_unique": True,
        "comment": awkward,
        "shell": "~/bin/" + awkward,
        "home": "~mrx/h",
        "skeleton": awkward,
        "umask": "077",
        "expires": 2529881062.5,
        "password": awkward,
        "password_lock": True,
        "password_expire_max": 1,
        "password_expire_min": 0,
        "password_expire_warn": 2,
        "password_expire_account_disable": 3,
        "groups": ["a", awkward],
        "append": True,
        "generate_ssh_key": True,
        "ssh_key_file": awkward,
        "ssh_key_comment": awkward,
        "ssh_key_passphrase": "phrase " + awkward,
        "force": True,
        "seuser": "user_u",
        "uid_min": 1000,
        "uid_max": 2000,
        "hidden": True,
    }
    cases = [every, {**every, "expires": -1, "password_lock": False}, {"name": "mrx"}]
    cases.append({"name": "mrx", "state": "absent", "remove": True, "force": True})
    for check in (False, True):
        ctx = ModuleContext(host_id="h", check=check)
        for args in cases:
            step = UserModule().build(args, ctx)
            assert step is not None
            parsed = subprocess.run(["sh", "-n"], input=step.script, text=True, capture_output=True)
            assert parsed.returncode == 0, parsed.stderr
        step = GroupModule().build({"name": "g", "gid": 7, "non_unique": True}, ctx)
        assert step is not None
        assert subprocess.run(["sh", "-n"], input=step.script, text=True).returncode == 0
    # the passphrase travels on stdin, never in the script text
    step = UserModule().build(every, ModuleContext(host_id="h"))
    assert step.stdin == ("phrase " + awkward + "\n").encode()
    assert "phrase " not in step.script
    # ~ is the host's to expand: never quoted away, never expanded here
    assert path_word("~/x y") == "\"$HOME\"'/x y'" and path_word("/a b") == "'/a b'"
