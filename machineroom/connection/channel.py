"""One command's SSH channel: stdin streamed in, output captured in bounded memory, and a
close that never lets our messages reach the server after the channel is gone.

Why the close is ours (issue 10, item 9): paramiko answers the server's CHANNEL_CLOSE from
its transport thread at once, while the thread running the command may still be sending an
EOF, a piece of stdin or a window adjustment it decided on a moment earlier (paramiko builds
these under the channel's lock but sends them after releasing it). When our CLOSE overtakes
such a message on the wire, OpenSSH has already freed the channel and drops the whole
connection ("ieof packet referred to nonexistent channel 3"), killing every other command
on it; the pool then opened a second connection to the host. On a busy machine the window is
wide enough to hit. So for the channels we open, the server's CLOSE only marks the channel
closed; `release()` sends our CLOSE once nothing else of ours can follow it.
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from typing import Any

import paramiko
from paramiko.common import MSG_CHANNEL_CLOSE, cMSG_CHANNEL_CLOSE
from paramiko.message import Message

from machineroom.connection.output import OutputSink, Stdin, pump, stdin_size

__all__ = ["Feeder", "TimedOut", "collect", "guard_closes", "own", "release", "send_stdin"]

# paramiko's channels and transports are typed Any here: the close protocol below uses their
# private parts (_set_closed, _unlink_channel, _send_user_message, the handler table).

_READ_SIZE = 65536
# stdin up to this size fits in the server's channel window (OpenSSH: 2 MB), so it is sent
# before reading; bigger input (or a file) goes from a thread, so that a command that prints
# a lot before it has read all of its input cannot deadlock with us.
_INLINE_STDIN = 1 << 20

_OWNED = "_machineroom_owned"
_PEER_CLOSED = "_machineroom_peer_closed"
_RELEASED = "_machineroom_released"


class TimedOut(Exception):
    """The command's deadline passed while it ran."""


def guard_closes(transport: Any) -> None:
    """Make the server's CLOSE of a channel we own wait for `release()` to be answered."""
    table = dict(transport._channel_handler_table)
    answer_at_once = table[MSG_CHANNEL_CLOSE]

    def on_close(chan: Any, m: Message) -> None:
        if not getattr(chan, _OWNED, False):
            answer_at_once(chan, m)  # a jump host's tunnel and the like: paramiko's way
            return
        with chan.lock:
            setattr(chan, _PEER_CLOSED, True)
            released = getattr(chan, _RELEASED, False)
            if not chan.closed:
                chan._set_closed()  # wakes readers; nothing is sent from this thread
        if released:
            transport._unlink_channel(chan.chanid)

    # An instance attribute: this transport only, paramiko's class table is left alone.
    transport._channel_handler_table = {**table, MSG_CHANNEL_CLOSE: on_close}


def own(chan: Any) -> Any:
    """Mark a freshly opened session channel as closed by `release()` (see `guard_closes`)."""
    setattr(chan, _OWNED, True)
    return chan


def release(chan: Any, feeder: Feeder | None) -> None:
    """Close the channel: stop our senders, wait for them, then send CLOSE last (once)."""
    with chan.lock:
        if getattr(chan, _RELEASED, False):
            return
        if not chan.closed:
            chan._set_closed()  # the feeder's next send fails, a blocked one wakes up
    if feeder is not None:
        feeder.join()
    if not getattr(chan, _OWNED, False):
        return
    with chan.lock:
        setattr(chan, _RELEASED, True)
        peer_closed = getattr(chan, _PEER_CLOSED, False)
    transport = chan.transport
    if transport is None:
        return
    m = Message()
    m.add_byte(cMSG_CHANNEL_CLOSE)
    m.add_int(chan.remote_chanid)
    # A dead transport drops the message; a stuck key exchange raises: the session is gone.
    with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
        transport._send_user_message(m)
    if peer_closed:
        transport._unlink_channel(chan.chanid)


class Feeder:
    """Sends stdin (a sudo password prefix first) then EOF, inline or from a thread."""

    def __init__(self, chan: paramiko.Channel, prefix: bytes, stdin: Stdin) -> None:
        self.chan = chan
        self.prefix = prefix
        self.stdin = stdin
        self.local_error: OSError | None = None  # reading the local file failed
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Send now when the input is small, else start the sending thread."""
        small = isinstance(self.stdin, bytes | None)
        if small and len(self.prefix) + stdin_size(self.stdin) <= _INLINE_STDIN:
            self._send()
            return
        self._thread = threading.Thread(target=self._send, name="machineroom-stdin", daemon=True)
        self._thread.start()

    def join(self) -> None:
        """Wait for the sending thread, if any."""
        if self._thread is not None:
            self._thread.join()

    def _send(self) -> None:
        try:
            self.local_error = pump(self.prefix, self.stdin, self.chan.sendall)
            if self.local_error is None:
                self.chan.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the command exited without reading it all; its exit code says why


def send_stdin(chan: paramiko.Channel, prefix: bytes, stdin: Stdin) -> Feeder:
    """Start sending `prefix` + `stdin` then EOF on `chan`."""
    feeder = Feeder(chan, prefix, stdin)
    feeder.start()
    return feeder


def collect(
    chan: paramiko.Channel, deadline: float | None, out: OutputSink, err: OutputSink
) -> int:
    """Read stdout and stderr into `out` and `err` until EOF and the exit status; the code."""
    fd = chan.fileno()  # a pipe paramiko sets whenever either stream has data or closes
    while True:
        if chan.recv_ready():
            out.add(chan.recv(_READ_SIZE))
            continue
        if chan.recv_stderr_ready():
            err.add(chan.recv_stderr(_READ_SIZE))
            continue
        if chan.eof_received or chan.closed:
            break
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            raise TimedOut
        wait_readable(fd, wait)
    # OpenSSH sends EOF, then exit-status, then close: wait for the status, not the close.
    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
    if not chan.status_event.wait(wait):
        raise TimedOut
    # Data can still sit in the buffers when the channel closed (not via EOF).
    while chan.recv_ready():
        out.add(chan.recv(_READ_SIZE))
    while chan.recv_stderr_ready():
        err.add(chan.recv_stderr(_READ_SIZE))
    return int(chan.exit_status)


def wait_readable(fd: int, timeout: float | None) -> bool:
    """Wait until `fd` has data (or EOF), at most `timeout` seconds; True when it has.
    poll, not select: a controller with hundreds of hosts holds file descriptors past 1024,
    which select cannot take."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    wait_ms = None if timeout is None else max(0, int(timeout * 1000) + 1)
    return bool(poller.poll(wait_ms))
