"""The secrets vault: password-based authenticated encryption of files and single values.

One text format serves whole files, inline YAML values (`!vault |`) and server-list fields:

    $MACHINEROOM_VAULT;1;scrypt;AES256GCM
    <base64 of params|salt|nonce|ciphertext+tag, wrapped at 80 columns>

or, on one line (for the server-list format, or any place a newline is awkward):

    $MACHINEROOM_VAULT;1;scrypt;AES256GCM;<base64>

ansible-vault's format (`$ANSIBLE_VAULT;1.1;AES256`, `;1.2;AES256;LABEL`) is read wherever
ours is, and written on request (`machineroom.ansible_vault`), so a repository can move over
file by file.

The key is derived from the password with scrypt (memory-hard); its cost parameters travel in
the first three bytes of the payload, so they can be raised later without breaking old data.
Those bytes and the header line are authenticated (AES-GCM associated data). Standard base64 is
used on purpose: its alphabet has no `-` or `#`, so a one-line value cannot break the
server-list format's `--` separators or start a comment.

No click here: the CLI (`machineroom.cli.vault_cmds`) prompts and prints; its file work is
in `machineroom.runs.vault_files`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import stat
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from machineroom.ansible_vault import (
    ANSIBLE_PREFIX,
    AnsibleKeys,
    ansible_vault_label,
    is_ansible_vault_text,
)
from machineroom.errors import InputError, VaultError
from machineroom.masking import SECRETS, add_secret

# Must equal machineroom.inventory.model.VAULT_PREFIX (a test checks); not imported from there
# so that inventory loaders can import this module without an import cycle.
VAULT_PREFIX = "$MACHINEROOM_VAULT;"
HEADER = "$MACHINEROOM_VAULT;1;scrypt;AES256GCM"
PASSWORD_ENV = "MACHINEROOM_VAULT_PASSWORD"
ANSIBLE_PASSWORD_FILE_ENV = "ANSIBLE_VAULT_PASSWORD_FILE"
FORMATS = ("machineroom", "ansible")
WRAP = 80

# scrypt N=2**15, r=8, p=1: 32 MiB of memory and ~100 ms per derivation on the development
# machine (2**14 was ~60 ms, 2**16 ~220 ms). Stored per value, so raising it later is safe.
SCRYPT_LOG2_N = 15
SCRYPT_R = 8
SCRYPT_P = 1
# Refuse parameters from a (possibly hostile) file that would need more than 1 GiB or run for
# minutes: a damaged header must not be able to exhaust the workstation.
_MAX_SCRYPT_MEMORY = 1 << 30
_MAX_SCRYPT_P = 16

SALT_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
_PARAMS_SIZE = 3  # log2(N), r, p: one byte each

WRONG_PASSWORD = "cannot decrypt: wrong vault password or damaged data"
# the label of a password given without one (ansible-vault's name for it too)
DEFAULT_LABEL = "default"

# Each derivation holds N*r*128 bytes (32 MiB by default); many executor threads revealing
# passwords at once must not multiply that without bound.
_DERIVE_SLOTS = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))

_Params = tuple[int, int, int]


def is_vault_text(text: str) -> bool:
    """True when `text` (ignoring leading whitespace) is vault ciphertext: ours, either form,
    or ansible-vault's."""
    head = text.lstrip()
    return head.startswith(VAULT_PREFIX) or head.startswith(ANSIBLE_PREFIX)


def vault_format(text: str) -> str:
    """ "ansible" for ansible-vault text, else "machineroom"."""
    return "ansible" if is_ansible_vault_text(text) else "machineroom"


def encrypt_text(plain: str, password: str, *, oneline: bool = False) -> str:
    """Encrypt `plain` with a key derived from `password` (fresh salt: one derivation, ~100 ms).

    Returns the block form (header line, base64 wrapped at 80 columns, trailing newline), or
    the one-line form without a newline when `oneline` is true.
    """
    return VaultKey(password).encrypt(plain, oneline=oneline)


def decrypt_text(data: str, password: str) -> str:
    """Decrypt vault text in either form; VaultError on a wrong password or damaged data."""
    return VaultKey(password).decrypt(data)


