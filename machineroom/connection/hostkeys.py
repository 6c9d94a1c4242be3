"""Host key verification against OpenSSH known_hosts files.

paramiko's and Fabric's default is to accept any key silently; machineroom never does. A key is
checked against every known_hosts file we were given (the project's file, the user's
`~/.ssh/known_hosts`, the system file), with OpenSSH's syntax: comma-separated patterns with
`*`, `?` and `!`, hashed names (`|1|salt|hash`), `[host]:port` names, `@revoked` markers.

- known key: accepted;
- unknown host: refused with the fingerprint and how to trust it, or, when asked
  (`accept_new`), appended to the project file under a lock (threads and processes alike);
- changed key (the host is known with other keys): always refused, naming file and line.

A refusal carries the key the server presented (`HostKeyError.offered`), so that a run can
record it and the dashboard can show it, and trust exactly it (`trust_key`), later.

This module is pure stdlib: the SSH layer hands it the key's type and blob.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import hmac
import os
import re
import shlex
import struct
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from machineroom.errors import HostKeyError, InputError

__all__ = [
    "KEY_TYPES",
    "KnownHostEntry",
    "KnownHosts",
    "blob_key_type",
    "check_key_name",
    "fingerprint",
    "host_key_name",
    "parse_known_hosts",
    "remove_command",
    "trust_key",
]

DEFAULT_USER_FILE = "~/.ssh/known_hosts"
SYSTEM_FILE = "/etc/ssh/ssh_known_hosts"
# The host key types a key may be trusted with (paramiko's, the FIDO ones included).
KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ssh-rsa",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
# A known_hosts name we write: a bare host name or address, or `[host]:port`. Nothing that
# known_hosts reads as syntax (`@marker`, `|hash`, `#`, `,` lists, `*?!` wildcards, blanks).
_HOST = r"[A-Za-z0-9_.:%]+(?<!-)"
_NAME = re.compile(rf"(?!-)({_HOST})|\[(?!-)({_HOST})\]:([0-9]{{1,5}})")


def host_key_name(hostname: str, port: int) -> str:
    """The name known_hosts uses for a server: `host` on port 22, else `[host]:port`."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


def check_key_name(name: str) -> None:
    """InputError unless `name` is a host name, an IPv4 or IPv6 address, or `[host]:port`
    (port 1-65535): the only names a key is trusted under."""
    m = _NAME.fullmatch(name)
    port = int(m.group(3)) if m and m.group(3) else 22
    if m is None or not 0 < port < 65536:
        raise InputError(
            f"not a host name for known_hosts: {name!r} (expected a host name or address, "
            "or [host]:port, without blanks, wildcards, lists or markers)"
        )


def blob_key_type(blob: bytes) -> str:
    """The key type a public key blob names itself (its first SSH string); InputError when
    the blob is not an SSH public key or the type is not one of KEY_TYPES."""
    try:
        (length,) = struct.unpack(">I", blob[:4])
        key_type = blob[4 : 4 + length].decode("ascii")
    except (struct.error, UnicodeDecodeError):
        key_type = ""
    if len(blob) < 4 + len(key_type) or key_type not in KEY_TYPES:
        shown = key_type or "no type"
        raise InputError(f"not an SSH host key of a known type ({shown!r})")
    return key_type


def remove_command(name: str, path: str) -> str:
    """The `ssh-keygen -R` line that removes `name`'s entries from `path` (a system file
    needs root)."""
    shown = _display(path)
    # `~/` stays outside the quotes, where the shell expands it
    where = "~/" + shlex.quote(shown[2:]) if shown.startswith("~/") else shlex.quote(shown)
    line = f"ssh-keygen -R {shlex.quote(name)} -f {where}"
    if path == SYSTEM_FILE or path.startswith("/etc/"):
        return f"sudo {line} (a system file: as root)"
    return line


