"""Secrets by value: every secret this process learns is replaced by `***` wherever it leaves.

One registry per process (`SECRETS`), because a secret must not leave through any path: the
state database, the console at any verbosity, `--json`, error messages, crash logs and
notifier payloads, including paths that are never handed a run object (a crash log, an
exception's message). Values are registered where they enter: a password revealed
(`Secret.reveal`), a vault value decrypted (`VaultKey`), `-e` values whose names say they are
secret, what a `no_log` task produced. Masking is by value, so a secret is hidden whatever
printed it: a command's output, a `debug` message, a template's diff.

Common derived forms are masked too: upper/lower case, base64 (with and without padding, with
the newline `echo` adds), URL and shell quoting, JSON and Python escaping. Derived forms are
only made for values of `DERIVED_MIN` characters or more: the base64 of a two-letter value
would hide unrelated text everywhere.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shlex
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

MASK = "***"
DERIVED_MIN = 4  # characters a secret needs before its derived forms are masked too

# Parts of a variable name that say its value is a secret (`db_password`, `apiToken`,
# `ssh-key`, `AWS_SECRET_ACCESS_KEY`).
_SECRET_PARTS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pw",
        "pwd",
        "passphrase",
        "secret",
        "token",
        "key",
        "apikey",
        "credential",
        "credentials",
        "auth",
    }
)
_NAME_PARTS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def is_secret_name(name: str) -> bool:
    """Whether a variable's name says its value is a secret (`db_password`, `api-token`)."""
    return any(part.lower() in _SECRET_PARTS for part in _NAME_PARTS.findall(name))


def derived_forms(value: str) -> set[str]:
    """The value and the forms a template filter or a shell commonly turns it into."""
    forms = {value}
    if len(value) < DERIVED_MIN:
        return forms
    forms |= {value.upper(), value.lower(), value.swapcase(), value.capitalize(), value.title()}
    raw = value.encode("utf-8")
    for data in (raw, raw + b"\n"):
        for encoded in (base64.b64encode(data), base64.urlsafe_b64encode(data)):
            text = encoded.decode("ascii")
            forms |= {text, text.rstrip("=")}
    forms |= {
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote(value),
        urllib.parse.quote_plus(value),
        shlex.quote(value),
        value.replace("'", "'\"'\"'"),
        value.replace("'", "'\\''"),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        raw.hex(),
    }
    return {form for form in forms if form}


class SecretRegistry:
    """The secret values known so far and their derived forms; thread-safe.

    `text()` and `data()` replace each with `***`, longest first, so a secret containing
    another is masked whole.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: object) -> None:
        """Register a secret (a non-empty string; anything else is ignored)."""
        if not isinstance(value, str) or not value or value == MASK:
            return
        with self._lock:
            if value in self._values:
                return
            self._values.add(value)
            # A multi-line secret (a key file) is also masked line by line: output is often
            # split into lines before it is shown.
            lines = [line for line in value.splitlines() if len(line) >= DERIVED_MIN]
            for part in (value, *(lines if len(lines) > 1 else ())):
                self._forms |= derived_forms(part)
            self._pattern = None

    def add_all(self, value: object, *, min_length: int = 1) -> None:
        """Register every string inside `value` (dicts, lists) of `min_length` or more."""
        if isinstance(value, str):
            if len(value) >= min_length:
                self.add(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                self.add_all(item, min_length=min_length)
        elif isinstance(value, list | tuple):
            for item in value:
                self.add_all(item, min_length=min_length)

    def __len__(self) -> int:
        return len(self._values)

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._forms:
                self._pattern = re.compile(_trie_pattern(self._forms))
            return self._pattern

    def text(self, value: str) -> str:
        """`value` with every secret form replaced by `***`."""
        pattern = self._compiled()
        if pattern is None or not value:
            return value
        return pattern.sub(MASK, value)

    def data(self, value: Any) -> Any:
        """Mask strings inside dicts, lists and tuples (keys too), before JSON encoding: a
        secret holding a quote or backslash would no longer match once escaped."""
        if self._compiled() is None:
            return value
        return self._data(value)

    def _data(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self._data(k): self._data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._data(item) for item in value]
        return value

    def event(self, event: Any) -> Any:
        """A frozen dataclass (a run event) with every text field masked."""
        if (
            self._compiled() is None
            or not dataclasses.is_dataclass(event)
            or isinstance(event, type)
        ):
            return event
        changes = {}
        for f in dataclasses.fields(event):
            value = getattr(event, f.name)
            if isinstance(value, str | Mapping | list):
                masked = self._data(value)
                if masked != value:
                    changes[f.name] = masked
        return dataclasses.replace(event, **changes) if changes else event

    def clear(self) -> None:
        """Forget every secret (tests that reuse one process)."""
        with self._lock:
            self._values.clear()
            self._forms.clear()
            self._pattern = None


def _trie_pattern(words: set[str]) -> str:
    """One regex matching any of `words`, longest first, shaped as a trie: at each position
    the engine follows one branch by its next character instead of trying every word
    (7x faster than a flat alternation for 50 secrets in their derived forms)."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # a word ends here

    def build(node: dict[str, Any]) -> str:
        parts = []
        # Follow a chain of single children in a loop: a long secret (a key file) must not
        # cost a recursion level per character.
        while len(node) == 1 and "" not in node:
            ((char, node),) = node.items()
            parts.append(re.escape(char))
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if branches:
            group = "(?:" + "|".join(branches) + ")"
            parts.append(group + "?" if "" in node else group)  # greedy: the longer word wins
        return "".join(parts)

    return build(trie)


SECRETS = SecretRegistry()


def add_secret(value: object) -> None:
    """Register a secret with the process's registry."""
    SECRETS.add(value)


def mask(text: str) -> str:
    """`text` with every secret this process knows replaced by `***`."""
    return SECRETS.text(text)


def mask_data(value: Any) -> Any:
    """Strings inside `value` (dicts, lists) masked."""
    return SECRETS.data(value)


class MaskingWriter:
    """A text stream whose every write is masked: the last guard on stdout and stderr, for
    whatever text is printed without passing through a masked event or record.

    Bytes written to `.buffer` pass unmasked (on purpose: `vault view` prints plaintext the
    user asked for).
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: Any) -> int:
        """Write `text` with its secrets masked; returns the length of `text` as given."""
        if isinstance(text, str):
            self._stream.write(SECRETS.text(text))
            return len(text)
        return int(self._stream.write(text))  # bytes: the stream's own TypeError

    def writelines(self, lines: Any) -> None:
        """Write each line, masked."""
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
