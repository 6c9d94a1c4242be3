"""A real Dask cluster on loopback for the cluster tests: a scheduler and workers started as
`dask scheduler` / `dask worker` processes, TLS between them with a throwaway CA.

Each worker gets MR_TEST_WORKER=<its name> in its environment, so a task run on the worker
itself (`delegate_to: localhost`) can say which worker walked its host.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DASK = str(Path(sys.executable).parent / "dask")
START_WAIT = 90.0  # seconds for the scheduler and workers to come up (a busy machine)


@dataclass
class DaskLab:
    """The running cluster: its address, TLS files and processes."""

    folder: Path
    address: str
    ca: Path
    cert: Path
    key: Path
    scheduler: subprocess.Popen[bytes] | None = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def tls_args(self) -> list[str]:
        return [
            "--tls-ca-file",
            str(self.ca),
            "--tls-cert",
            str(self.cert),
            "--tls-key",
            str(self.key),
        ]

    def settings(self) -> str:
        """machineroom.yml lines naming the TLS files."""
        return (
            f"cluster_tls_ca: {self.ca}\ncluster_tls_cert: {self.cert}\n"
            f"cluster_tls_key: {self.key}\n"
        )

    def start_worker(self, name: str, *resources: str) -> None:
        """A worker process named `name` (with `zone-eu=1`-style resources), once it is up."""
        args = [DASK, "worker", self.address, *self.tls_args(), "--name", name]
        args += ["--nthreads", "2", "--nworkers", "1", "--no-dashboard", "--memory-limit", "0"]
        args += ["--no-nanny", "--death-timeout", "60"]
        if resources:
            args += ["--resources", " ".join(resources)]
        env = {**os.environ, "MR_TEST_WORKER": name}
        with open(self.folder / f"{name}.log", "ab") as log:  # the child keeps its own copy
            self.workers[name] = subprocess.Popen(args, stdout=log, stderr=log, env=env)
        self.wait_for_workers(lambda names: name in names)

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker: as a machine that vanished (no goodbye to the scheduler)."""
        proc = self.workers.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def worker_names(self) -> set[str]:
        from distributed import Client
        from distributed.security import Security

        security = Security(
            tls_ca_file=str(self.ca),
            tls_client_cert=str(self.cert),
            tls_client_key=str(self.key),
            require_encryption=True,
        )
        with Client(self.address, security=security, timeout=20) as client:
            info = client.scheduler_info(n_workers=-1)["workers"]
            return {str(w.get("name")) for w in info.values()}

    def wait_for_workers(self, ready: object) -> None:
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, TimeoutError):
                if ready(self.worker_names()):  # type: ignore[operator]
                    return
            time.sleep(0.2)
        raise RuntimeError(f"dask workers not ready after {START_WAIT:g} s: {self.folder}")

    def logs(self) -> str:
        """Every process's log, for a failing test and for the no-secrets check."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.folder.glob("*.log")))

    def stop(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers.values(), self.scheduler]:
            if proc is not None:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def throwaway_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and one certificate for 127.0.0.1 signed by it (the scheduler, the workers and
    the controller all use it): ca.pem, node.pem, node.key."""
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.pem", "node.key", "node.csr", "node.pem")
    )
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_args = ["-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=mr-test-ca"]
    run("openssl", "req", "-x509", *ec_key, *ca_args)
    run("openssl", "req", *ec_key, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run(
        "openssl",
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    for path in (ca_key, key):
        path.chmod(0o600)
    return ca, cert, key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_dask(folder: Path) -> DaskLab:
    """A TLS scheduler on loopback, no workers yet (start_worker adds them)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, cert, key = throwaway_ca(folder)
    port = free_port()
    lab = DaskLab(folder, f"tls://127.0.0.1:{port}", ca, cert, key)
    with open(folder / "scheduler.log", "ab") as log:
        lab.scheduler = subprocess.Popen(
            [
                DASK,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--protocol",
                "tls",
                *lab.tls_args(),
                "--no-dashboard",
            ],
            stdout=log,
            stderr=log,
        )
    try:
        lab.wait_for_workers(lambda names: True)
    except BaseException:
        lab.stop()
        raise
    return lab