class VaultKey:
    """A vault password plus a cache of the keys derived from it, one per (salt, parameters).

    Every encrypted value carries its own random salt, so each distinct value costs one scrypt
    derivation (~100 ms) the first time it is decrypted; decrypting it again (the same group
    variable inherited by 200 hosts, a connection reopened) is free. 200 *distinct* inline
    values cost ~200 derivations; keep many secrets in one vault file to pay once. Encryption
    never reuses a salt or key. Safe to share between threads; `decrypt` fits
    `Secret.reveal(decrypt=...)`.
    """

    def __init__(self, password: str, label: str = DEFAULT_LABEL) -> None:
        if not password:
            raise VaultError("the vault password is empty")
        self.label = label  # ansible's vault-id label: 1.2 data names the one it was made with
        self._others: tuple[VaultKey, ...] = ()
        self._plain = password  # for __reduce__: a key crosses to a cluster's workers
        # NFC so that the same password typed on macOS and Linux gives the same key.
        add_secret(password)
        self._password = unicodedata.normalize("NFC", password).encode("utf-8")
        # ansible-vault uses the password's bytes as they are (no normalisation).
        self._ansible = AnsibleKeys(password.encode("utf-8"))
        self._keys: dict[tuple[bytes, _Params], bytes] = {}
        self._locks: dict[tuple[bytes, _Params], threading.Lock] = {}
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"VaultKey(***, {len(self._keys)} cached keys)"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its password(s) and labels, without the derived keys and locks: only
        inside a cluster run's sealed payload (cluster/shard.py), over TLS."""
        return (_rebuilt_key, (self._plain, self.label, self._others))

    def encrypt(self, plain: str, *, oneline: bool = False) -> str:
        """Encrypt text with a fresh salt and nonce; see `encrypt_text` for the two forms."""
        return self.encrypt_bytes(plain.encode("utf-8"), oneline=oneline)

    def encrypt_bytes(
        self, plain: bytes, *, oneline: bool = False, fmt: str = "machineroom"
    ) -> str:
        """Encrypt bytes (any file content) into vault text; `fmt="ansible"` writes
        ansible-vault's format 1.1 (which has no one-line form)."""
        if fmt == "ansible":
            # ansible-vault writes 1.2 with the vault id's label when one was named
            return self._ansible.encrypt(plain, None if self.label == DEFAULT_LABEL else self.label)
        params: _Params = (SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P)
        salt = os.urandom(SALT_SIZE)
        nonce = os.urandom(NONCE_SIZE)
        key = _derive(self._password, salt, params)  # never cached: nothing decrypts with it
        head = bytes(params)
        sealed = AESGCM(key).encrypt(nonce, plain, _aad(head))
        payload = base64.b64encode(head + salt + nonce + sealed).decode("ascii")
        if oneline:
            return f"{HEADER};{payload}"
        lines = [payload[i : i + WRAP] for i in range(0, len(payload), WRAP)]
        return "\n".join([HEADER, *lines]) + "\n"

    def decrypt(self, text: str) -> str:
        """Decrypt vault text to a string; VaultError when it is not UTF-8 text."""
        try:
            plain = self.decrypt_bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise VaultError(
                "decrypted data is not UTF-8 text (a binary file? use `vault decrypt`)"
            ) from None
        add_secret(plain)  # every decrypted value is masked wherever it would leave
        return plain

    def decrypt_bytes(self, text: str) -> bytes:
        """Decrypt vault text (ours in either form, or ansible-vault's) to bytes, with this
        password or, failing that, the others of its ring (the one the data names first)."""
        if not self._others:
            return self._decrypt_own(text)
        named = ansible_vault_label(text)
        ring = sorted((self, *self._others), key=lambda key: key.label != named)
        for key in ring:
            try:
                return key._decrypt_own(text)
            except VaultError as exc:
                if exc.message != WRONG_PASSWORD:
                    raise
        raise VaultError(f"{WRONG_PASSWORD} (tried vault ids: {', '.join(k.label for k in ring)})")

    def _decrypt_own(self, text: str) -> bytes:
        if is_ansible_vault_text(text):
            return self._ansible.decrypt(text)
        head, salt, nonce, sealed = _parse(text)
        params: _Params = (head[0], head[1], head[2])
        key = self._key(salt, params)
        try:
            return AESGCM(key).decrypt(nonce, sealed, _aad(head))
        except InvalidTag:
            raise VaultError(WRONG_PASSWORD) from None

    def _key(self, salt: bytes, params: _Params) -> bytes:
        """The derived key for this salt, deriving it once even when threads race for it."""
        ident = (salt, params)
        with self._guard:
            key = self._keys.get(ident)
            if key is not None:
                return key
            lock = self._locks.setdefault(ident, threading.Lock())
        # Derive outside the guard: a slow derivation must not block cache hits on other salts.
        with lock:
            with self._guard:
                key = self._keys.get(ident)
            if key is None:
                key = _derive(self._password, salt, params)
                with self._guard:
                    self._keys[ident] = key
                    self._locks.pop(ident, None)
        return key


