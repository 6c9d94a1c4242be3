"""An Ansible user's configuration and command-line habits, end to end on lab host h26.

Real `machineroom` subprocesses in a project folder of their own: `ansible.cfg` supplying the
inventory, login user, key and vault password (no flags needed), precedence flag > env > cfg,
warnings naming file:line for ignored settings, `host_key_checking = False` recording keys on
first use; `machineroom.yml` validated with file:line; ansible-playbook's flags (`--list-*`
and `--syntax-check` compared with ansible-playbook's own output, `--start-at-task`,
`--force-handlers`, `-b`); ad-hoc `run -m`; `inventory --list/--graph/--host` compared with
ansible-inventory's output for an INI and a YAML inventory. Files on h26 live in /tmp/mr-cli.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from machineroom.lab import Lab
from machineroom.vault import encrypt_text
from tests import test_ansible_parity
from tests.test_ansible_parity import Ansible

HOST = "h26"
# ansible-playbook and ansible-inventory, from the parity test's session fixture
ansible_session = test_ansible_parity.ansible


@pytest.fixture
def ansible_fixture(ansible_session: Ansible) -> Ansible:
    """ansible-core's tools (built once per session by the parity test's fixture)."""
    return ansible_session


VAULT_PASSWORD = "cli-vault-pass"


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any ANSIBLE_* or MACHINEROOM_* of the machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MACHINEROOM_"))}
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def mr(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`machineroom ARGS` in `root` with only the given ANSIBLE_*/MACHINEROOM_* variables."""
    return subprocess.run(
        [sys.executable, "-m", "machineroom", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(**env),
    )


def lab_address(lab: Lab) -> str:
    return next(h.address for h in lab.hosts if h.name == HOST)


def project(root: Path, lab: Lab, cfg: str, *, trust: bool = True) -> Path:
    """A folder as an Ansible user keeps it: hosts.ini without user or key, ansible.cfg."""
    write(root, "hosts.ini", f"[web]\n{HOST} ansible_host={lab_address(lab)}\n")
    write(root, "ansible.cfg", cfg)
    if trust:
        (root / ".machineroom").mkdir(mode=0o700, exist_ok=True)
        (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    return root


def cfg_text(lab: Lab, extra: str = "", user: str = "root") -> str:
    return (
        "[defaults]\n"
        "inventory = hosts.ini\n"
        f"remote_user = {user}\n"
        f"private_key_file = {lab.key}\n"
        "vault_password_file = vault.pass\n" + extra
    )


def who(root: Path, *args: str, **env: str) -> str:
    out = mr(root, "run", HOST, *args, "--json", "--", "id -un", **env)
    assert out.returncode == 0, out.stdout + out.stderr
    return str(json.loads(out.stdout)["hosts"][HOST]["stdout"]).strip()


# --- ansible.cfg, environment, flags ---------------------------------------------------------


def test_ansible_cfg_alone_runs_a_playbook_with_a_vaulted_variable(
    tmp_path: Path, lab: Lab
) -> None:
    root = project(tmp_path, lab, cfg_text(lab, "vault_identity_list = other@other.pass\n"))
    for name, password in (("vault.pass", VAULT_PASSWORD), ("other.pass", "other-pass")):
        write(root, name, password + "\n").chmod(0o600)
    secret = encrypt_text("from-the-vault", VAULT_PASSWORD)
    other = encrypt_text("other-id", "other-pass")  # opened by vault_identity_list's id
    write(
        root,
        "group_vars/web.yml",
        "token: !vault |\n"
        + textwrap.indent(secret, "  ")
        + "second: !vault |\n"
        + textwrap.indent(other, "  "),
    )
    write(
        root,
        "site.yml",
        """\
        - hosts: web
          gather_facts: false
          tasks:
            - name: folder
              file: {path: /tmp/mr-cli, state: directory}
            - name: token file
              copy: {dest: /tmp/mr-cli/token, content: "{{ token }} {{ second }}\\n"}
        """,
    )
    out = mr(root, "apply", "site.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "warning" not in out.stderr
    content = mr(root, "run", HOST, "--json", "--", "cat /tmp/mr-cli/token")
    assert json.loads(content.stdout)["hosts"][HOST]["stdout"] == "from-the-vault other-id\n"
    assert "from-the-vault" not in content.stderr


def test_env_beats_ansible_cfg_and_a_flag_beats_both(tmp_path: Path, lab: Lab) -> None:
    root = project(tmp_path, lab, cfg_text(lab, user="deploy"))
    assert who(root) == "deploy"
    assert who(root, ANSIBLE_REMOTE_USER="ops") == "ops"
    assert who(root, "-u", "root", ANSIBLE_REMOTE_USER="ops") == "root"
    # the inventory's own user wins over all three, as in Ansible
    write(root, "hosts.ini", f"[web]\n{HOST} ansible_host={lab_address(lab)} ansible_user=ops\n")
    assert who(root, "-u", "root") == "ops"
    # ops' sudo asks for a password: ansible.cfg's become_password_file gives it
    write(root, "ops.pass", lab.users["ops"] + "\n").chmod(0o600)
    write(root, "ansible.cfg", cfg_text(lab, "become_password_file = ops.pass\n"))
    assert who(root, "-b") == "root"


def test_ignored_settings_warn_with_file_and_line(tmp_path: Path, lab: Lab) -> None:
    extra = (
        "stdout_callback = yaml\n"
        "retry_files_enabled = False\n"
        "\n[ssh_connection]\n"
        "pipelining = True\n"
        "ssh_args = -o ControlMaster=auto\n"
    )
    root = project(tmp_path, lab, cfg_text(lab, extra))
    out = mr(root, "ls", ANSIBLE_NOCOLOR="1")
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: ansible.cfg:6: [defaults] stdout_callback is ignored by machineroom "
        "(machineroom prints its own report (--json for machines))",
        "warning: ansible.cfg:11: [ssh_connection] ssh_args is ignored by machineroom "
        "(machineroom speaks SSH itself; put options in ~/.ssh/config)",
        "warning: $ANSIBLE_NOCOLOR is ignored by machineroom (no equivalent)",
    ]


def test_a_bad_value_names_its_line_and_env_names_its_variable(tmp_path: Path, lab: Lab) -> None:
    root = project(tmp_path, lab, cfg_text(lab, "forks = many\n"))
    out = mr(root, "ls")
    assert out.returncode == 4
    assert "ansible.cfg:6: 'many' is not an integer" in out.stderr
    root2 = project(tmp_path / "two", lab, cfg_text(lab))
    out = mr(root2, "ls", ANSIBLE_BECOME="perhaps")
    assert out.returncode == 4
    assert "$ANSIBLE_BECOME: 'perhaps' is not true or false" in out.stderr


def test_host_key_checking_false_records_new_keys_and_says_so(tmp_path: Path, lab: Lab) -> None:
    root = project(tmp_path, lab, cfg_text(lab), trust=False)
    refused = mr(root, "run", HOST, "--", "true")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    write(root, "ansible.cfg", cfg_text(lab, "host_key_checking = False\n"))
    out = mr(root, "run", HOST, "--", "true")
    assert out.returncode == 0, out.stdout + out.stderr
    assert (
        "warning: ansible.cfg:6: host_key_checking = False: machineroom records unknown host "
        "keys on first use (as --accept-new-host-keys) and still refuses a changed key"
    ) in out.stderr
    recorded = (root / ".machineroom" / "known_hosts").read_text()
    assert lab_address(lab) in recorded
    # a changed key is still refused: the recorded one is replaced by another host's key
    other = next(h for h in lab.hosts if h.name == "h25")
    lines = [ln for ln in Path(lab.known_hosts).read_text().splitlines() if other.address in ln]
    fake = lines[0].replace(other.address, lab_address(lab), 1)
    (root / ".machineroom" / "known_hosts").write_text(fake + "\n")
    changed = mr(root, "run", HOST, "--", "true", ANSIBLE_HOST_KEY_CHECKING="False")
    assert changed.returncode == 3, changed.stdout + changed.stderr


def test_ansible_cfg_lookup_order_and_reading_in_process(tmp_path: Path) -> None:
    from machineroom.runs.ansible_cfg import find_ansible_cfg, read_ansible_settings

    home, cwd, named = tmp_path / "home", tmp_path / "work", tmp_path / "named"
    for folder in (home, cwd, named):
        folder.mkdir()
    write(home, ".ansible.cfg", "[defaults]\nforks = 3\n")
    assert find_ansible_cfg({}, cwd, home) == home / ".ansible.cfg"
    write(cwd, "ansible.cfg", "[defaults]\nforks = 4\nroles_path = r1:/abs/r2\n")
    assert find_ansible_cfg({}, cwd, home) == cwd / "ansible.cfg"
    write(named, "ansible.cfg", "[defaults]\nforks = 5\n")
    assert find_ansible_cfg({"ANSIBLE_CONFIG": str(named)}, cwd, home) == named / "ansible.cfg"
    cwd.chmod(0o777)  # a world-writable folder's ansible.cfg is skipped, as ansible-core does
    try:
        assert find_ansible_cfg({}, cwd, home) == home / ".ansible.cfg"
    finally:
        cwd.chmod(0o755)
    settings, warnings, _ = read_ansible_settings({}, cwd, home)
    assert (settings["forks"].value, settings["forks"].source) == (4, "ansible.cfg:2")
    assert settings["roles_path"].value == [str(cwd / "r1"), "/abs/r2"]  # beside the file
    assert warnings == []
    settings, _, _ = read_ansible_settings({"ANSIBLE_FORKS": "9"}, cwd, home)
    assert (settings["forks"].value, settings["forks"].source) == (9, "$ANSIBLE_FORKS")


# --- machineroom.yml -------------------------------------------------------------------------


def test_project_file_settings_beat_ansible_cfg_and_lose_to_env(tmp_path: Path, lab: Lab) -> None:
    root = project(tmp_path, lab, cfg_text(lab, user="deploy"))
    write(
        root,
        "machineroom.yml",
        "remote_user: ops\nstate: db/state.db\nknown_hosts: .machineroom/known_hosts\n",
    )
    assert who(root) == "ops"
    assert (root / "db" / "state.db").is_file()
    assert who(root, ANSIBLE_REMOTE_USER="root") == "root"


def test_project_file_errors_name_file_and_line(tmp_path: Path, lab: Lab) -> None:
    root = project(tmp_path, lab, cfg_text(lab))
    write(root, "machineroom.yml", "inventory: hosts.ini\nforks: many\nstatedb: x\n")
    out = mr(root, "ls")
    assert out.returncode == 4
    assert re.search(r"machineroom\.yml:2:\d+: forks: 'many' is not an integer", out.stderr)
    assert re.search(r"machineroom\.yml:3:\d+: unknown key 'statedb'", out.stderr)


# --- ansible-playbook's flags ----------------------------------------------------------------

LISTED = """\
- name: First play
  hosts: web
  tags: [p1, p2]
  pre_tasks:
    - name: pre
      debug: msg=pre
  roles:
    - r1
  tasks:
    - name: Install
      debug: msg=x
      tags: [pkg, a]
    - block:
        - name: inner
          debug: msg=y
          tags: inner
      tags: [blk]
    - meta: flush_handlers
    - name: untagged
      command: "true"
  handlers:
    - name: h
      debug: msg=h
- hosts: all
  gather_facts: false
  tasks:
    - name: second play task
      debug: msg=d
      tags: [never, two]
"""
ROLE = """\
- name: role task
  debug: msg=r
  tags: [rt]
- command: echo hi
"""


def _normalised(text: str) -> str:
    """Play tags sorted (Ansible prints a set) and each play's hosts sorted (a set too)."""
    lines = text.split("\n")
    result: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("  play #"):
            head, _, tags = line.partition("\tTAGS: [")
            line = f"{head}\tTAGS: [{','.join(sorted(filter(None, tags[:-1].split(','))))}]"
        result.append(line)
        index += 1
        hosts = re.fullmatch(r"    hosts \((\d+)\):", line)
        if hosts:
            count = int(hosts.group(1))
            result += sorted(lines[index : index + count])
            index += count
    return "\n".join(result)


def _ansible_playbook(ansible: Ansible, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (root / "empty-ansible.cfg").write_text("[defaults]\n")
    env = clean_env(ANSIBLE_CONFIG=str(root / "empty-ansible.cfg"))
    return subprocess.run(
        [str(ansible.playbook), *args], cwd=root, capture_output=True, text=True, env=env
    )


@pytest.mark.parametrize(
    "flags",
    [
        ["--list-hosts", "--list-tasks", "--list-tags"],
        ["--list-tags"],
        ["--list-tasks", "--tags", "pkg,inner,two", "--skip-tags", "blk"],
    ],
)
def test_listings_match_ansible_playbook(
    tmp_path: Path, ansible_fixture: Ansible, flags: list[str]
) -> None:
    write(tmp_path, "hosts.ini", "[web]\nw1\nw2\n[db]\nd1\n")
    write(tmp_path, "site.yml", LISTED)
    write(tmp_path, "roles/r1/tasks/main.yml", ROLE)
    theirs = _ansible_playbook(ansible_fixture, tmp_path, "-i", "hosts.ini", "site.yml", *flags)
    assert theirs.returncode == 0, theirs.stderr
    ours = mr(tmp_path, "apply", "-i", "hosts.ini", "site.yml", *flags)
    assert ours.returncode == 0, ours.stderr
    assert _normalised(ours.stdout) == _normalised(theirs.stdout)
    assert not (tmp_path / ".machineroom").exists()  # nothing opened, nothing contacted


def test_syntax_check(tmp_path: Path, ansible_fixture: Ansible) -> None:
    write(tmp_path, "hosts.ini", "[web]\nw1\n")
    write(tmp_path, "site.yml", LISTED)
    write(tmp_path, "roles/r1/tasks/main.yml", ROLE)
    theirs = _ansible_playbook(
        ansible_fixture, tmp_path, "-i", "hosts.ini", "site.yml", "--syntax-check"
    )
    ours = mr(tmp_path, "apply", "-i", "hosts.ini", "site.yml", "--syntax-check")
    assert (ours.returncode, ours.stdout) == (0, theirs.stdout) == (0, "\nplaybook: site.yml\n")
    write(
        tmp_path,
        "bad.yml",
        "- hosts: web\n  tasks:\n    - name: x\n      copy: {dest: /x, nonsense: 1}\n",
    )
    bad = mr(tmp_path, "apply", "-i", "hosts.ini", "bad.yml", "--syntax-check")
    assert bad.returncode == 4
    assert "bad.yml:4:" in bad.stderr and "nonsense" in bad.stderr


def test_start_at_task_force_handlers_and_become(tmp_path: Path, lab: Lab) -> None:
    root = project(tmp_path, lab, cfg_text(lab, user="deploy"))
    write(
        root,
        "site.yml",
        """\
        - hosts: web
          gather_facts: false
          tasks:
            - name: first file
              copy: {dest: /tmp/mr-cli/start/first, content: "1\\n"}
            - name: second file
              copy: {dest: /tmp/mr-cli/start/second, content: "2\\n"}
              notify: mark
            - name: who am i
              command: id -un
              register: me
            - name: record who
              copy: {dest: "/tmp/mr-cli/start/who", content: "{{ me.stdout }}\\n"}
            - name: fail here
              fail: {msg: stop}
              when: boom | default(false) | bool
          handlers:
            - name: mark
              copy: {dest: /tmp/mr-cli/start/handler, content: "ran\\n"}
        """,
    )

    def files_then_reset() -> list[str]:
        out = mr(
            root,
            "run",
            HOST,
            "-b",
            "--json",
            "--",
            "cd /tmp/mr-cli/start && ls && cat who; cd /; rm -rf /tmp/mr-cli/start; "
            "mkdir -p /tmp/mr-cli/start",
        )
        return str(json.loads(out.stdout)["hosts"][HOST]["stdout"]).split()

    files_then_reset()
    out = mr(root, "apply", "site.yml", "-b", "--start-at-task", "second*")
    assert out.returncode == 0, out.stdout + out.stderr
    assert files_then_reset() == ["handler", "second", "who", "root"]  # no `first`; -b: root
    start = ["apply", "site.yml", "-b", "--start-at-task", "second file", "-e", "boom=1"]
    failed = mr(root, *start)
    assert failed.returncode == 2
    assert files_then_reset() == ["second", "who", "root"]  # failed: no handler
    forced = mr(root, *start, "--force-handlers")
    assert forced.returncode == 2
    assert files_then_reset() == ["handler", "second", "who", "root"]
    nothing = mr(root, "apply", "site.yml", "--start-at-task", "no such task")
    assert nothing.returncode == 5
    assert 'no task matches "no such task"' in nothing.stderr


def _exists(root: Path, path: str) -> bool:
    out = mr(root, "run", HOST, "--json", "--", f"test -e {path} && echo yes || echo no")
    return str(json.loads(out.stdout)["hosts"][HOST]["stdout"]).strip() == "yes"


def test_flush_cache_is_a_noted_no_op(tmp_path: Path, lab: Lab) -> None:
    root = project(tmp_path, lab, cfg_text(lab))
    write(root, "site.yml", "- hosts: web\n  gather_facts: false\n  tasks:\n    - ping:\n")
    out = mr(root, "apply", "site.yml", "--flush-cache")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "--flush-cache: nothing to flush" in out.stderr


# --- ad-hoc modules --------------------------------------------------------------------------


def test_run_modules_as_ansible_does(tmp_path: Path, lab: Lab) -> None:
    root = project(tmp_path, lab, cfg_text(lab, user="deploy"))
    ping = mr(root, "run", "web", "-m", "ping")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert ping.stdout.startswith(f"{HOST} | SUCCESS => {{\n")
    result = json.loads(ping.stdout.split("=> ", 1)[1])
    assert (result["changed"], result["ping"]) == (False, "pong")
    assert not {"module", "attempts", "failed"} & set(result)

    write(root, "files/motd", "hello from cli\n")
    dest = "/tmp/mr-cli-adhoc-motd"
    copy = ["run", "web", "-m", "copy", "-a", f"src=files/motd dest={dest} mode=0640"]
    checked = mr(root, *copy, "--check")
    assert checked.stdout.startswith(f"{HOST} | CHANGED => {{"), checked.stdout + checked.stderr
    # the plain command form keeps working; check mode left nothing behind
    plain = mr(root, "run", "web", "--json", "--", f"test -e {dest} && echo yes || echo no")
    assert json.loads(plain.stdout)["hosts"][HOST]["stdout"] == "no\n"
    first = mr(root, *copy)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.startswith(f"{HOST} | CHANGED => {{")
    assert json.loads(first.stdout.split("=> ", 1)[1])["dest"] == dest
    again = mr(root, *copy)
    assert again.stdout.startswith(f"{HOST} | SUCCESS => {{"), again.stdout

    shell = mr(root, "run", "web", "-m", "shell", "-a", f"cat {dest}; id -un; rm {dest}")
    assert shell.returncode == 0
    assert shell.stdout == f"{HOST} | CHANGED | rc=0 >>\nhello from cli\ndeploy\n"
    failing = mr(root, "run", "web", "-a", "ls /no/such/dir")
    assert failing.returncode == 2
    assert failing.stdout.startswith(f"{HOST} | FAILED | rc=2 >>\nls: cannot access")
    wrong = mr(root, "run", "web", "-m", "copy", "-a", "dest=/tmp/x nonsense=1")
    assert wrong.returncode == 4 and "nonsense" in wrong.stderr
    assert "adhoc.yml" not in wrong.stderr


# --- machineroom inventory -------------------------------------------------------------------

INI = """\
[web]
w1 ansible_host=10.0.0.1 ansible_user=deploy http_port=80
w2 ansible_host=10.0.0.2 ansible_port=2222
lone_ini

[db]
d1 ansible_port=2222

[web:vars]
ansible_user=grp
proxy=yes

[prod:children]
web
db

[all:vars]
ntp=pool
"""
YAML = """\
all:
  vars:
    ntp: pool.example
  hosts:
    lone:
      ansible_host: 10.1.1.1
  children:
    web:
      hosts:
        w1:
          ansible_host: 10.0.0.1
          ansible_port: 2222
          http_port: 8080
        w2:
      vars:
        proxy: true
        list_var: [1, 2]
    prod:
      children:
        web:
        db:
          hosts:
            d1:
              ansible_user: admin
"""


@pytest.mark.parametrize("name, text", [("hosts.ini", INI), ("inventory.yml", YAML)])
def test_inventory_matches_ansible_inventory(
    tmp_path: Path, ansible_fixture: Ansible, name: str, text: str
) -> None:
    write(tmp_path, name, text)
    (tmp_path / "empty.cfg").write_text("[defaults]\n")
    tool = ansible_fixture.playbook.parent / "ansible-inventory"
    env = clean_env(ANSIBLE_CONFIG=str(tmp_path / "empty.cfg"))
    listed = ""
    for args in (["--list"], ["--graph", "--vars"], ["--graph", "web"]):
        theirs = subprocess.run(
            [str(tool), "-i", name, *args], cwd=tmp_path, capture_output=True, text=True, env=env
        )
        assert theirs.returncode == 0, theirs.stderr
        ours = mr(tmp_path, "inventory", "-i", name, *args)
        assert ours.returncode == 0, ours.stderr
        assert ours.stdout == theirs.stdout, args
        listed = listed or theirs.stdout
    # ansible-inventory --host prints the host's entry of --list's hostvars, in its layout
    host = mr(tmp_path, "inventory", "-i", name, "--host", "w1")
    expected = json.loads(listed)["_meta"]["hostvars"]["w1"]
    assert host.stdout == json.dumps(expected, indent=4, sort_keys=True) + "\n"
