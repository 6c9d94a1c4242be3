"""Secrets by value: every secret this process learns is replaced by `***` wherever it leaves.

One registry per process (`SECRETS`), because a secret must not leave through any path: the
state database, the console at any verbosity, `--json`, error messages, crash logs and
notifier payloads, including paths that are never handed a run object (a crash log, an
exception's message). Values are registered where they enter: a password revealed
(`Secret.reveal`), a vault value decrypted (`VaultKey`), `-e` values whose names say they are
secret, what a `no_log` task produced. Masking is by value, so a secret is hidden whatever
printed it: a command's output, a `debug` message, a template's diff.

Common derived forms are masked too: upper/lower case, base64 (with and without padding, with
the newline `echo` adds), URL and shell quoting, JSON and Python escaping.

Masking by value hides every occurrence of the value, so a short one would hide ordinary text
(a password `ok` in every status word, a host id the recorder needs). Hence the lengths: a
secret of fewer than `MIN_SECRET` characters is not registered (it protects nothing anyway);
values only inferred to be secret (from a variable's name, from a `no_log` task's output) need
`MIN_INFERRED`; and the last guard on stdout/stderr, which sees finished text such as JSON
documents and our own recap, masks only forms of `GUARD_MIN` characters or more: the
structured paths (events, the database, JSON data before it is encoded) mask everything.
Identity fields of events (host, task id, stage, status) are never masked: they are keys.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shlex
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

MASK = "***"
MIN_SECRET = 4  # characters a value needs to be registered at all
MIN_INFERRED = 6  # ... when it is only inferred to be secret (a name, no_log output)
DERIVED_MIN = 4  # characters a secret needs before its derived forms are masked too
GUARD_MIN = 8  # characters a form needs to be masked in finished stdout/stderr text
# Event fields that identify rather than describe: masking them would break the records.
IDENTITY_FIELDS = frozenset({"host", "hosts", "task_id", "stage", "status", "run_id"})

# Parts of a variable name that say its value is a secret wherever they stand
# (`db_password`, `apiToken`, `AWS_SECRET_ACCESS_KEY`) ...
_SECRET_PARTS = frozenset(
    {"password", "passwd", "passphrase", "secret", "token", "apikey", "credential", "credentials"}
)
# ... and parts that do only as the name's last part (`db_pass`, `ssh_key`, `basic_auth`, but
# not `pass_through`, `key_name`, `auth_enabled`, `pw_min`).
_SECRET_ENDINGS = frozenset({"pass", "pw", "pwd", "key", "auth"})
_NAME_PARTS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def is_secret_name(name: str) -> bool:
    """Whether a variable's name says its value is a secret (`db_password`, `api-token`,
    `ssh_key`)."""
    parts = [part.lower() for part in _NAME_PARTS.findall(name)]
    return bool(parts) and (
        any(part in _SECRET_PARTS for part in parts) or parts[-1] in _SECRET_ENDINGS
    )


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
        self._guard: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        # called with each new secret (a cluster worker passes them on to the controller)
        self._listeners: list[Callable[[str], None]] = []

    def listen(self, listener: Callable[[str], None]) -> None:
        """Call `listener` with every secret registered from now on."""
        with self._lock:
            self._listeners.append(listener)

    def unlisten(self, listener: Callable[[str], None]) -> None:
        """Stop calling `listener`."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def add(self, value: object) -> None:
        """Register a secret: a string of MIN_SECRET characters or more (anything else is
        ignored)."""
        if not isinstance(value, str) or len(value) < MIN_SECRET or value == MASK:
            return
        with self._lock:
            if value in self._values:
                return
            listeners = list(self._listeners)
            self._values.add(value)
            # A multi-line secret (a key file) is also masked line by line: output is often
            # split into lines before it is shown.
            lines = [line for line in value.splitlines() if len(line) >= DERIVED_MIN]
            for part in (value, *(lines if len(lines) > 1 else ())):
                self._forms |= derived_forms(part)
            self._pattern = self._guard = None
        for listener in listeners:
            listener(value)

    def add_all(self, value: object, *, min_length: int = MIN_SECRET) -> None:
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

    def values(self) -> tuple[str, ...]:
        """The registered secrets (a cluster run's workers mask the same ones)."""
        with self._lock:
            return tuple(sorted(self._values))

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

    def guard_text(self, value: str) -> str:
        """`value` with the secret forms of GUARD_MIN characters or more replaced: for
        finished text (a JSON document, a recap), where a short form could match a number
        or a word of ours."""
        with self._lock:
            if self._guard is None and self._forms:
                long_forms = {form for form in self._forms if len(form) >= GUARD_MIN}
                self._guard = re.compile(_trie_pattern(long_forms)) if long_forms else None
            pattern = self._guard
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
            if f.name in IDENTITY_FIELDS:
                continue
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
            self._pattern = self._guard = None


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
    """A text stream whose every write is masked (forms of GUARD_MIN characters or more):
    the last guard on stdout and stderr, for whatever text is printed without passing through
    a masked event, record or `mask()` call.

    Bytes written to `.buffer` pass unmasked (on purpose: `vault view` prints plaintext the
    user asked for).
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: Any) -> int:
        """Write `text` with its secrets masked; returns the length of `text` as given."""
        if isinstance(text, str):
            self._stream.write(SECRETS.guard_text(text))
            return len(text)
        return int(self._stream.write(text))  # bytes: the stream's own TypeError

    def writelines(self, lines: Any) -> None:
        """Write each line, masked."""
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