def _rebuilt_key(password: str, label: str, others: tuple[VaultKey, ...]) -> VaultKey:
    key = VaultKey(password, label)
    key._others = others
    return key


def keyring(keys: Sequence[VaultKey]) -> VaultKey:
    """One key standing for several (Ansible's repeated --vault-id): it encrypts with the
    first and decrypts with whichever opens the data."""
    first = keys[0]
    first._others = tuple(keys[1:])
    return first


def parse_vault_id(text: str) -> tuple[str, str]:
    """Ansible's `--vault-id [LABEL@]SOURCE` as (label, source); SOURCE is a password file,
    a password script, or `prompt`."""
    label, at, source = text.partition("@")
    if not at:
        label, source = DEFAULT_LABEL, text
    if not label or not source:
        raise VaultError(f"--vault-id '{text}': expected LABEL@FILE, LABEL@prompt, or FILE")
    return label, source


def _aad(params: bytes) -> bytes:
    """Associated data: the header line and the KDF parameters, so neither can be swapped."""
    return HEADER.encode("ascii") + b"\n" + params


def _derive(password: bytes, salt: bytes, params: _Params) -> bytes:
    log2_n, r, p = params
    with _DERIVE_SLOTS:
        return Scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=p).derive(password)


def _damaged(detail: str) -> VaultError:
    return VaultError(f"cannot decrypt: damaged vault data ({detail})")


def _parse(text: str) -> tuple[bytes, bytes, bytes, bytes]:
    """Split vault text into (params, salt, nonce, ciphertext+tag), checking the header."""
    stripped = text.strip()
    if not stripped.startswith(VAULT_PREFIX):
        raise VaultError(
            f"not vault data: it does not start with {VAULT_PREFIX} or {ANSIBLE_PREFIX}"
        )
    first, _, rest = stripped.partition("\n")
    fields = first.strip().split(";")
    if len(fields) == 5:  # one-line form: the payload is the fifth field
        payload = fields[4] + rest
        fields = fields[:4]
    else:
        payload = rest
    if len(fields) != 4 or fields[1] != "1":
        raise VaultError(f"unsupported vault format '{first.strip()[:60]}'; expected {HEADER}")
    if fields[2:] != ["scrypt", "AES256GCM"]:
        raise VaultError(f"unsupported vault algorithms '{';'.join(fields[2:])}'")
    # YAML block scalars and editors may leave indentation or CRs between lines.
    compact = "".join(payload.split())
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise _damaged("not valid base64") from None
    minimum = _PARAMS_SIZE + SALT_SIZE + NONCE_SIZE + TAG_SIZE
    if len(raw) < minimum:
        raise _damaged("too short")
    head = raw[:_PARAMS_SIZE]
    log2_n, r, p = head
    if not (1 <= log2_n <= 30 and r >= 1 and 1 <= p <= _MAX_SCRYPT_P):
        raise _damaged("bad key-derivation parameters")
    if (128 * r << log2_n) > _MAX_SCRYPT_MEMORY:
        raise _damaged("key-derivation parameters need more than 1 GiB")
    salt_end = _PARAMS_SIZE + SALT_SIZE
    nonce_end = salt_end + NONCE_SIZE
    return head, raw[_PARAMS_SIZE:salt_end], raw[salt_end:nonce_end], raw[nonce_end:]


