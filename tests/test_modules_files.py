"""The file modules (copy, template, file, lineinfile, blockinfile, authorized_key) on real hosts.

Each module: the first run changes and the host then holds exactly that content, mode and
owner (read back with a separate command); the second run changes nothing; check mode changes
nothing but reports the change; diff mode shows it; hostile values pass unharmed; and every
task costs exactly one remote command.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from machineroom.connection import Become, CommandResult, Connection, ConnectOptions
from machineroom.connection import open_connection as connect
from machineroom.errors import InputError
from machineroom.executor.step import run_module
from machineroom.inventory.model import Host, Secret
from machineroom.lab import Lab
from machineroom.modules import get_module
from machineroom.modules.base import ModuleContext, Outcome, quote
from machineroom.modules.files_sh import ere, parse_mode

HOSTILE = 'we\'ird "dir" $(touch /tmp/pwned) `id`; rm -rf x & | > <'
HOSTILE_TEXT = "a'b\"c $(touch /tmp/pwned) `id` ; & | \\ \n\ttab\n$HOME ${x:-y} %s\n"


class Session:
    """An open connection to one lab host that counts the remote commands of each task."""

    def __init__(self, conn: Connection, commands: list[CommandResult]) -> None:
        self.conn = conn
        self.commands = commands

    def sh(self, command: str) -> str:
        """Run a helper command (not a task); fails the test unless it exits 0."""
        result = self.conn.run(command)
        assert result.exit_code == 0, result.stderr
        return result.stdout

    def run(
        self,
        module: str,
        args: Mapping[str, Any],
        *,
        check: bool = False,
        diff: bool = False,
        become: Become | None = None,
        files: Mapping[str, bytes] | None = None,
        templates: Mapping[str, str] | None = None,
    ) -> Outcome:
        """Run one task; assert it cost exactly one remote command."""
        found = get_module(module)
        assert found is not None
        ctx = ModuleContext(
            host_id="h",
            check=check,
            diff=diff,
            read_file=lambda src: (files or {})[src],
            render_template=lambda src, **options: (templates or {})[src],
        )
        if become is not None:
            # sudo's once-per-connection probe is connection set-up, not the task's cost
            self.conn.run("true", become=become)
        before = len(self.commands)
        outcome = run_module(found, args, ctx, self.conn, become=become)
        assert len(self.commands) - before == 1, "a task must cost exactly one remote command"
        return outcome

    def stat(self, path: str) -> str:
        """'mode owner group' of a path, by a separate command."""
        return self.sh(f"stat -c '%a %U %G' -- {quote(path)}").strip()

    def read(self, path: str) -> str:
        """The content of a file on the host."""
        return self.sh(f"cat -- {quote(path)}")

    def tempdir(self) -> str:
        """A fresh folder on the host whose name is hostile."""
        path = f"/tmp/mr-{uuid.uuid4().hex[:8]} {HOSTILE}"
        self.sh(f"mkdir -p -- {quote(path)}")
        return path


def _open(lab: Lab, user: str, index: int) -> Iterator[Session]:
    target = lab.hosts[index]
    password = lab.users[user]
    host = Host(
        id=target.name,
        host=target.address,
        port=target.port,
        user=user,
        ssh_key=lab.key if password is None else None,
        password=Secret("plain", password) if password is not None else None,
    )
    commands: list[CommandResult] = []
    options = ConnectOptions(
        known_hosts_files=(lab.known_hosts,),
        on_command=lambda _host, result: commands.append(result),
    )
    conn = connect(host, options)
    try:
        yield Session(conn, commands)
    finally:
        conn.close()


@pytest.fixture
def root(lab: Lab) -> Iterator[Session]:
    """Root on the first lab host."""
    yield from _open(lab, "root", 0)


@pytest.fixture
def deploy(lab: Lab) -> Iterator[Session]:
    """The deploy user (NOPASSWD sudo) on the first lab host."""
    yield from _open(lab, "deploy", 0)


def assert_idempotent(s: Session, module: str, args: Mapping[str, Any], **kw: Any) -> Outcome:
    """Second run: ok, nothing changed, a message saying so."""
    again = s.run(module, args, **kw)
    assert again.status == "ok", again
    return again


def no_pwned(s: Session) -> None:
    """No hostile value ran anything."""
    assert s.sh("ls /tmp/pwned 2>/dev/null || echo none").strip() == "none"


# ---------------------------------------------------------------------------- copy


def test_copy_content_first_second_check_diff(root: Session) -> None:
    d = root.tempdir()
    dest = f"{d}/app $(x).conf"
    args = {"dest": dest, "content": HOSTILE_TEXT, "mode": "0640", "owner": "deploy"}

    checked = root.run("copy", args, check=True, diff=True)
    assert checked.changed and "would create" in checked.msg
    assert "+a'b\"c $(touch /tmp/pwned)" in checked.diff
    assert root.sh(f"ls -A -- {quote(d)}") == ""  # check mode left nothing behind

    first = root.run("copy", args, diff=True)
    assert first.changed, first
    assert root.read(dest) == HOSTILE_TEXT
    assert root.stat(dest) == "640 deploy root"
    assert "+\ttab" in first.diff
    again = assert_idempotent(root, "copy", args)
    assert again.msg == f"{dest} already matches"

    changed = {**args, "content": "new\n", "mode": "0600"}
    would = root.run("copy", changed, check=True, diff=True)
    assert would.changed
    assert "-a'b" in would.diff and "+new" in would.diff
    assert "-mode: 0640" in would.diff and "+mode: 0600" in would.diff
    assert root.read(dest) == HOSTILE_TEXT and root.stat(dest) == "640 deploy root"
    root.run("copy", changed)
    assert root.read(dest) == "new\n" and root.stat(dest) == "600 deploy root"
    # no temp files left behind
    assert root.sh(f"ls -A -- {quote(d)}").splitlines() == ["app $(x).conf"]
    no_pwned(root)


def test_copy_attributes_only_and_modes(root: Session) -> None:
    d = root.tempdir()
    dest = f"{d}/f"
    root.run("copy", {"dest": dest, "content": "x"})
    assert root.stat(dest) == "644 root root"  # the umask's default, as Ansible
    out = root.run("copy", {"dest": dest, "content": "x", "mode": 0o755}, diff=True)
    assert out.changed and "+mode: 0755" in out.diff and "@@ -" not in out.diff.split("(attr")[0]
    assert root.stat(dest) == "755 root root"
    out = root.run("copy", {"dest": dest, "content": "x", "mode": "u-x,g-x"})
    assert out.changed and root.stat(dest) == "645 root root"
    assert_idempotent(root, "copy", {"dest": dest, "content": "x", "mode": "u-x,g-x"})
    # an existing file keeps its mode and owner when none is asked for
    root.sh(f"chown deploy {quote(dest)}")
    root.run("copy", {"dest": dest, "content": "y"})
    assert root.stat(dest) == "645 deploy root" and root.read(dest) == "y"


def test_copy_src_into_directory_backup_force(root: Session) -> None:
    d = root.tempdir()
    files = {"files/app.bin": b"\x00\x01binary\xff"}
    out = root.run("copy", {"src": "files/app.bin", "dest": d}, files=files)
    assert out.changed and out.result["dest"] == f"{d}/app.bin"
    assert root.sh(f"od -An -tx1 -- {quote(d + '/app.bin')}").split() == [
        "00", "01", "62", "69", "6e", "61", "72", "79", "ff"
    ]  # fmt: skip
    assert_idempotent(root, "copy", {"src": "files/app.bin", "dest": d}, files=files)
    # force: false leaves an existing file alone
    kept = root.run("copy", {"dest": f"{d}/app.bin", "content": "other", "force": False})
    assert kept.status == "ok"
    # backup keeps the old content beside the new
    out = root.run("copy", {"dest": f"{d}/app.bin", "content": "v2", "backup": True})
    assert out.result["backup_file"].startswith(f"{d}/app.bin.")
    assert root.sh(f"od -An -c -- {quote(out.result['backup_file'])}").split()[2:4] == ["b", "i"]


def test_copy_validate_runs_before_the_rename(root: Session) -> None:
    d = root.tempdir()
    dest = f"{d}/sudoers"
    good = "root ALL=(ALL) ALL\n"
    ok = root.run("copy", {"dest": dest, "content": good, "validate": "visudo -cf %s"})
    assert ok.changed
    bad = root.run("copy", {"dest": dest, "content": "root ALL=\n", "validate": "visudo -cf %s"})
    assert bad.failed and "validation failed" in bad.msg
    assert root.read(dest) == good
    assert root.sh(f"ls -A -- {quote(d)}").split() == ["sudoers"]
    # the validate command is split into words, never handed to a shell
    odd = root.run(
        "copy", {"dest": dest, "content": "z", "validate": "test -f %s; touch /tmp/pwned"}
    )
    assert odd.failed
    no_pwned(root)


def test_copy_with_become(deploy: Session) -> None:
    dest = f"/etc/mr-{uuid.uuid4().hex[:6]}.conf"
    args = {"dest": dest, "content": "secret=1\n", "mode": "0600"}
    out = deploy.run("copy", args, become=Become())
    assert out.changed
    assert deploy.sh(f"sudo -n stat -c '%a %U' {quote(dest)}").strip() == "600 root"
    assert_idempotent(deploy, "copy", args, become=Become())
    # without become the same task fails cleanly (a normal user cannot write /etc)
    denied = deploy.run("copy", {**args, "content": "x"})
    assert denied.failed


def test_copy_path_with_a_newline(root: Session) -> None:
    d = root.tempdir()
    dest = f"{d}/two\nlines $(id).txt"
    args = {"dest": dest, "content": "x\n", "mode": "0600"}
    assert root.run("copy", args, diff=True).changed
    assert root.read(dest) == "x\n" and root.stat(dest) == "600 root root"
    assert_idempotent(root, "copy", args)
    assert root.run("lineinfile", {"path": dest, "line": "y"}).changed
    assert root.read(dest) == "x\ny\n"
    no_pwned(root)


def test_copy_missing_folder_fails(root: Session) -> None:
    out = root.run("copy", {"dest": "/nonexistent/dir/f", "content": "x"})
    assert out.failed and "does not exist" in out.msg


# ---------------------------------------------------------------------------- template


def test_template(root: Session) -> None:
    d = root.tempdir()
    dest = f"{d}/app.ini"
    rendered = {"app.ini.j2": "name=web1\nport=8080\n" + HOSTILE_TEXT}
    args = {"src": "app.ini.j2", "dest": dest, "mode": "0644"}
    assert root.run("template", args, templates=rendered, check=True).changed
    assert root.sh(f"test -e {quote(dest)} || echo absent").strip() == "absent"
    assert root.run("template", args, templates=rendered).changed
    assert root.read(dest) == rendered["app.ini.j2"]
    assert_idempotent(root, "template", args, templates=rendered)
    diff = root.run("template", args, templates={"app.ini.j2": "name=web2\n"}, diff=True)
    assert "-name=web1" in diff.diff and "+name=web2" in diff.diff


# ---------------------------------------------------------------------------- file


def test_file_directory(root: Session) -> None:
    d = root.tempdir()
    path = f"{d}/a b/c;d/e"
    args = {"path": path, "state": "directory", "mode": "0750", "owner": "deploy"}
    would = root.run("file", args, check=True, diff=True)
    assert would.changed and "+state: directory" in would.diff
    assert root.sh(f"ls -A -- {quote(d)}") == ""
    assert root.run("file", args).changed
    for p in (f"{d}/a b", f"{d}/a b/c;d", path):  # created parents get the attributes too
        assert root.stat(p) == "750 deploy root"
    assert_idempotent(root, "file", args)
    out = root.run("file", {**args, "mode": "g+w"}, diff=True)
    assert out.changed and "+mode: 0770" in out.diff and root.stat(path) == "770 deploy root"


def test_file_recurse(root: Session) -> None:
    d = root.tempdir()
    root.sh(f"mkdir -p {quote(d + '/t/u')} && touch {quote(d + '/t/u/f')}")
    args = {"path": f"{d}/t", "state": "directory", "recurse": True, "owner": "deploy"}
    assert root.run("file", args, check=True).changed
    assert root.stat(f"{d}/t/u/f").split()[1] == "root"
    assert root.run("file", args).changed
    assert root.stat(f"{d}/t/u/f").split()[1] == "deploy"
    assert_idempotent(root, "file", args)
    modes = {**args, "mode": "0700"}
    assert root.run("file", modes).changed
    assert root.stat(f"{d}/t/u/f") == "700 deploy root"
    assert_idempotent(root, "file", modes)


def test_file_link_hard_absent_touch(root: Session) -> None:
    d = root.tempdir()
    target = f"{d}/target $(x)"
    root.sh(f"echo hi > {quote(target)}")
    link = f"{d}/link"
    args = {"path": link, "state": "link", "src": target}
    assert root.run("file", args, check=True).changed
    assert root.sh(f"test -L {quote(link)} || echo none").strip() == "none"
    assert root.run("file", args).changed
    assert root.sh(f"readlink -- {quote(link)}") == target + "\n"
    assert_idempotent(root, "file", args)
    # repointing a link needs no force; replacing a file does
    other = {"path": link, "state": "link", "src": "relative-missing", "force": True}
    assert root.run("file", other).changed
    assert root.sh(f"readlink -- {quote(link)}") == "relative-missing\n"
    plain = f"{d}/plain"
    root.sh(f"echo x > {quote(plain)}")
    refused = root.run("file", {"path": plain, "state": "link", "src": target})
    assert refused.failed and "force" in refused.msg

    hard = f"{d}/hard"
    hargs = {"path": hard, "state": "hard", "src": target}
    assert root.run("file", hargs).changed
    assert (
        root.sh(f"stat -c %i -- {quote(hard)} {quote(target)}").split()[0]
        == root.sh(f"stat -c %i -- {quote(target)}").strip()
    )
    assert_idempotent(root, "file", hargs)

    touched = f"{d}/new;file"
    tout = root.run("file", {"path": touched, "state": "touch", "mode": "0600"})
    assert tout.changed and root.stat(touched) == "600 root root"

    absent = {"path": f"{d}/link", "state": "absent"}
    assert root.run("file", absent, check=True, diff=True).changed
    assert root.run("file", absent).changed
    assert root.sh(f"test -L {quote(link)} || echo gone").strip() == "gone"
    assert_idempotent(root, "file", absent)
    missing = root.run("file", {"path": f"{d}/nope", "mode": "0600"})
    assert missing.failed and "does not exist" in missing.msg
    no_pwned(root)


# ---------------------------------------------------------------------------- lineinfile

SSHD = "Port 22\n#PermitRootLogin yes\nPasswordAuthentication yes\nUsePAM yes\n"


def put(s: Session, path: str, text: str) -> None:
    """Write a file on the host through stdin."""
    result = s.conn.run(f"cat > {quote(path)}", stdin=text.encode())
    assert result.exit_code == 0, result.stderr


def test_lineinfile_regexp_replace(root: Session) -> None:
    d = root.tempdir()
    path = f"{d}/sshd_config"
    put(root, path, SSHD)
    args = {"path": path, "regexp": r"^#?PermitRootLogin\s", "line": "PermitRootLogin no"}
    would = root.run("lineinfile", args, check=True, diff=True)
    assert would.changed
    assert "-#PermitRootLogin yes" in would.diff and "+PermitRootLogin no" in would.diff
    assert root.read(path) == SSHD
    assert root.run("lineinfile", args).changed
    assert root.read(path) == SSHD.replace("#PermitRootLogin yes", "PermitRootLogin no")
    assert_idempotent(root, "lineinfile", args)


def test_lineinfile_insert_positions_and_absent(root: Session) -> None:
    d = root.tempdir()
    path = f"{d}/f"
    put(root, path, SSHD)
    after = {"path": path, "line": "X11Forwarding no", "insertafter": r"^Port \d+"}
    assert root.run("lineinfile", after).changed
    assert root.read(path).splitlines()[1] == "X11Forwarding no"
    assert_idempotent(root, "lineinfile", after)
    bof = {"path": path, "line": "# managed", "insertbefore": "BOF"}
    root.run("lineinfile", bof)
    assert root.read(path).startswith("# managed\n")
    assert_idempotent(root, "lineinfile", bof)
    eof = {"path": path, "line": HOSTILE_TEXT.splitlines()[0]}
    assert root.run("lineinfile", eof).changed
    assert root.read(path).endswith(HOSTILE_TEXT.splitlines()[0] + "\n")
    assert_idempotent(root, "lineinfile", eof)
    gone = {"path": path, "regexp": r"^(UsePAM|Password)", "state": "absent"}
    assert root.run("lineinfile", gone).changed
    text = root.read(path)
    assert "UsePAM" not in text and "PasswordAuthentication" not in text
    assert_idempotent(root, "lineinfile", gone)


def test_lineinfile_backrefs_create_noeol(root: Session) -> None:
    d = root.tempdir()
    path = f"{d}/env"
    put(root, path, "A=1\nJAVA_OPTS=-Xmx512m -Dx=1")  # no final newline
    args = {
        "path": path,
        "regexp": r"^JAVA_OPTS=-Xmx\d+m (.*)$",
        "line": r"JAVA_OPTS=-Xmx2g \1",
        "backrefs": True,
    }
    assert root.run("lineinfile", args).changed
    assert root.read(path) == "A=1\nJAVA_OPTS=-Xmx2g -Dx=1\n"
    assert_idempotent(root, "lineinfile", args)
    # backrefs and no match: nothing happens
    none = {**args, "regexp": "^NOPE=(.*)$"}
    assert_idempotent(root, "lineinfile", none)
    # a line added to a file without a final newline starts on its own line
    put(root, path, "A=1")
    root.run("lineinfile", {"path": path, "line": "B=2"})
    assert root.read(path) == "A=1\nB=2\n"
    new = f"{d}/sub dir/new.conf"
    cargs = {"path": new, "line": "k=v", "create": True, "mode": "0600", "owner": "deploy"}
    missing = root.run("lineinfile", {"path": new, "line": "k=v"})
    assert missing.failed and "does not exist" in missing.msg
    assert root.run("lineinfile", cargs).changed
    assert root.read(new) == "k=v\n" and root.stat(new) == "600 deploy root"
    assert_idempotent(root, "lineinfile", cargs)


def test_lineinfile_with_become(deploy: Session) -> None:
    path = f"/etc/mr-{uuid.uuid4().hex[:6]}"
    args = {"path": path, "line": "a=b", "create": True}
    assert deploy.run("lineinfile", args, become=Become()).changed
    assert deploy.sh(f"sudo -n stat -c '%a %U' {quote(path)}").strip() == "644 root"
    assert_idempotent(deploy, "lineinfile", args, become=Become())


# ---------------------------------------------------------------------------- blockinfile


def test_blockinfile(root: Session) -> None:
    d = root.tempdir()
    path = f"{d}/hosts"
    put(root, path, "127.0.0.1 localhost\n::1 localhost\n")
    block = "10.0.0.1 web1\n10.0.0.2 db1 # $(touch /tmp/pwned) 'q'\n"
    args = {"path": path, "block": block, "insertafter": r"^127\."}
    would = root.run("blockinfile", args, check=True, diff=True)
    assert would.changed and "+10.0.0.1 web1" in would.diff
    assert root.read(path) == "127.0.0.1 localhost\n::1 localhost\n"
    assert root.run("blockinfile", args).changed
    assert root.read(path) == (
        "127.0.0.1 localhost\n# BEGIN ANSIBLE MANAGED BLOCK\n"
        + block
        + "# END ANSIBLE MANAGED BLOCK\n::1 localhost\n"
    )
    assert_idempotent(root, "blockinfile", args)
    # a changed block is replaced where it stands, whatever insertafter says
    updated = {"path": path, "block": "10.0.0.9 web9", "insertbefore": "BOF"}
    assert root.run("blockinfile", updated).changed
    assert root.read(path).splitlines()[1:4] == [
        "# BEGIN ANSIBLE MANAGED BLOCK",
        "10.0.0.9 web9",
        "# END ANSIBLE MANAGED BLOCK",
    ]
    assert_idempotent(root, "blockinfile", updated)
    custom = {
        "path": path,
        "block": "x",
        "marker": "// {mark} app",
        "marker_begin": "start",
        "marker_end": "stop",
    }
    root.run("blockinfile", custom)
    assert root.read(path).endswith("// start app\nx\n// stop app\n")
    assert_idempotent(root, "blockinfile", custom)
    removed = {"path": path, "state": "absent"}
    assert root.run("blockinfile", removed).changed
    assert root.read(path) == "127.0.0.1 localhost\n::1 localhost\n// start app\nx\n// stop app\n"
    assert_idempotent(root, "blockinfile", removed)
    new = {"path": f"{d}/new", "block": "b", "create": True, "mode": "0640"}
    assert root.run("blockinfile", new).changed
    assert root.stat(f"{d}/new") == "640 root root"
    no_pwned(root)


# ---------------------------------------------------------------------------- authorized_key


def new_key(tmp: Path, name: str) -> tuple[str, Path]:
    """(public key line, private key file) of a fresh ed25519 key."""
    private = Ed25519PrivateKey.generate()
    path = tmp / name
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return public.decode() + f" {name}@test", path


def login(lab: Lab, user: str, key: Path, command: str) -> str:
    """Log in with `key` (verifying the host key) and run `command`; its stdout."""
    client = paramiko.SSHClient()
    client.load_host_keys(lab.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    target = lab.hosts[0]
    client.connect(
        target.address,
        port=target.port,
        username=user,
        pkey=paramiko.Ed25519Key.from_private_key_file(str(key)),
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    try:
        _, stdout, _ = client.exec_command(command, timeout=10)
        return stdout.read().decode()
    finally:
        client.close()


def test_authorized_key_restricted_key(root: Session, lab: Lab, tmp_path: Path) -> None:
    user = "ops"
    public, private = new_key(tmp_path, "collector")
    options = 'command="echo forced",no-pty,no-port-forwarding,no-agent-forwarding'
    args = {"user": user, "key": public, "key_options": options}
    would = root.run("authorized_key", args, check=True, diff=True)
    assert would.changed and f"+{options} {public}" in would.diff
    assert root.run("authorized_key", args).changed
    home = root.sh("getent passwd ops | cut -d: -f6").strip()
    assert root.sh(f"stat -c '%a %U' {home}/.ssh {home}/.ssh/authorized_keys").split() == [
        "700", "ops", "600", "ops"
    ]  # fmt: skip
    assert f"{options} {public}\n" in root.read(f"{home}/.ssh/authorized_keys")
    assert_idempotent(root, "authorized_key", args)
    # the key can run nothing but its forced command
    assert login(lab, user, private, "id") == "forced\n"


def test_authorized_key_options_change_in_place(root: Session, tmp_path: Path) -> None:
    user = "deploy"
    home = root.sh("getent passwd deploy | cut -d: -f6").strip()
    path = f"{home}/.ssh/authorized_keys"
    first, _ = new_key(tmp_path, "one")
    second, _ = new_key(tmp_path, "two")
    root.run("authorized_key", {"user": user, "key": first + "\n" + second})
    before = root.read(path)
    assert before.count(first) == 1 and before.count(second) == 1
    # options added to the first key: its line changes where it stands, nothing else moves
    opts = {"user": user, "key": first, "key_options": 'no-pty,from="127.0.0.0/8"'}
    out = root.run("authorized_key", opts, diff=True)
    assert out.changed and f"-{first}" in out.diff
    after = root.read(path)
    lines = after.splitlines()
    assert after.count(first.split()[1]) == 1
    assert lines.index(f'no-pty,from="127.0.0.0/8" {first}') < lines.index(second)
    assert_idempotent(root, "authorized_key", opts)
    # absent removes only that key
    gone = {"user": user, "key": first, "state": "absent"}
    assert root.run("authorized_key", gone).changed
    assert first.split()[1] not in root.read(path) and second in root.read(path)
    assert_idempotent(root, "authorized_key", gone)
    # exclusive keeps only the given keys
    third, _ = new_key(tmp_path, "three")
    excl = {"user": user, "key": third, "exclusive": True, "path": path}
    assert root.run("authorized_key", excl).changed
    assert [line for line in root.read(path).splitlines() if line] == [third]
    assert_idempotent(root, "authorized_key", excl)


def test_authorized_key_rejects_junk(root: Session) -> None:
    with pytest.raises(InputError):
        root.run("authorized_key", {"user": "deploy", "key": "not a key $(id)"})


# ---------------------------------------------------------------------------- pure helpers


def test_parse_mode_and_ere() -> None:
    assert parse_mode("0644") == ("644", False)
    assert parse_mode(0o755) == ("755", False)
    assert parse_mode("u+x,g-w") == ("u+x,g-w", True)
    with pytest.raises(InputError):
        parse_mode("rwx; rm")
    assert ere(r"^\s*Port\s+\d{2,3}$", "r") == "^[[:space:]]*Port[[:space:]]+[0-9][0-9][0-9]?$"
    with pytest.raises(InputError):
        ere(r"(?<=x)y", "r")


def test_schemas_catch_typos() -> None:
    import jsonschema

    for name in ("copy", "template", "file", "lineinfile", "blockinfile", "authorized_key"):
        module = get_module(name)
        assert module is not None
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"path": "/x", "dest": "/x", "typo_arg": 1}, module.schema)
