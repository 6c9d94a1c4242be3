"""`--json`: one JSON document on stdout when the run ends, and nothing else there.

The document (see docs/output.md):

```
{"run_id": 12, "playbook": "site.yml", "status": "failed", "check": false, "duration": 4.2,
 "plays": [{"name": "site", "hosts": ["web1"]}],
 "stats": {"web1": {"ok": 3, "changed": 1, ...}},
 "hosts": {"web1": {"status": "failed", "stage": "docker", "task_id": "...", "reason": "...",
                    "tasks": [{"task_id": ..., "task": ..., "stage": ..., "status": ...,
                               "duration": ..., "msg": ..., "diff": ..., "stdout": ...,
                               "stderr": ..., "location": ..., "ignored": false,
                               "items": [{"item": "nginx", "status": ..., ...}]}]}}}
```
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any, TextIO

from machineroom.events import (
    Event,
    HostFinished,
    HostStats,
    PlayStarted,
    RunFinished,
    RunStarted,
    TaskFinished,
)


class JsonReporter:
    """Collects every result and writes one JSON document at RunFinished (or at `close()`,
    with status `interrupted`, if the run never finished).

    Subscribe the instance (`bus.subscribe(reporter)`); no other reporter may write to the
    same stream.
    """

    def __init__(self, stream: TextIO | None = None, *, indent: int | None = 2) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.indent = indent
        self.written = False
        self._doc: dict[str, Any] = {
            "run_id": None,
            "playbook": None,
            "status": None,
            "check": False,
            "duration": None,
            "plays": [],
            "stats": {},
            "hosts": {},
        }
        self._items: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._stats: dict[str, HostStats] = {}

    def _host(self, host: str) -> dict[str, Any]:
        hosts: dict[str, dict[str, Any]] = self._doc["hosts"]
        return hosts.setdefault(
            host, {"status": None, "stage": None, "task_id": None, "reason": "", "tasks": []}
        )

    def __call__(self, event: Event) -> None:
        """Collect `event`; at RunFinished write the document."""
        if isinstance(event, RunStarted):
            self._doc.update(run_id=event.run_id, playbook=event.playbook, check=event.check)
            for host in event.hosts:
                self._host(host)
        elif isinstance(event, PlayStarted):
            self._doc["plays"].append({"name": event.name, "hosts": list(event.hosts)})
            for host in event.hosts:
                self._host(host)
        elif isinstance(event, TaskFinished):
            self._task(event)
        elif isinstance(event, HostFinished):
            entry = self._host(event.host)
            entry.update(
                status=event.status, stage=event.stage, task_id=event.task_id, reason=event.reason
            )
        elif isinstance(event, RunFinished):
            self._doc.update(
                run_id=event.run_id if event.run_id is not None else self._doc["run_id"],
                status=event.status,
                duration=round(event.duration, 3),
                check=event.check or self._doc["check"],
            )
            self._stats = dict(event.stats)
            self.write()

    def _task(self, event: TaskFinished) -> None:
        key = (event.host, event.task_id)
        record = task_json(event)
        if event.item is not None:
            record = {"item": event.item, **record}
            for name in ("task_id", "task", "stage", "location"):
                del record[name]  # the same as their task's
            self._items.setdefault(key, []).append(record)
            return
        self._stats.setdefault(event.host, HostStats()).add(event)
        items = self._items.pop(key, [])
        if items:
            record["items"] = items
        self._host(event.host)["tasks"].append(record)

    def document(self) -> dict[str, Any]:
        """The document as it stands."""
        doc = dict(self._doc)
        doc["stats"] = {host: asdict(s) for host, s in sorted(self._stats.items())}
        return doc

    def write(self) -> None:
        """Write the document (once)."""
        if self.written:
            return
        self.written = True
        text = json.dumps(self.document(), indent=self.indent, ensure_ascii=False, default=str)
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # the reader went away; the run's outcome is in the database anyway

    def close(self) -> None:
        """Write the document if RunFinished never came: the run was cut short."""
        if not self.written:
            if self._doc["status"] is None:
                self._doc["status"] = "interrupted"
            self.write()


def task_json(event: TaskFinished) -> dict[str, Any]:
    """One result as JSON: the fields a machine reading `--json` needs."""
    return {
        "task_id": event.task_id,
        "task": event.task,
        "stage": event.stage,
        "status": event.status,
        "duration": round(event.duration, 3),
        "msg": event.msg,
        "diff": event.diff,
        "stdout": event.stdout,
        "stderr": event.stderr,
        "location": event.location,
        "ignored": event.ignored,
        "handler": event.handler,
        # "ansible-core" for a module run by ansible-core's own code (modules/ansible_fallback)
        **({"engine": event.result["engine"]} if "engine" in event.result else {}),
    }