# --- files -------------------------------------------------------------------------------


def encrypt_file(
    path: str | os.PathLike[str], password: str | VaultKey, fmt: str = "machineroom"
) -> None:
    """Encrypt a file in place, atomically, keeping its mode; VaultError if already encrypted.
    `fmt` is "machineroom" (ours) or "ansible" (ansible-vault 1.1)."""
    target = _real(path)
    data = _read(target)
    if is_vault_text(data[:256].decode("ascii", "replace")):
        raise VaultError(f"{path}: already encrypted")
    key = password if isinstance(password, VaultKey) else VaultKey(password)
    write_atomic(target, key.encrypt_bytes(data, fmt=fmt).encode("ascii"))


def decrypt_file(path: str | os.PathLike[str], password: str | VaultKey) -> None:
    """Decrypt a file in place, atomically, keeping its mode; VaultError if not encrypted."""
    target = _real(path)
    key = password if isinstance(password, VaultKey) else VaultKey(password)
    write_atomic(target, read_vault_file(target, key))


def read_vault_file(path: str | os.PathLike[str], key: VaultKey) -> bytes:
    """The plaintext of an encrypted file, without touching the file."""
    data = _read(Path(path))
    if not is_vault_text(data[:256].decode("ascii", "replace")):
        raise VaultError(f"{path}: not encrypted (no {VAULT_PREFIX} or {ANSIBLE_PREFIX} header)")
    try:
        return key.decrypt_bytes(data.decode("ascii"))
    except UnicodeDecodeError:
        raise VaultError(f"{path}: cannot decrypt: damaged vault data (not ASCII)") from None
    except VaultError as exc:
        raise VaultError(f"{path}: {exc.message}") from None


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int | None = None) -> None:
    """Replace `path` with `data` atomically: temp file in the same folder, fsync, rename.

    The file keeps its permission bits (and its owner when we are allowed to set it); a new
    file gets `mode` (default 0o600). Any failure leaves the original untouched and no temp
    file behind.
    """
    target = Path(path)
    try:
        st: os.stat_result | None = target.stat()
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if st is not None:
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
                # Only root may give a file away; the mode is what matters most.
                with contextlib.suppress(PermissionError):
                    os.chown(tmp, st.st_uid, st.st_gid)
        else:
            os.chmod(tmp, 0o600 if mode is None else mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; some filesystems refuse to open folders, which is harmless."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _real(path: str | os.PathLike[str]) -> Path:
    # Rewrite a symlink's target, not the link itself (os.replace would swap out the link).
    return Path(os.path.realpath(path))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise VaultError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise VaultError(f"{path}: is a directory") from None
    except PermissionError:
        raise VaultError(f"{path}: permission denied") from None


# --- the password ---------------------------------------------------------------------------


def read_vault_password(
    password_file: str | os.PathLike[str] | None = None,
    env: str | None = PASSWORD_ENV,
    prompt: Callable[[str], str] | None = None,
) -> str:
    """The vault password, from the first source that has one: the file, `$env`
    ($MACHINEROOM_VAULT_PASSWORD), the file named by $ANSIBLE_VAULT_PASSWORD_FILE, a prompt.

    The file's first line is the password (trailing newline and CR removed); an executable
    file is run instead and its first line of output is the password, as Ansible does. A
    plain file that others can read or write is refused, as ssh refuses loose private keys:
    a vault is only as private as its password. `env=None` skips both environment variables
    (for `--ask-vault-password`). With no source at all, a VaultError names the ways to give
    one.
    """
    if password_file is not None:
        return _read_password_file(Path(password_file))
    if env:
        value = os.environ.get(env)
        if value:
            return value
        ansible_file = os.environ.get(ANSIBLE_PASSWORD_FILE_ENV)
        if ansible_file:
            return _read_password_file(Path(ansible_file).expanduser())
    if prompt is not None:
        value = prompt("Vault password")
        if not value:
            raise VaultError("the vault password is empty")
        return value
    raise VaultError(
        "no vault password given; use --vault-password-file FILE, set "
        f"${env or PASSWORD_ENV} or ${ANSIBLE_PASSWORD_FILE_ENV}, or --ask-vault-password"
    )


def _read_password_file(path: Path) -> str:
    try:
        st = path.stat()
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111 and os.access(path, os.X_OK):
            return _run_password_script(path)
        if os.name == "posix" and st.st_mode & 0o007:
            raise VaultError(
                f"vault password file {path} is accessible to other users "
                f"(mode {stat.S_IMODE(st.st_mode):03o}); run: chmod 600 {path}"
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VaultError(f"vault password file {path} does not exist") from None
    except PermissionError:
        raise VaultError(f"vault password file {path}: permission denied") from None
    except UnicodeDecodeError:
        raise VaultError(f"vault password file {path} is not UTF-8 text") from None
    except IsADirectoryError:
        raise VaultError(f"vault password file {path} is a directory") from None
    password = text.split("\n", 1)[0].rstrip("\r")
    if not password:
        raise VaultError(f"vault password file {path} is empty (the first line is the password)")
    return password


def _run_password_script(path: Path) -> str:
    """Ansible's password scripts: an executable file whose stdout is the password."""
    import subprocess

    try:
        result = subprocess.run(
            [str(path.resolve())], capture_output=True, check=False, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VaultError(f"vault password script {path} could not run: {exc}") from None
    if result.returncode != 0:
        raise VaultError(f"vault password script {path} exited with status {result.returncode}")
    try:
        text = result.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise VaultError(f"vault password script {path} printed non-UTF-8 text") from None
    password = text.strip().split("\n", 1)[0].rstrip("\r")
    if not password:
        raise VaultError(f"vault password script {path} printed nothing")
    return password


# --- the password for files read while loading ----------------------------------------------
# A whole-file vault (group_vars/all/vault.yml, vars_files, role vars/) must be decrypted when
# it is loaded, since its variable names are inside. The CLI records where the password comes
# from (its --vault-password-file / --ask-vault-password options) before anything is loaded;
# the key is derived once per process and shared with the lazy decryption of inline values.

_source: dict[str, Any] = {"file": None, "ask": False, "prompt": None, "ids": ()}
_shared: dict[tuple[Any, ...], VaultKey] = {}
_shared_guard = threading.Lock()
_override: list[VaultKey | None] = [None]  # use_key's: wins over every source


def set_password_source(
    password_file: str | os.PathLike[str] | None,
    ask: bool,
    prompt: Callable[[str], str] | None = None,
    vault_ids: Sequence[str] = (),
) -> None:
    """Record this process's password source: the command's options, and how to prompt."""
    _source.update(file=password_file, ask=ask, prompt=prompt, ids=tuple(vault_ids))


def recorded_vault_ids() -> tuple[str, ...]:
    """The --vault-id options this process's command was given."""
    return tuple(_source["ids"])


def shared_key(
    password_file: str | os.PathLike[str] | None = None,
    ask: bool = False,
    prompt: Callable[[str], str] | None = None,
    vault_ids: Sequence[str] = (),
) -> VaultKey:
    """The VaultKey for these sources, read (or asked for) once per process.

    With `vault_ids` (`LABEL@FILE`, `LABEL@prompt`), a ring of one key per id, after the
    key of --vault-password-file / --ask-vault-password when those are given too.
    """
    env = None if ask else PASSWORD_ENV  # asked for a prompt: the prompt wins
    ident = (
        str(password_file) if password_file is not None else None,
        ask,
        os.environ.get(PASSWORD_ENV) if env else None,
        os.environ.get(ANSIBLE_PASSWORD_FILE_ENV) if env else None,
        tuple(vault_ids),
    )
    with _shared_guard:
        key = _override[0] or _shared.get(ident)
        if key is None:
            key = key_for_ids(vault_ids, password_file, ask, prompt)
            _shared[ident] = key
        return key


def loaded_key() -> VaultKey | None:
    """The key this process already read (while loading), if any; never prompts."""
    with _shared_guard:
        return next(iter(_shared.values()), None)


def source_named() -> bool:
    """Whether a vault password source that needs no prompt is named for this process (a
    file, --vault-id, $MACHINEROOM_VAULT_PASSWORD, $ANSIBLE_VAULT_PASSWORD_FILE)."""
    named = _source["file"] or _source["ids"]
    return bool(named or os.environ.get(PASSWORD_ENV) or os.environ.get(ANSIBLE_PASSWORD_FILE_ENV))


def current_key() -> VaultKey:
    """The key of this process's password source (read or asked for once)."""
    return shared_key(_source["file"], bool(_source["ask"]), _source["prompt"], _source["ids"])


def use_key(key: VaultKey) -> None:
    """Make `key` the one every source gives in this process: a cluster worker gets the
    controller's key with the run (it has no password file or terminal of its own)."""
    with _shared_guard:
        _override[0] = key


def key_for_ids(
    vault_ids: Sequence[str],
    password_file: str | os.PathLike[str] | None,
    ask: bool,
    prompt: Callable[[str], str] | None,
) -> VaultKey:
    """The key (or ring of keys) for --vault-id options and the single-password options."""
    env = None if ask else PASSWORD_ENV
    keys: list[VaultKey] = []
    if not vault_ids or password_file is not None or ask:
        ask_prompt = prompt if ask or password_file is None else None
        keys.append(VaultKey(read_vault_password(password_file, env=env, prompt=ask_prompt)))
    for text in vault_ids:
        label, source = parse_vault_id(text)
        if source == "prompt":
            if prompt is None:
                raise VaultError(f"--vault-id {text}: no terminal to ask on")
            password = prompt(f"Vault password ({label})")
            if not password:
                raise VaultError("the vault password is empty")
        else:
            password = read_vault_password(Path(source).expanduser(), env=None)
        keys.append(VaultKey(password, label))
    return keyring(keys)


def open_vault_file(text: str, source: str) -> str:
    """The plaintext of a whole-file vault met while loading `source`; a VaultError names the
    file and the ways to give the password."""
    try:
        key = shared_key(_source["file"], bool(_source["ask"]), _source["prompt"], _source["ids"])
    except VaultError as exc:
        raise VaultError(f"{source} is vault-encrypted: {exc.message}") from None
    except InputError:  # the prompt, without a terminal
        raise VaultError(
            f"{source} is vault-encrypted and no vault password was given; use "
            f"--vault-password-file FILE, set ${PASSWORD_ENV} or ${ANSIBLE_PASSWORD_FILE_ENV}, "
            "or --ask-vault-password on a terminal"
        ) from None
    try:
        plain = key.decrypt_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise VaultError(f"{source}: decrypted data is not UTF-8 text") from None
    except VaultError as exc:
        raise VaultError(f"{source}: {exc.message}") from None
    return plain


def register_secrets(data: object) -> None:
    """Mask every string of 4+ characters found in decrypted data (keys excepted)."""
    SECRETS.add_all(data, min_length=4)


def contains_vault(value: object) -> bool:
    """Whether `value` (a string, or dicts and lists of them) holds vault ciphertext."""
    if isinstance(value, str):
        return is_vault_text(value)
    if isinstance(value, dict):
        return any(contains_vault(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_vault(v) for v in value)
    return False


def decrypt_tree(value: object, decrypt: Callable[[str], str]) -> object:
    """`value` with every vault string inside it replaced by its plain text."""
    if isinstance(value, str):
        return decrypt(value) if is_vault_text(value) else value
    if isinstance(value, dict):
        if not contains_vault(value):
            return value
        return {k: decrypt_tree(v, decrypt) for k, v in value.items()}
    if isinstance(value, list):
        return [decrypt_tree(v, decrypt) for v in value] if contains_vault(value) else value
    return value