def fingerprint(blob: bytes) -> str:
    """The key's SHA256 fingerprint exactly as OpenSSH prints it (`SHA256:...`, no padding)."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def key_label(key_type: str) -> str:
    """`ED25519`, `ECDSA`, `RSA`: the short type name OpenSSH shows beside a fingerprint."""
    if key_type.startswith("ssh-"):
        return key_type[4:].upper()
    if key_type.startswith("ecdsa"):
        return "ECDSA"
    if key_type.startswith("rsa"):
        return "RSA"
    return key_type.upper()


@dataclass(frozen=True)
class KnownHostEntry:
    """One usable line of a known_hosts file."""

    file: str
    line: int
    patterns: str  # the first field as written (may be hashed)
    key_type: str
    blob: bytes
    marker: str | None = None  # "@revoked" or "@cert-authority"

    @property
    def where(self) -> str:
        """`file:line`, for messages."""
        return f"{self.file}:{self.line}"

    def matches(self, name: str) -> bool:
        """True when this entry's host field names `name` (already in `[host]:port` form)."""
        return _patterns_match(self.patterns, name)


def _wildcard(pattern: str, name: str) -> bool:
    # fnmatch would read `[127.0.0.1]:2222` as a character class: only * and ? are wild here.
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower()
    )
    return re.fullmatch(regex, name.lower()) is not None


def _hashed_match(field: str, name: str) -> bool:
    parts = field.split("|")
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt = base64.b64decode(parts[2])
        wanted = base64.b64decode(parts[3])
    except (binascii.Error, ValueError):
        return False
    got = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(got, wanted)


def _patterns_match(field: str, name: str) -> bool:
    if field.startswith("|"):
        return _hashed_match(field, name)
    matched = False
    for pattern in field.split(","):
        if pattern.startswith("!"):
            # OpenSSH: a matching negation excludes the host whatever else matches
            if _wildcard(pattern[1:], name):
                return False
        elif _wildcard(pattern, name):
            matched = True
    return matched


