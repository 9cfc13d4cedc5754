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


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_identity(pid: int) -> tuple[int, list[str]] | None:
    """(start time in clock ticks after boot, argv) of process ``pid``, or None if there is none."""
    try:
        # The command name in field 2 may itself contain ") "; the fields after the last ")" are fixed.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return None
    # fields[0] is field 3 of proc(5) (state), so starttime (field 22) is fields[19].
    return int(fields[19]), [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


@dataclass
class ServerProcess:
    """A server started in its own process group; serialisable so ``reviosa services`` can stop it later.

    ``start_time``, ``cmdline`` and ``boot_id`` identify the process: a pid alone may belong to an unrelated
    process by the time a later command reads the state file (reboot, crash, pid reuse).
    """

    name: str
    pid: int
    url: str
    log: str
    ports: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    start_time: int | None = None
    cmdline: list[str] = field(default_factory=list)
    boot_id: str = ""

    def to_json(self) -> dict[str, Any]:
        """Plain-dict form for the state file."""
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "ServerProcess":
        """Inverse of :meth:`to_json`."""
        return cls(**raw)

    def record_identity(self, timeout: float = 2.0) -> None:
        """Remember the start time and command line of the process now at ``pid`` (call right after spawning)."""
        deadline = time.monotonic() + timeout
        ident = process_identity(self.pid)
        # Popen returns once exec has closed the error pipe, which the kernel does before it copies the new argv
        # into place: for a moment /proc/<pid>/cmdline is empty.
        while ident is not None and not ident[1] and time.monotonic() < deadline:
            time.sleep(0.001)
            ident = process_identity(self.pid)
        if ident is not None:
            self.start_time, self.cmdline = ident
            self.boot_id = _boot_id()

    def is_ours(self) -> bool:
        """True if ``pid`` is still the process this record was made for (a zombie of it counts)."""
        if self.start_time is None or not self.cmdline:
            return False  # a record without identity (older state file) cannot be trusted with signals
        ident = process_identity(self.pid)
        if ident is None or ident[0] != self.start_time or self.boot_id != _boot_id():
            return False
        # The start time identifies the process; the program is a second check. Its arguments may change: a
        # launcher that execs the real server (reviosa.services.mlflow_server) keeps the interpreter but not the argv.
        # A zombie has an empty command line; its start time already proves it is ours.
        return not ident[1] or ident[1][0] == self.cmdline[0]

    def alive(self) -> bool:
        """True while our process exists and is not a zombie."""
        if not self.is_ours():
            return False
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
        """Signal the whole process group, wait, and escalate to SIGKILL after ``timeout`` seconds.

        Does nothing when ``pid`` no longer belongs to this server: its group id may now be someone else's.
        """
        if not self.is_ours():
            return
        _signal_group(self.pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(self.pid)
            if not self.alive():
                break
            time.sleep(0.1)
        # Children (uvicorn workers, job runners) share the group; make sure none outlive the leader. The group id
        # stays reserved while any member lives, so only a reused pid that leads a new group of its own is at risk.
        if process_identity(self.pid) is None or self.is_ours():
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
    server = ServerProcess(name=name, pid=proc.pid, url=url, log=str(log), ports=dict(ports or {}))
    # Popen returns after the exec, so this is the server's own start time and argv.
    server.record_identity()
    return server


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
