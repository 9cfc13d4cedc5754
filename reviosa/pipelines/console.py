"""What a person sees while a long local run works: one line per stage on the console, the rest in a log file.

:class:`Stages` draws the stage lines (a live spinner with the elapsed time on a terminal, one plain line per
finished stage otherwise); :func:`output_to_log` points file descriptors 1 and 2 (this process and every child it
starts) at a log file for a while; :func:`follow` watches that file for progress worth showing; :func:`tail` reads
the end of it back when something failed.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

_SPIN = "|/-\\"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes (kfp colours task names)."""
    return _ANSI.sub("", text)


def stage_line(number: int, total: int, label: str, status: str, width: int = 46) -> str:
    """``[ 3/17] train ........ 41.2 s``: the label dotted out to ``width`` so that the statuses line up."""
    digits = len(str(max(total, number)))
    return f"[{number:>{digits}}/{max(total, number)}] {label} {'.' * max(3, width - len(label))} {status}"


def _seconds(s: float) -> str:
    return f"{s:6.1f} s"


@dataclass
class Stage:
    """One stage: its number, label and timings, and where its output sits in the log (to show why it failed).

    ``log_end`` None on a finished stage: its output runs to the end of the log.
    """

    number: int
    label: str
    started: float
    detail: str = ""
    seconds: float | None = None
    ok: bool | None = None
    log_start: int | None = None
    log_end: int | None = None


class Stages:
    """Numbered stage lines on ``stream``; ``live`` (default: ``stream`` is a terminal) redraws a spinner line.

    Without ``live`` a stage prints one line when it ends, so a log or CI console gets exactly one line per stage.
    ``log_offset`` (the log's current size) lets a failed stage point at its own part of the log. ``stream=None``
    prints nothing but still times the stages.
    """

    def __init__(self, total: int = 0, stream: TextIO | None = None, live: bool | None = None, width: int = 46,
                 log_offset: Callable[[], int] | None = None, interval: float = 0.2):
        self.total = total
        self.stream = stream
        if live is None:
            live = stream is not None and _is_terminal(stream)
        self.live = live
        self.width = width
        self.log_offset = log_offset
        self.interval = interval
        self.active: dict[str, Stage] = {}
        self.done: list[Stage] = []
        self._count = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def start(self, key: str, label: str) -> Stage:
        """Begin stage ``key`` (again: the running one continues, e.g. a retried task)."""
        with self._lock:
            if key in self.active:
                self.active[key].log_end = None
                return self.active[key]
            self._count += 1
            self.total = max(self.total, self._count)
            stage = Stage(self._count, label, time.monotonic(), log_start=self.offset())
            self.active[key] = stage
            if self.live and self._ticker is None:
                self._ticker = threading.Thread(target=self._tick, name="stage-spinner", daemon=True)
                self._ticker.start()
            self._draw()
            return stage

    def detail(self, text: str, key: str | None = None) -> None:
        """Progress inside a stage (``step 40/300``), shown on the live line; ``key`` defaults to the newest."""
        with self._lock:
            stage = self.active.get(key) if key is not None else next(reversed(self.active.values()), None)
            if stage is not None:
                stage.detail = text

    def finish(self, key: str, ok: bool = True) -> Stage | None:
        """End stage ``key`` and print its line."""
        with self._lock:
            stage = self.active.pop(key, None)
            if stage is None:
                return None
            stage.seconds = time.monotonic() - stage.started
            stage.ok = ok
            if stage.log_end is None:
                stage.log_end = self.offset()
            self.done.append(stage)
            status = _seconds(stage.seconds) if ok else f"FAILED after {stage.seconds:.1f} s"
            self._write(stage_line(stage.number, self.total, stage.label, status, self.width))
            self._draw()
            return stage

    @contextlib.contextmanager
    def stage(self, label: str) -> Iterator[Stage]:
        """A stage around a block: its line says FAILED if the block raises."""
        stage = self.start(label, label)
        try:
            yield stage
        except BaseException:
            self.finish(label, ok=False)
            stage.log_end = None  # the traceback, printed once the error is caught, belongs to this stage
            raise
        self.finish(label)

    def close(self, ok: bool = True) -> None:
        """Stop the spinner; stages still running end here (FAILED unless ``ok``)."""
        with self._lock:
            for key in list(self.active):
                self.finish(key, ok=ok)
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)

    @property
    def failed(self) -> list[Stage]:
        """The stages that ended FAILED, in the order they ended."""
        return [s for s in self.done if s.ok is False]

    def offset(self) -> int | None:
        """Where the log ends now (None without ``log_offset``), after flushing what Python still buffers."""
        if self.log_offset is None:
            return None
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        return self.log_offset()

    def _write(self, line: str) -> None:
        if self.stream is None:
            return
        self.stream.write(("\r" + line + "\x1b[K\n") if self.live else line + "\n")
        self.stream.flush()

    def _draw(self) -> None:
        """Redraw the live line for the newest running stage (a terminal shows one line being rewritten)."""
        if not self.live or self.stream is None or not self.active:
            return
        stage = next(reversed(self.active.values()))
        spin = _SPIN[int(time.monotonic() / self.interval) % len(_SPIN)]
        status = f"{spin}{_seconds(time.monotonic() - stage.started)}"
        if stage.detail:
            status += f"  {stage.detail}"
        if len(self.active) > 1:
            status += f"  (+{len(self.active) - 1} running)"
        self.stream.write("\r" + self._fit(stage, status) + "\x1b[K")
        self.stream.flush()

    def _fit(self, stage: Stage, status: str) -> str:
        """The live line within the terminal (one that wraps cannot be redrawn): fewer dots, then a shorter label."""
        cols = _columns(self.stream) - 1
        label = stage.label
        line = stage_line(stage.number, self.total, label, status, self.width)
        over = len(line) - cols
        if over > 0:
            spare = max(3, self.width - len(label)) - 3
            if over > spare:
                label = label[:max(1, len(label) - (over - spare) - 1)] + "~"
            line = stage_line(stage.number, self.total, label, status, max(len(label) + 3, self.width - over))
        return line[:cols]

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                with contextlib.suppress(Exception):  # a closed terminal must not end the run
                    self._draw()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def _columns(stream: TextIO) -> int:
    with contextlib.suppress(ValueError):
        if int(os.environ.get("COLUMNS", "0")) > 0:
            return int(os.environ["COLUMNS"])
    try:
        # A pseudo-terminal nobody sized (script, some CI runners) reports 0 columns.
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


