"""The files a lab host starts from: users, keys, sshd and PAM config, /dev and /run.

build_seed writes the upper overlay layer every host of a lab shares (LAB_DIR/layer) and the
/dev and /run templates (LAB_DIR/runtime); build_host_layer writes one host's own files.
host_init.sh copies both into the host's tmpfs. In an overlay, an upper directory's mode and
owner win over the real one's, so every directory here copies the real directory's.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# user -> password; root logs in by key only. deploy: NOPASSWD sudo; ops: sudo asks.
USERS: dict[str, str | None] = {"root": None, "deploy": "deploy-pass", "ops": "ops-pass"}
SUDOERS = "deploy ALL=(ALL:ALL) NOPASSWD: ALL\nops ALL=(ALL:ALL) ALL\n"
# Real directories shown empty in hosts: the machine's dotfiles and files stay invisible
# (root's real .bashrc may start pyenv and make every ssh command slow).
MASKED = ("root", "home")
SSHD_CONFIG = """\
# machineroom lab host
Include /etc/ssh/sshd_config.d/*.conf
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitEmptyPasswords no
UsePAM yes
UseDNS no
# many parallel connections from one test controller
MaxStartups 200:30:400
MaxSessions 100
X11Forwarding no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def write_key(path: Path, comment: str) -> str:
    """Write a new ed25519 key pair (OpenSSH format); return the public key line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    pub_path = path.with_name(path.name + ".pub")
    pub_path.write_text(public.decode() + f" {comment}\n")
    os.chmod(pub_path, 0o644)
    return public.decode()


def _mkdirs(upper: Path, rel: str) -> Path:
    """Create upper/rel, each directory with the mode and owner of the real one.

    In an overlay, an upper directory's attributes win over the real one's.
    """
    upper.mkdir(mode=0o700, parents=True, exist_ok=True)  # lab-internal, never seen by hosts
    path, real = upper, Path("/")
    for part in Path(rel).parts:
        path, real = path / part, real / part
        if not path.exists():
            path.mkdir()
            st = real.stat() if real.exists() else None
            os.chmod(path, stat.S_IMODE(st.st_mode) if st else 0o755)
            os.chown(path, st.st_uid if st else 0, st.st_gid if st else 0)
    return path


def _put(
    upper: Path, rel: str, content: str | bytes, mode: int, uid: int = 0, gid: int = 0
) -> None:
    """Write upper/rel with this mode and owner, creating its directories like the real ones."""
    path = _mkdirs(upper, os.path.dirname(rel)) / os.path.basename(rel)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    os.chmod(path, mode)
    os.chown(path, uid, gid)


def build_seed(root: Path, hosts: dict[str, str], key_pub: str, nodelay: bool) -> None:
    """Write the upper layer all hosts start from (layer/) and the /dev, /run templates.

    `hosts` maps each host's name to its address, for /etc/hosts; `key_pub` is the
    controller's public key, which root, deploy and ops accept; `nodelay` drops pam_unix's
    delay after a wrong password.
    """
    layer = root / "layer"
    layer.mkdir(mode=0o700)
    (layer / "work").mkdir()
    (layer / "root").mkdir()
    upper = _mkdirs(layer, "upper")
    os.chmod(upper, 0o755)
    for rel in (*MASKED, "etc/ssh/sshd_config.d"):
        # an opaque upper directory hides the real one's contents
        os.setxattr(_mkdirs(upper, rel), "trusted.overlay.opaque", b"y")
    _write_homes(upper, _write_users(upper), key_pub + " machineroom-lab\n")
    _put(upper, "etc/sudoers.d/lab", SUDOERS, 0o440)
    _put(upper, "etc/ssh/sshd_config", SSHD_CONFIG, 0o644)
    for real in Path("/etc/ssh").glob("ssh_host_*"):
        if "ed25519" in real.name:  # each host's own key replaces it
            continue
        # whiteouts (char 0:0): the machine's own host keys are not visible in hosts
        os.mknod(upper / "etc/ssh" / real.name, stat.S_IFCHR | 0o600, os.makedev(0, 0))
    # no syslog in a host: /etc/init.d/ssh (re)starts sshd logging to a file
    _put(upper, "etc/default/ssh", 'SSHD_OPTS="-E /var/log/sshd.log"\n', 0o644)
    if nodelay:  # pam_unix waits about 3 s after a wrong password; tests need not
        common = Path("/etc/pam.d/common-auth").read_text()
        common = re.sub(r"(?m)^(auth\s.*pam_unix\.so.*)$", r"\1 nodelay", common)
        _put(upper, "etc/pam.d/common-auth", common, 0o644)
    etc_hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    etc_hosts += "".join(f"{address}\t{name}\n" for name, address in hosts.items())
    _put(upper, "etc/hosts", etc_hosts, 0o644)
    _write_runtime(root / "runtime")


def _write_homes(upper: Path, ids: dict[str, tuple[int, int]], authorized: str) -> None:
    """/root and /home/USER: pristine dotfiles and the controller's key, nothing else."""
    _put(upper, "root/.ssh/authorized_keys", authorized, 0o600)
    os.chmod(upper / "root", 0o700)
    os.chmod(upper / "root/.ssh", 0o700)
    for dot in ("bashrc", "profile"):  # Debian's pristine root dotfiles
        src = Path(f"/usr/share/base-files/dot.{dot}")
        if src.exists():
            _put(upper, f"root/.{dot}", src.read_bytes(), 0o644)
    for user, (uid, gid) in ids.items():
        home = upper / "home" / user
        home.mkdir(mode=0o750)
        if Path("/etc/skel").is_dir():
            shutil.copytree("/etc/skel", home, dirs_exist_ok=True)
        (home / ".ssh").mkdir(mode=0o700)
        (home / ".ssh/authorized_keys").write_text(authorized)
        for path in (home, *home.rglob("*")):
            os.lchown(path, uid, gid)
        os.chmod(home, 0o750)


def _write_runtime(runtime: Path) -> None:
    """Templates of a host's /dev (nodes, links) and /run (sshd's privsep dir, lock)."""
    runtime.mkdir(mode=0o700)
    dev = _mkdirs(runtime, "dev")
    for name, minor in [("null", 3), ("zero", 5), ("full", 7), ("random", 8), ("urandom", 9)]:
        os.mknod(dev / name, stat.S_IFCHR, os.makedev(1, minor))
    os.mknod(dev / "tty", stat.S_IFCHR, os.makedev(5, 0))
    for node in ("null", "zero", "full", "random", "urandom", "tty"):
        os.chmod(dev / node, 0o666)  # mknod's mode is cut by the umask
    for name, target in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ]:
        (dev / name).symlink_to(target)
    for name, mode in [("sshd", 0o755), ("lock", 0o1777)]:
        (runtime / "run" / name).mkdir(parents=True)
        os.chmod(runtime / "run" / name, mode)
    os.chmod(runtime / "run", 0o755)
    os.chmod(dev, 0o755)


def _write_users(upper: Path) -> dict[str, tuple[int, int]]:
    """Add the lab users to copies of the real user database; return uid, gid per user."""
    lab_users = [u for u, pw in USERS.items() if pw is not None]
    files = {name: Path("/etc", name).read_text().splitlines() for name in ("passwd", "group")}
    for name in ("shadow", "gshadow"):
        files[name] = Path("/etc", name).read_text().splitlines()
    for name, lines in files.items():  # a real user of the same name is replaced
        files[name] = [line for line in lines if line.split(":")[0] not in lab_users]
    used = {int(line.split(":")[2]) for line in files["passwd"] + files["group"]}
    hashes = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input="".join(f"{USERS[u]}\n" for u in lab_users),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    today = (datetime.date.today() - datetime.date(1970, 1, 1)).days
    ids, next_id = {}, 1000
    for user, hashed in zip(lab_users, hashes, strict=True):
        while next_id in used:
            next_id += 1
        used.add(next_id)
        ids[user] = (next_id, next_id)
        files["passwd"].append(f"{user}:x:{next_id}:{next_id}::/home/{user}:/bin/bash")
        files["shadow"].append(f"{user}:{hashed}:{today}:0:99999:7:::")
        files["group"].append(f"{user}:x:{next_id}:")
        files["gshadow"].append(f"{user}:!::")
    for name, lines in files.items():
        st = Path("/etc", name).stat()
        _put(upper, f"etc/{name}", "\n".join(lines) + "\n", stat.S_IMODE(st.st_mode), 0, st.st_gid)
    return ids


def build_host_layer(host_dir: Path, name: str, address: str, port: int) -> str:
    """Write one host's own files (merged into its upper layer); return its public key."""
    upper = _mkdirs(host_dir / "layer", "upper")
    os.chmod(host_dir / "layer", 0o700)
    os.chmod(upper, 0o755)
    (host_dir / "mnt").mkdir()
    pub = write_key(_mkdirs(upper, "etc/ssh") / "ssh_host_ed25519_key", name)
    listen = f"ListenAddress {address}:{port}\n"
    _put(upper, "etc/ssh/sshd_config.d/00-lab-listen.conf", listen, 0o644)
    os.setxattr(upper / "etc/ssh/sshd_config.d", "trusted.overlay.opaque", b"y")
    _put(upper, "etc/hostname", name + "\n", 0o644)
    _put(upper, "etc/machine-id", os.urandom(16).hex() + "\n", 0o444)
    return pub
