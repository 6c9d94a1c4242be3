"""ansible-vault's format (1.1, and 1.2 with a vault-id label), read and written.

    $ANSIBLE_VAULT;1.1;AES256            or  $ANSIBLE_VAULT;1.2;AES256;LABEL
    <hex of: hex(salt) \\n hex(hmac) \\n hex(ciphertext), wrapped at 80 columns>

PBKDF2-HMAC-SHA256 (10000 iterations, 32-byte salt) turns the password into 80 bytes: an
AES-256-CTR key, an HMAC-SHA256 key and the 16-byte counter block. The plaintext is PKCS#7
padded to 16 bytes before encryption; the HMAC covers the ciphertext and is checked (in
constant time) before anything is decrypted. Used through `machineroom.vault.VaultKey`, which
picks this format or ours from the header, so every place that takes a vault value takes both.
"""

from __future__ import annotations

import binascii
import os
import threading

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from machineroom.errors import VaultError

ANSIBLE_PREFIX = "$ANSIBLE_VAULT;"
ANSIBLE_HEADER = "$ANSIBLE_VAULT;1.1;AES256"
ITERATIONS = 10000
SALT_SIZE = 32
WRAP = 80
_KEY_SIZE = 32
_IV_SIZE = 16

WRONG_PASSWORD = "cannot decrypt: wrong vault password or damaged data"


def is_ansible_vault_text(text: str) -> bool:
    """True when `text` (ignoring leading whitespace) starts with ansible-vault's header."""
    return text.lstrip().startswith(ANSIBLE_PREFIX)


def ansible_vault_label(text: str) -> str | None:
    """The vault-id label a 1.2 header names (`$ANSIBLE_VAULT;1.2;AES256;prod` -> prod)."""
    fields = text.lstrip().partition("\n")[0].strip().split(";")
    return fields[3] if len(fields) > 3 and fields[0] == "$ANSIBLE_VAULT" else None


class AnsibleKeys:
    """PBKDF2 keys derived from one password, cached per salt (each costs ~10 ms)."""

    def __init__(self, password: bytes) -> None:
        self._password = password
        self._cache: dict[bytes, tuple[bytes, bytes, bytes]] = {}
        self._guard = threading.Lock()

    def derive(self, salt: bytes) -> tuple[bytes, bytes, bytes]:
        """(AES key, HMAC key, IV) for `salt`."""
        with self._guard:
            found = self._cache.get(salt)
        if found is not None:
            return found
        kdf = PBKDF2HMAC(
            algorithm=hashes.SHA256(),
            length=2 * _KEY_SIZE + _IV_SIZE,
            salt=salt,
            iterations=ITERATIONS,
        )
        raw = kdf.derive(self._password)
        keys = (raw[:_KEY_SIZE], raw[_KEY_SIZE : 2 * _KEY_SIZE], raw[2 * _KEY_SIZE :])
        with self._guard:
            self._cache[salt] = keys
        return keys

    def encrypt(self, plain: bytes, label: str | None = None) -> str:
        """ansible-vault text for `plain` (1.1, or 1.2 with `label`), with a fresh salt."""
        salt = os.urandom(SALT_SIZE)
        aes_key, hmac_key, iv = _fresh(self._password, salt)
        padder = padding.PKCS7(algorithms.AES.block_size).padder()
        padded = padder.update(plain) + padder.finalize()
        encryptor = Cipher(algorithms.AES(aes_key), modes.CTR(iv)).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        mac = HMAC(hmac_key, hashes.SHA256())
        mac.update(ciphertext)
        inner = b"\n".join(binascii.hexlify(part) for part in (salt, mac.finalize(), ciphertext))
        payload = binascii.hexlify(inner).decode("ascii")
        header = f"$ANSIBLE_VAULT;1.2;AES256;{label}" if label else ANSIBLE_HEADER
        lines = [payload[i : i + WRAP] for i in range(0, len(payload), WRAP)]
        return "\n".join([header, *lines]) + "\n"

    def decrypt(self, text: str) -> bytes:
        """The plaintext of ansible-vault text; VaultError on a wrong password or damage."""
        salt, expected_mac, ciphertext = parse(text)
        aes_key, hmac_key, iv = self.derive(salt)
        mac = HMAC(hmac_key, hashes.SHA256())
        mac.update(ciphertext)
        try:
            mac.verify(expected_mac)  # constant time, before any decryption
        except InvalidSignature:
            raise VaultError(WRONG_PASSWORD) from None
        decryptor = Cipher(algorithms.AES(aes_key), modes.CTR(iv)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise _damaged("bad padding") from None


def _fresh(password: bytes, salt: bytes) -> tuple[bytes, bytes, bytes]:
    # Encryption keys are never cached: nothing will decrypt with this salt in this process.
    return AnsibleKeys(password).derive(salt)


def _damaged(detail: str) -> VaultError:
    return VaultError(f"cannot decrypt: damaged ansible-vault data ({detail})")


def parse(text: str) -> tuple[bytes, bytes, bytes]:
    """(salt, HMAC, ciphertext) of ansible-vault text, after checking its header."""
    stripped = text.strip()
    first, _, rest = stripped.partition("\n")
    fields = first.strip().split(";")
    if fields[0] != "$ANSIBLE_VAULT" or len(fields) < 3:
        raise VaultError(f"not ansible-vault data: it does not start with {ANSIBLE_PREFIX}")
    if fields[1] not in ("1.1", "1.2") or (fields[1] == "1.1" and len(fields) != 3):
        raise VaultError(
            f"unsupported ansible-vault format '{first.strip()[:60]}'; "
            "expected $ANSIBLE_VAULT;1.1;AES256 or $ANSIBLE_VAULT;1.2;AES256;LABEL"
        )
    if fields[2].strip() != "AES256":
        raise VaultError(f"unsupported ansible-vault cipher '{fields[2][:20]}'; expected AES256")
    # Inline values in YAML block scalars carry indentation; editors may add CRs.
    compact = "".join(rest.split())
    try:
        inner = binascii.unhexlify(compact)
        salt_hex, mac_hex, cipher_hex = inner.split(b"\n", 2)
        salt = binascii.unhexlify(salt_hex)
        mac = binascii.unhexlify(mac_hex)
        ciphertext = binascii.unhexlify(cipher_hex)
    except (binascii.Error, ValueError):
        raise _damaged("not valid hex") from None
    if not salt or len(mac) != 32 or not ciphertext or len(ciphertext) % 16:
        raise _damaged("wrong lengths")
    return salt, mac, ciphertext