@contextlib.contextmanager
def output_to_log(path: str | os.PathLike) -> Iterator[TextIO]:
    """Append everything written to fds 1 and 2 to ``path`` until exit; yields a stream on the real stdout.

    The redirection is at the descriptor level because children (kfp.local steps, servers, compilers) inherit
    fds 1 and 2 and write to them directly. The original descriptors come back on exit, also on an error.
    """
    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()
    saved = os.dup(1), os.dup(2)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    console = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding=getattr(sys.stdout, "encoding", None) or "utf-8",
                        errors="replace")
    # Python's stdout is block-buffered when it is not a terminal; line by line keeps the log (and whoever
    # follows it) in step with the children writing to the same file.
    relined = getattr(sys.stdout, "line_buffering", True) is False and hasattr(sys.stdout, "reconfigure")
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        if relined:
            sys.stdout.reconfigure(line_buffering=True)
        yield console
    finally:
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (log_fd, *saved):
            os.close(fd)
        if relined:
            sys.stdout.reconfigure(line_buffering=False)
        console.close()


@contextlib.contextmanager
def follow(path: str | os.PathLike, on_line: Callable[[str], None], interval: float = 0.2) -> Iterator[None]:
    """Call ``on_line`` with each complete line appended to ``path`` while the block runs (from a thread)."""
    Path(path).touch()
    stop = threading.Event()
    start = os.path.getsize(path)

    def read(f, rest: bytes) -> bytes:
        data = rest + f.read()
        *lines, rest = data.split(b"\n")
        for line in lines:
            with contextlib.suppress(Exception):  # a progress parser must not stop the log being read
                on_line(line.decode("utf-8", "replace"))
        return rest

    def run() -> None:
        with open(path, "rb") as f:
            f.seek(start)
            rest = b""
            while not stop.wait(interval):
                rest = read(f, rest)
            read(f, rest)

    thread = threading.Thread(target=run, name="log-follower", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def tail(path: str | os.PathLike, lines: int = 30, start: int | None = None, end: int | None = None) -> list[str]:
    """The last ``lines`` lines of ``path`` (of bytes ``start:end`` when given), colour codes removed."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END) if end is None else end
            # Only the end matters, and a training log can be large.
            begin = max(start or 0, end - 200 * max(lines, 1) - 4096)
            f.seek(begin)
            data = f.read(end - begin)
    except OSError:
        return []
    text = strip_ansi(data.decode("utf-8", "replace"))
    kept = [line.rstrip() for line in text.splitlines()]
    if begin > (start or 0) and kept:
        kept = kept[1:]  # cut mid-line
    while kept and not kept[-1]:
        kept.pop()
    return kept[-lines:]
