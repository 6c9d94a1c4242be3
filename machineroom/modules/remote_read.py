"""Reading a whole file from the host, for the modules that need its bytes here (slurp, fetch,
replace): a conversation of as many round trips as the file needs.

The connection keeps 256 KiB of a command's output (connection/output.py), so the file comes
in base64 pieces of `CHUNK` bytes (192 KiB of text), one command each. The first command also
says what the path is (missing, a folder, unreadable), its size and SHA-1; the pieces put
together must have that SHA-1, or the file changed while it was read and the read fails.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Generator
from dataclasses import dataclass

from machineroom.modules.base import CommandOutput, RemoteStep, quote
from machineroom.modules.files_sh import FAIL_MARKER, parse_report

# Raw bytes per round trip: their base64 (4/3, with newlines) stays inside the kept head.
CHUNK = 144 * 1024
DATA_MARKER = "@@machineroom-data@@"

# $p: the path. Prints key=value lines, the marker, then the first piece in base64.
FIRST = r"""set -f
mr_fail() { printf '%s%s\n' "$FAIL_MARKER" "$*" >&2; exit 1; }
if [ ! -e "$p" ]; then echo exists=0; exit 0; fi
echo exists=1
if [ -d "$p" ]; then echo isdir=1; exit 0; fi
[ -r "$p" ] || mr_fail "$p is not readable"
stat -L -c 'size=%s
mode=%a
owner=%U
group=%G' -- "$p" || mr_fail "cannot stat $p"
sum=$(sha1sum < "$p") || mr_fail "cannot read $p"
printf 'sha1=%s\n%s\n' "${sum%% *}" "$DATA_MARKER"
[ "${sum%% *}" != "$known" ] || exit 0
head -c "$chunk" < "$p" | base64
"""
# $p, $offset: one more piece.
NEXT = r"""tail -c +$((offset + 1)) < "$p" | head -c "$chunk" | base64"""


@dataclass(frozen=True)
class RemoteFile:
    """What the host said about a path, and its bytes when it is a readable file."""

    path: str
    exists: bool
    isdir: bool = False
    data: bytes = b""
    sha1: str = ""
    mode: str = ""
    owner: str = ""
    group: str = ""
    error: str = ""  # why it could not be read (then `data` is empty)
    known: bool = False  # its SHA-1 was the one the caller knew: `data` was not sent


ReadFile = Generator[RemoteStep, CommandOutput, RemoteFile]


def read_remote_file(path: str, known_sha1: str = "") -> ReadFile:
    """The conversation that reads `path` (following links); `yield from` it in a module's
    `converse()`. When the file's SHA-1 is `known_sha1`, its bytes are not sent (fetch)."""
    settings = (
        f"p={quote(path)} chunk={CHUNK} known={quote(known_sha1)} "
        f"FAIL_MARKER={quote(FAIL_MARKER)} "
        f"DATA_MARKER={quote(DATA_MARKER)}\n"
    )
    output = yield RemoteStep(settings + FIRST)
    if output.exit_code != 0:
        return RemoteFile(path, exists=True, error=_error(output))
    head, _, text = output.stdout.partition(DATA_MARKER + "\n")
    report, _ = parse_report(head)
    if report.get("exists") != "1":
        return RemoteFile(path, exists=False)
    if report.get("isdir") == "1":
        return RemoteFile(path, exists=True, isdir=True)
    size = int(report.get("size", "0"))
    sha1 = report.get("sha1", "")
    if known_sha1 and sha1 == known_sha1:
        return RemoteFile(path, exists=True, sha1=sha1, known=True)
    pieces = [base64.b64decode(text)]
    got = len(pieces[0])
    while got < size:
        output = yield RemoteStep(settings + f"offset={got}\n" + NEXT)
        piece = base64.b64decode(output.stdout)
        if output.exit_code != 0 or not piece:
            return RemoteFile(path, exists=True, error=_error(output) or f"{path} got shorter")
        pieces.append(piece)
        got += len(piece)
    data = b"".join(pieces)
    if hashlib.sha1(data).hexdigest() != sha1:
        return RemoteFile(path, exists=True, error=f"{path} changed while it was read")
    return RemoteFile(
        path,
        exists=True,
        data=data,
        sha1=sha1,
        mode=report.get("mode", ""),
        owner=report.get("owner", ""),
        group=report.get("group", ""),
    )


def _error(output: CommandOutput) -> str:
    err = output.stderr
    at = err.rfind(FAIL_MARKER)
    if at >= 0:
        return err[at + len(FAIL_MARKER) :].strip()
    lines = [line for line in err.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {output.exit_code}"
