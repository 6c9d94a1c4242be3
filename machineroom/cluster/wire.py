"""What crosses between the controller and the workers during a cluster run, and how.

Three kinds of Dask queue, named after the run's random token:
- `mr-TOKEN-up`: every worker -> the controller: events, audited commands, Coordinator calls
  (workers/controller both only ever append; the controller is the only reader, so one
  worker's messages arrive in the order it sent them);
- `mr-TOKEN-shard-N`: the controller -> shard N: replies to its calls, `stop`, `abort`.
Messages are pickled lists (a sender thread sends what piled up as one batch).

A shard's payload and result (hosts' states, the inventory, the vault key, passwords) are
pickled and sealed with the run's own Fernet key, which travels only inside the payload: a
worker that spills memory to disk writes ciphertext, and Dask's logs show `<sealed>`.
"""

from __future__ import annotations

import copyreg
import pickle
import queue
import threading
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

SEND_BATCH = 2000  # most messages in one queue item
# messages waiting to be sent before a sender makes its callers wait: walkers slow down
# rather than a worker's memory growing while the scheduler is slower than they are
SEND_BACKLOG = 20000


def _read_only(values: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(values)


# the read-only mappings our models hold pickle as plain dicts turned read-only again
copyreg.pickle(MappingProxyType, lambda m: (_read_only, (dict(m),)))


def up_queue_name(token: str) -> str:
    """The queue every worker of run `token` sends to."""
    return f"mr-{token}-up"


def shard_queue_name(token: str, number: int) -> str:
    """The queue the controller sends shard `number` of run `token` on."""
    return f"mr-{token}-shard-{number}"


def dumps(value: Any) -> bytes:
    """`value` as bytes for a queue or a sealed payload."""
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Any:
    """What `dumps` made (only ever from the run's own cluster: TLS-authenticated peers)."""
    return pickle.loads(data)


class Sealed:
    """Bytes encrypted with the run's key; its repr shows nothing of them."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"<sealed {len(self.data)} bytes>"


def seal(value: Any, key: bytes) -> Sealed:
    """`value` pickled and encrypted with Fernet `key`."""
    from cryptography.fernet import Fernet

    return Sealed(Fernet(key).encrypt(dumps(value)))


def unseal(sealed: Sealed, key: bytes) -> Any:
    """What `seal` sealed."""
    from cryptography.fernet import Fernet

    return loads(Fernet(key).decrypt(sealed.data))


class Sender:
    """A worker's messages to the controller, sent in order by one thread: each queue item is
    everything that piled up since the last (an idle sender sends a message at once)."""

    def __init__(self, put: Callable[[bytes], None]) -> None:
        self._put = put
        self._pending: queue.Queue[Any] = queue.Queue(maxsize=SEND_BACKLOG)
        self._thread = threading.Thread(target=self._work, name="mr-sender", daemon=True)
        self.failure: BaseException | None = None
        # called once when a send fails: the shard stops (its calls would wait for ever)
        self.on_failure: Callable[[], object] | None = None
        self._thread.start()

    def send(self, message: tuple[Any, ...]) -> None:
        """Queue one message (thread-safe; waits while SEND_BACKLOG messages are queued)."""
        self._pending.put(message)

    def close(self) -> None:
        """Send what is left, then stop the thread."""
        self._pending.put(None)
        self._thread.join()

    def _work(self) -> None:
        closing = False
        while not closing:
            batch = [self._pending.get()]
            while len(batch) < SEND_BATCH:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is None or None in batch:
                closing = True
                batch = [m for m in batch if m is not None]
            if batch and self.failure is None:
                try:
                    self._put(dumps(batch))
                except Exception as exc:
                    self.failure = exc
                    if self.on_failure is not None:
                        self.on_failure()
