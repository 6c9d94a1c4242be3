"""Helpers of the web tests: a `machineroom serve` subprocess on a free port, tokens made by
the CLI, and a state database filled through the StateStore API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = "/usr/bin/chromium"  # Debian's, driven by Playwright (scripts/setup.sh --test)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machineroom(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run the CLI; its stdout (fails the test on a non-zero exit)."""
    out = subprocess.run(
        [sys.executable, "-m", "machineroom", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def make_token(root: Path, state: Path, name: str, role: str, *extra: str) -> str:
    """A token created by `machineroom token create`."""
    token = machineroom(
        "token", "create", name, "--role", role, "--state", str(state), *extra, cwd=root
    )
    return token.strip()


class Server:
    """`machineroom serve` in a subprocess of its own session, stopped by its pid."""

    def __init__(
        self,
        root: Path,
        state: Path,
        inventory: Sequence[Path],
        env: dict[str, str],
        options: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "serve.log"
        args = [sys.executable, "-m", "machineroom", "serve", "--port", str(self.port)]
        for path in inventory:
            args += ["-i", str(path)]
        args += ["--state", str(state), *options]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                args,
                cwd=root,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("serve exited:\n" + self.log.read_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("serve did not listen:\n" + self.log.read_text())

    def client(self, token: str | None = None, **kw: Any) -> httpx.Client:
        """An httpx client for the server, sending `token` as a bearer token."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kw)

    def memory_mib(self, field: str = "VmRSS") -> float:
        """The server process's resident memory (VmRSS) or its peak so far (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no {field} in /proc/{self.process.pid}/status")

    def stop(self) -> None:
        """SIGINT (uvicorn's Ctrl-C), then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_for(predicate: Any, timeout: float = 60, every: float = 0.2) -> Any:
    """Poll `predicate` until it returns something truthy; return it (fail on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s")


def fill_metrics(state: Path, hosts: Sequence[str], hours: int = 24, every: int = 300) -> None:
    """Collections every `every` seconds over the last `hours` for `hosts`, via the store."""
    from machineroom.state import open_state
    from machineroom.state.metrics import HostCollection, now_unix

    now = now_unix()
    with open_state(state) as store:
        for step in range(hours * 3600 // every, 0, -1):
            at = now - step * every
            store.metrics.record_collections(
                [
                    HostCollection(
                        host,
                        at,
                        True,
                        metrics={
                            "load1": 0.3 + (step % 12) / 10,
                            "cpu_used_pct": 10.0 + (step * 7 + n * 13) % 60,
                            "mem_used_pct": 40.0 + (step % 20),
                            "disk_used_pct_max": 55.0 + n,
                            "disk_used_pct:/": 55.0 + n,
                            "containers_running": 2.0,
                            "containers_total": 3.0,
                        },
                        containers=[
                            {
                                "name": "app",
                                "image": "nginx:1.25",
                                "state": "running",
                                "status": "Up 2 hours",
                            },
                            {
                                "name": "worker",
                                "image": "busybox",
                                "state": "running",
                                "status": "Up 2 hours",
                            },
                            {
                                "name": "old",
                                "image": "busybox",
                                "state": "exited",
                                "status": "Exited (0)",
                            },
                        ],
                    )
                    for n, host in enumerate(hosts)
                ]
            )
