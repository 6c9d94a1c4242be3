"""Bounded capture of what a command prints, and stdin streamed from a local file.

A host may print a gigabyte; the controller keeps the first `head` and the last `tail` bytes
of each stream and counts the rest, so a command's memory cost is fixed whatever it prints.
The kept text says how much is missing, in one line where the gap is:
`[... 104857600 bytes not kept ...]`. Module scripts print small structured reports, well
inside the head, so their markers are always kept.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Protocol

__all__ = [
    "CHUNK",
    "OUTPUT_HEAD",
    "OUTPUT_TAIL",
    "CappedOutput",
    "OutputSink",
    "Stdin",
    "cap_text",
    "count_not_kept",
    "describe_local_error",
    "not_kept",
    "stdin_chunks",
    "stdin_size",
]

# Per stream and command: 256 KiB from the start (module reports are a few KiB: facts 1-2,
# a file's diff at most 64, files_sh.DIFF_LIMIT) and 64 KiB from the end (where errors are).
# Not more: `command` splits stdout into stdout_lines, ~30 bytes of Python per short line, so
# 320 KiB of "y" lines already cost ~10 MB per host. The database keeps 64 KiB of it.
OUTPUT_HEAD = 256 << 10
OUTPUT_TAIL = 64 << 10
# Read and send in pieces of this size: a file on stdin never sits whole in memory.
CHUNK = 256 << 10

# What a command reads on stdin: bytes, or a local file streamed from disk.
Stdin = bytes | os.PathLike[str] | None

_NOT_KEPT = re.compile(r"\[\.\.\. (\d+) bytes not kept \.\.\.\]")


def not_kept(count: int) -> str:
    """The line that stands where `count` bytes of output were dropped."""
    return f"[... {count} bytes not kept ...]"


def count_not_kept(text: str) -> int:
    """Bytes dropped, as said by the `not_kept` lines inside `text`."""
    return sum(int(m.group(1)) for m in _NOT_KEPT.finditer(text))


def cap_text(text: str, limit: int) -> str:
    """`text` in at most about `limit` characters: its head and tail around one `not_kept`
    line counting every byte missing, those cut here and those the connection dropped."""
    if len(text) <= limit:
        return text
    half = max(0, limit - 40) // 2
    cut = text[half : len(text) - half]
    missing = count_not_kept(cut) + len(_NOT_KEPT.sub("", cut).encode())
    return f"{text[:half]}\n{not_kept(missing)}\n{text[len(text) - half :]}"


class OutputSink(Protocol):
    """Where a command's stream goes as it arrives: CappedOutput, or a reader that splits a
    per-host program's output by task as it comes (executor/program.py)."""

    def add(self, data: bytes) -> None:
        """Take the next piece of the stream."""

    def text(self) -> str:
        """What the command's result says the stream was."""
        ...


class CappedOutput:
    """One output stream: the first `head` bytes, the last `tail` bytes, the rest counted."""

    def __init__(self, head: int = OUTPUT_HEAD, tail: int = OUTPUT_TAIL) -> None:
        self.head_limit = head
        self.tail_limit = tail
        self._head = bytearray()
        self._tail = bytearray()
        self.dropped = 0  # bytes neither in the head nor in the tail
        self.total = 0

    def add(self, data: bytes) -> None:
        """Take the next piece of the stream."""
        self.total += len(data)
        room = self.head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        self._tail += data
        excess = len(self._tail) - self.tail_limit
        # Trim in big steps (amortised): the buffer may grow to twice the tail, never more.
        if excess > self.tail_limit or (excess > 0 and len(data) >= self.tail_limit):
            self.dropped += excess
            del self._tail[:excess]

    def text(self) -> str:
        """The kept output as text, with a `not_kept` line where bytes were dropped."""
        excess = max(0, len(self._tail) - self.tail_limit)
        dropped = self.dropped + excess
        tail = bytes(self._tail[excess:])
        if not dropped:
            return (bytes(self._head) + tail).decode("utf-8", errors="replace")
        head = self._head.decode("utf-8", errors="replace")
        rest = tail.decode("utf-8", errors="replace")
        return f"{head}\n{not_kept(dropped)}\n{rest}"


def stdin_size(stdin: Stdin) -> int:
    """How many bytes `stdin` holds (a file's size on disk)."""
    if stdin is None:
        return 0
    if isinstance(stdin, bytes):
        return len(stdin)
    return os.stat(stdin).st_size


def stdin_chunks(prefix: bytes, stdin: Stdin) -> Generator[bytes, None, None]:
    """`prefix` (a sudo password line), then the stdin, in pieces of at most CHUNK bytes."""
    if prefix:
        yield prefix
    if stdin is None:
        return
    if isinstance(stdin, bytes):
        view = memoryview(stdin)
        for at in range(0, len(view), CHUNK):
            yield bytes(view[at : at + CHUNK])
        return
    with Path(stdin).open("rb") as f:
        while piece := f.read(CHUNK):
            yield piece


def pump(prefix: bytes, stdin: Stdin, write: Callable[[bytes], object]) -> OSError | None:
    """Write `prefix` then `stdin` with `write`, piece by piece. Returns the error that reading
    a local stdin file met (the command then gets no EOF: its caller fails it), or None;
    errors of `write` (the command went away) are the caller's."""
    chunks = stdin_chunks(prefix, stdin)
    try:
        while True:
            try:
                piece = next(chunks, None)
            except OSError as e:
                return e
            if piece is None:
                return None
            write(piece)
    finally:
        chunks.close()


def describe_local_error(stdin: Stdin, error: OSError) -> str:
    """A one-line reason for a local stdin file that could not be read."""
    name = os.fspath(stdin) if isinstance(stdin, os.PathLike) else "stdin"
    return f"cannot read {name}: {error.strerror or error}"