def parse_known_hosts(text: str, file: str) -> list[KnownHostEntry]:
    """Every well-formed line of a known_hosts file; comments and broken lines are skipped."""
    entries: list[KnownHostEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = None
        if fields[0].startswith("@"):
            marker, fields = fields[0], fields[1:]
        if len(fields) < 3:
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except (binascii.Error, ValueError):
            continue
        entries.append(KnownHostEntry(file, number, fields[0], fields[1], blob, marker))
    return entries


# Parsed files keyed by path, reused while (mtime, size) stay the same: 50 hosts connecting at
# once should not parse a user's long known_hosts 50 times.
_cache: dict[str, tuple[tuple[int, int], list[KnownHostEntry]]] = {}
_cache_lock = threading.Lock()
# One lock per file we append to; flock() below covers other processes.
_record_locks: dict[str, threading.Lock] = {}


def _load(path: str) -> list[KnownHostEntry]:
    try:
        st = os.stat(path)
    except OSError:
        return []
    stamp = (st.st_mtime_ns, st.st_size)
    with _cache_lock:
        hit = _cache.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            entries = parse_known_hosts(f.read(), path)
    except OSError:
        return []
    with _cache_lock:
        _cache[path] = (stamp, entries)
    return entries


def _display(path: str) -> str:
    home = os.path.expanduser("~")
    if home not in ("", "/") and path.startswith(home + os.sep):
        return "~" + path[len(home) :]
    return path


class KnownHosts:
    """The known_hosts files one connection checks, and where new keys are recorded.

    `files` are read in order; `record_to` receives first-seen keys when `accept_new` is set.
    `shown_as` names a file that is a copy by the original's path, in messages and in the
    refusal a run records (a cluster worker's copies of the controller's files).
    """

    def __init__(
        self,
        files: Iterable[str],
        *,
        record_to: str | None = None,
        accept_new: bool = False,
        advice: str | None = None,
        shown_as: Mapping[str, str] | None = None,
    ) -> None:
        seen: list[str] = []
        for f in (*files, *([record_to] if record_to else [])):
            path = os.path.abspath(os.path.expanduser(f))
            if path not in seen:
                seen.append(path)
        self.files: tuple[str, ...] = tuple(seen)
        self.record_to = os.path.abspath(os.path.expanduser(record_to)) if record_to else None
        self.accept_new = accept_new
        # what an unknown key's message tells the user to do; None: the CLI's flag and
        # ssh-keyscan line (the dashboard says where its trust button is instead)
        self.advice = advice
        self.shown_as = {
            os.path.abspath(os.path.expanduser(copy)): original
            for copy, original in (shown_as or {}).items()
        }

    def _shown(self, entry: KnownHostEntry) -> KnownHostEntry:
        """`entry` naming the file it came from as the user knows it."""
        original = self.shown_as.get(entry.file)
        return entry if original is None else replace(entry, file=original)

    def entries_for(self, name: str) -> list[KnownHostEntry]:
        """Every entry in our files that names `name` (`host` or `[host]:port`)."""
        return [e for f in self.files for e in _load(f) if e.matches(name)]

    def key_types_for(self, name: str) -> list[str]:
        """Key types already known for `name`, so the client can ask the server for those first
        (otherwise a host known by its ECDSA key that also has ED25519 would look changed)."""
        types: list[str] = []
        for e in self.entries_for(name):
            if e.marker is None and e.key_type not in types:
                types.append(e.key_type)
        return types

    def check(self, host_id: str, name: str, key_type: str, blob: bytes, what: str = "") -> None:
        """Accept the server's key or raise HostKeyError.

        `host_id` names the inventory host in the error; `name` is the known_hosts name
        (`host` or `[host]:port`); `what` prefixes the reason, e.g. "jump host 'bastion'".
        """
        entries = self.entries_for(name)
        self._verify(host_id, name, key_type, blob, what, entries)
        if any(e.marker is None and e.blob == blob for e in entries):
            return
        if not self.accept_new or self.record_to is None:
            raise HostKeyError(
                host_id,
                self._unknown_message(name, key_type, blob, what),
                offered_key(name, key_type, blob, "unknown", what),
            )
        self._record(host_id, name, key_type, blob, what)

    def _verify(
        self,
        host_id: str,
        name: str,
        key_type: str,
        blob: bytes,
        what: str,
        entries: Sequence[KnownHostEntry],
    ) -> None:
        """Raise for a revoked or changed key; return when the key is known or the host new."""
        prefix = f"{what}: " if what else ""
        for e in entries:
            if e.marker == "@revoked" and e.blob == blob:
                e = self._shown(e)
                raise HostKeyError(
                    host_id,
                    f"{prefix}{name} presents a REVOKED host key {key_label(key_type)} "
                    f"{fingerprint(blob)} (revoked in {_display(e.file)}:{e.line}); refusing",
                    offered_key(name, key_type, blob, "revoked", what, e),
                )
        plain = [e for e in entries if e.marker is None]
        if not plain or any(e.blob == blob for e in plain):
            return
        old = self._shown(next((e for e in plain if e.key_type == key_type), plain[0]))
        raise HostKeyError(
            host_id,
            f"{prefix}HOST KEY CHANGED for {name}: it presents {key_label(key_type)} "
            f"{fingerprint(blob)}, but {_display(old.file)}:{old.line} holds "
            f"{key_label(old.key_type)} {fingerprint(old.blob)}. Someone may be intercepting the "
            f"connection, or the host was reinstalled; if you know it was, remove the old key "
            f"with: {remove_command(name, old.file)}",
            offered_key(name, key_type, blob, "changed", what, old),
        )

    def _unknown_message(self, name: str, key_type: str, blob: bytes, what: str) -> str:
        prefix = f"{what}: " if what else ""
        where = ", ".join(_display(self.shown_as.get(f, f)) for f in self.files)
        where = where or "no known_hosts file"
        host, port = _split_name(name)
        port_opt = f"-p {port} " if port != 22 else ""
        target = self.record_to or (self.files[0] if self.files else DEFAULT_USER_FILE)
        target = _display(self.shown_as.get(target, target))
        algo = key_type.removeprefix("ssh-").split("-")[0]
        advice = self.advice or (
            f"If that fingerprint is the host's, trust it by running again "
            f"with --accept-new-host-keys, or add it with: "
            f"ssh-keyscan {port_opt}-t {algo} {host} >> {target}"
        )
        return (
            f"{prefix}unknown host key for {name}: {key_label(key_type)} {fingerprint(blob)} "
            f"(not in {where}). {advice}"
        )

    def _record(self, host_id: str, name: str, key_type: str, blob: bytes, what: str) -> None:
        """Append the key to `record_to`, unless another thread or process just did."""
        assert self.record_to is not None
        _append(
            self.record_to,
            name,
            key_type,
            blob,
            lambda current: self._verify(host_id, name, key_type, blob, what, current),
        )


def offered_key(
    name: str,
    key_type: str,
    blob: bytes,
    state: str,
    what: str = "",
    known: KnownHostEntry | None = None,
) -> dict[str, str]:
    """What a server presented, as plain data a run records: its known_hosts `name`, the key
    (type, base64, SHA256 fingerprint), `state` (unknown, changed, revoked), `via` (a jump
    host's role, else empty) and, for a changed or revoked key, the entry it met."""
    offered = {
        "name": name,
        "key_type": key_type,
        "key": base64.b64encode(blob).decode(),
        "fingerprint": fingerprint(blob),
        "label": key_label(key_type),
        "state": state,
        "via": what,
    }
    if known is not None:
        offered["known_at"] = f"{_display(known.file)}:{known.line}"
        offered["known_file"] = known.file
        offered["known_fingerprint"] = f"{key_label(known.key_type)} {fingerprint(known.blob)}"
    return offered


def trust_key(path: str, name: str, key_type: str, blob: bytes, also: Sequence[str] = ()) -> bool:
    """Add `name key_type key` to the known_hosts file `path` (created 0600, its folder
    0700), under the same lock as first-use recording. `also`: the other files a run reads
    (re-read under that lock too). Returns False when one of them already holds that key for
    `name`; raises HostKeyError when they hold another key for it (a changed key is never
    trusted this way) or revoke this one, InputError when `name` is not a plain host name or
    `[host]:port`, or the key is not of a host key type (its own blob says which)."""
    check_key_name(name)
    if blob_key_type(blob) != key_type:
        raise InputError(f"the key for {name} is a {blob_key_type(blob)} key, not {key_type}")
    path = os.path.abspath(os.path.expanduser(path))
    others = [
        p for p in dict.fromkeys(os.path.abspath(os.path.expanduser(f)) for f in also) if p != path
    ]
    checker = KnownHosts([path])

    def verify(current: Sequence[KnownHostEntry]) -> bool:
        entries = [*current, *(e for f in others for e in _read(f) if e.matches(name))]
        checker._verify(name, name, key_type, blob, "", entries)
        return any(e.marker is None and e.blob == blob for e in entries)

    return _append(path, name, key_type, blob, verify)


def _read(path: str) -> list[KnownHostEntry]:
    """A file's entries as they are now (not the cache: another process may just have
    written it); none when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_known_hosts(f.read(), path)
    except OSError:
        return []


def _hashed_name(name: str) -> str:
    """`name` hashed as `ssh-keygen -H` writes it: `|1|salt|HMAC-SHA1(salt, name)`."""
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def _append(
    path: str,
    name: str,
    key_type: str,
    blob: bytes,
    verify: Callable[[Sequence[KnownHostEntry]], bool | None],
) -> bool:
    """Append one line to `path` under a thread lock and flock, after `verify` saw the
    entries for `name` the file holds now (it raises for a changed key; True: the key is
    known already); False when the key is already there. The line is hashed when every
    entry of the file is, and starts on a line of its own; it is read back before True."""
    with _cache_lock:
        lock = _record_locks.setdefault(path, threading.Lock())
    folder = os.path.dirname(path)
    if folder and not os.path.isdir(folder):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)  # makedirs' mode is filtered by the umask
    key = base64.b64encode(blob).decode()
    with lock:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Re-read under the lock: a parallel connection may have recorded this host.
            raw = _read_fd(fd)
            text = raw.decode("utf-8", errors="replace")
            entries = parse_known_hosts(text, path)
            current = [e for e in entries if e.matches(name)]
            if verify(current) or any(e.marker is None and e.blob == blob for e in current):
                return False
            hashed = bool(entries) and all(e.patterns.startswith("|1|") for e in entries)
            line = f"{_hashed_name(name) if hashed else name} {key_type} {key}\n"
            # a last line without its newline would run into ours: both entries lost
            start = b"\n" if raw and not raw.endswith(b"\n") else b""
            os.write(fd, start + line.encode())
            written = parse_known_hosts(_read_fd(fd).decode("utf-8", errors="replace"), path)
            if not any(e.marker is None and e.blob == blob and e.matches(name) for e in written):
                raise HostKeyError(
                    name, f"{_display(path)}: the entry written for {name} does not read back"
                )
            return True
        finally:
            os.close(fd)  # closing drops the flock


def _read_fd(fd: int) -> bytes:
    """The whole file behind `fd`, whatever its offset."""
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 16, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _split_name(name: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[(.+)\]:(\d+)", name)
    if m:
        return m.group(1), int(m.group(2))
    return name, 22
