"""`add-cert`: the cert stage alone, with the workstation-side steps, as a recorded run.

The cert role (roles/cert) installs a public key on hosts; what only the workstation can do
lives here: making the key pair when it is missing (ed25519, private key 600 in a 700 folder),
and proving afterwards that a login with that key alone works (recorded in the host's `res`:
`identity_cert_verified`, or the install undone when it does not). Hosts whose `res` records
an installed key (`local_cert_path`) and whose inventory entry names no `ssh_key` connect with
that key (`with_recorded_keys`), so a host that only has a password in the inventory is reached
by key once its certificate is in.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from machineroom.errors import InputError, MachineroomError
from machineroom.runs.request import RunResult
from machineroom.runs.session import RunRecord, Subscriber, run_prepared

if TYPE_CHECKING:
    from machineroom.connection.base import ConnectOptions
    from machineroom.inventory.model import Host
    from machineroom.runs.connect import ConnectSettings
    from machineroom.runs.workspace import Workspace

DEFAULT_PUBLIC_KEY = "~/.ssh/id_ed25519.pub"


def key_pair_paths(key: str | None) -> tuple[Path, Path]:
    """(private, public) key paths from `--key`: a `.pub` file or the private key beside it."""
    given = Path(os.path.expanduser(key or DEFAULT_PUBLIC_KEY))
    if given.suffix == ".pub":
        return given.with_suffix(""), given
    return given, given.with_name(given.name + ".pub")


def ensure_key_pair(private: Path, public: Path, comment: str) -> bool:
    """Make an ed25519 key pair at `private`/`public` unless the public key exists.

    The folder is created 700, the private key written 600 (OpenSSH format, no passphrase),
    the public key 644. A private key without its public half is refused rather than
    overwritten. Returns True when a pair was made.
    """
    if public.is_file():
        return False
    if private.exists():
        raise InputError(
            f"{private} exists but {public} does not: make the public key with "
            f"`ssh-keygen -y -f {private} > {public}`"
        )
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = private.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
        folder.chmod(0o700)  # mkdir's mode is masked by the umask
    key = Ed25519PrivateKey.generate()
    private_text = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public_text = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_text)
    os.chmod(private, 0o600)
    public.write_bytes(public_text + b" " + comment.encode() + b"\n")
    os.chmod(public, 0o644)
    return True


def find_cert_role() -> Path:
    """roles/cert of the current project (the folder or its git top), else the one shipped
    beside the machineroom package."""
    from machineroom.runs.prepare import roles_path

    for folder in roles_path(str(Path.cwd() / "add-cert.yml")):
        if (Path(folder) / "cert" / "tasks").is_dir():
            return Path(folder) / "cert"
    shipped = Path(__file__).resolve().parents[2] / "roles" / "cert"
    if (shipped / "tasks").is_dir():
        return shipped
    raise InputError(f"no cert role: looked in ./roles/cert and {shipped}")


def write_playbook(folder: Path, pattern: str, role: Path) -> Path:
    """A one-play playbook running the cert role as a stage on `pattern`."""
    play = {
        "name": "add-cert",
        "hosts": pattern,
        "gather_facts": False,
        "stages": [{"role": str(role)}],
    }
    path = folder / "add-cert.yml"
    path.write_text(json.dumps([play], indent=2) + "\n")  # JSON is YAML
    return path


def verify_key_login(
    hosts: Sequence[Host], private: Path, options: ConnectOptions
) -> dict[str, str | None]:
    """Log in to each host with the key alone (no password, no agent) and run `true`.

    Returns host id -> None when the login worked, else the reason it did not.
    """
    from concurrent.futures import ThreadPoolExecutor

    from machineroom.connection.pool import open_connection

    key_only = dataclasses.replace(options, use_agent=False, on_command=None)

    def check(host: Host) -> str | None:
        probe = dataclasses.replace(host, password=None, ssh_key=str(private))
        try:
            conn = open_connection(probe, key_only)
        except MachineroomError as exc:
            return str(exc)
        try:
            result = conn.run("true")
            return None if result.exit_code == 0 else f"`true` exited {result.exit_code}"
        except MachineroomError as exc:
            return str(exc)
        finally:
            conn.close()

    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(hosts), 16)) as pool:
        return dict(zip((h.id for h in hosts), pool.map(check, hosts), strict=True))


@dataclass(frozen=True)
class CertRun:
    """An add-cert run: the cert stage's run, then each host's key login (host -> None when
    it worked, else why not; hosts where the key was not installed are not tried)."""

    result: RunResult
    logins: dict[str, str | None] = field(default_factory=dict)
    matched: bool = True  # False: the pattern matched no host, nothing ran

    @property
    def failed_logins(self) -> list[str]:
        """The hosts whose key login failed."""
        return [host for host, problem in self.logins.items() if problem is not None]


def add_cert(
    workspace: Workspace,
    pattern: str,
    private: Path,
    public: Path,
    connect: ConnectSettings,
    subscribers: Sequence[Subscriber] = (),
    *,
    check: bool = False,
    verbosity: int = 0,
    trigger: str | None = None,
    command_line: str = "",
) -> CertRun:
    """Run the cert stage on the hosts matching `pattern` with `public` as the key, recorded
    as `apply` runs are; then, unless in check mode or interrupted, log in to each host whose
    key is installed with `private` alone and record whether that worked in its `res`. The
    key pair must exist (`ensure_key_pair`)."""
    from machineroom.executor.hoststate import RunOptions
    from machineroom.runs.connect import connect_options
    from machineroom.runs.prepare import prepare

    store = workspace.open_state()
    try:
        store.mark_interrupted_runs()
        with tempfile.TemporaryDirectory(prefix="machineroom-add-cert-") as tmp:
            playbook = write_playbook(Path(tmp), pattern, find_cert_role())
            extra = json.dumps({"cert_public_key_path": str(public)})
            prepared = prepare(workspace, str(playbook), None, frozenset(), (extra,))
            hosts = prepared.play_hosts[0]
            if not hosts:
                return CertRun(RunResult(None, "ok"), matched=False)
            result = run_prepared(
                workspace,
                store,
                prepared,
                RunRecord(
                    kind="add-cert",
                    label="add-cert",
                    args={"check": check, "key": str(private)},
                    trigger=trigger,
                    command_line=command_line,
                ),
                RunOptions(
                    check=check,
                    forks=connect.forks,
                    extra_vars=prepared.extra_vars,
                    extra_var_sources=prepared.extra_sources,
                    verbosity=verbosity,
                ),
                connect,
                subscribers,
                resumable=False,  # its playbook is a temporary file: nothing to resume
            )
        if check or result.status in ("interrupted", "error"):
            return CertRun(result)
        installed = {r.id for r in store.servers() if r.res.get("identity_cert_installed")}
        to_verify = [h for h in hosts if h.id in installed]
        logins = verify_key_login(to_verify, private, connect_options(workspace, connect))
        for host_id, problem in logins.items():
            if problem is None:
                store.update_res(host_id, {"identity_cert_verified": True})
            else:
                store.update_res(
                    host_id, {"identity_cert_installed": False, "identity_cert_verified": False}
                )
        return CertRun(result, logins)
    finally:
        store.close()
