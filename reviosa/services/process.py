"""Background server processes (S3, MLflow) with pid bookkeeping, readiness polling and clean shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``n`` distinct ports that were free on ``host`` a moment ago."""
    socks, ports = [], []
    try:
        # Hold all sockets open until every port is chosen so the kernel never hands out the same one twice.
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class ServerProcess:
    """A server started in its own process group; serialisable so ``reviosa services`` can stop it later."""

    name: str
    pid: int
    url: str
    log: str
    ports: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain-dict form for the state file."""
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "ServerProcess":
        """Inverse of :meth:`to_json`."""
        return cls(**raw)

    def alive(self) -> bool:
        """True while the process exists and is not a zombie."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        return state != "Z"

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
        """Signal the whole process group, wait, and escalate to SIGKILL after ``timeout`` seconds."""
        _signal_group(self.pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(self.pid)
            if not self.alive():
                break
            time.sleep(0.1)
        # Children (uvicorn workers, job runners) share the group; make sure none outlive the leader.
        _signal_group(self.pid, signal.SIGKILL)
        _reap(self.pid)

    def kill(self) -> None:
        """SIGKILL the process group at once (crash simulation)."""
        self.stop(timeout=0.0, sig=signal.SIGKILL)

    def log_tail(self, n: int = 40) -> str:
        """Last ``n`` lines of the server log, for error messages."""
        try:
            return "\n".join(Path(self.log).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def spawn(name: str, argv: list[str], *, log: Path, url: str, env: dict[str, str] | None = None,
          cwd: Path | None = None, ports: dict[str, int] | None = None) -> ServerProcess:
    """Start ``argv`` detached in a new session with output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=full_env, cwd=cwd, start_new_session=True)
    return ServerProcess(name=name, pid=proc.pid, url=url, log=str(log), ports=dict(ports or {}))


def wait_http(server: ServerProcess, path: str = "/", timeout: float = 60.0,
              accept: tuple[int, ...] = (200,)) -> None:
    """Poll ``server.url + path`` until it answers with a status in ``accept``; raise with the log tail if not."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited during start-up; log {server.log}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + path, timeout=2) as resp:
                if resp.status in accept:
                    return
                last = resp.status
        except urllib.error.HTTPError as err:
            if err.code in accept:
                return
            last = err.code
        except (urllib.error.URLError, OSError) as err:
            last = err
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} did not answer {server.url + path} within {timeout:.0f} s (last: {last}); "
                       f"log {server.log}:\n{server.log_tail()}")
