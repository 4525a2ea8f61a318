"""Helpers for tests that run the CLI and the example as real processes."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0


def isolated_env(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    """An environment whose TMPDIR and working folder are empty test folders."""
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
    return env, work, tmp


def lb_ioloop(*args: str) -> list[str]:
    """The command line for ``python -m lb_ioloop ARGS``."""
    return [sys.executable, "-m", "lb_ioloop", *args]


def read_line(stream: object, timeout: float = TIMEOUT) -> str:
    """One line from a process's pipe, or fail after ``timeout`` seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)  # type: ignore[arg-type]
        if not selector.select(timeout):
            raise AssertionError(f"no line within {timeout}s")
    return stream.readline()  # type: ignore[attr-defined,no-any-return]


_COUNTER = re.compile(r"(\w+)=(\d+)")


def parse_counters(line: str) -> dict[str, int]:
    """The numbers of a counters line: ``requests=3 replies=2 ...``."""
    return {name: int(value) for name, value in _COUNTER.findall(line)}


class BrokerProcess:
    """An ``lb-ioloop broker`` process on random 127.0.0.1 ports."""

    def __init__(self, process: subprocess.Popen[str], frontend: str, backend: str) -> None:
        self.process = process
        self.frontend = frontend
        self.backend = backend
        self._stderr_lines: list[str] = []
        self._stderr_times: list[float] = []  # time.monotonic() of each line's arrival
        self._stderr_reader: threading.Thread | None = None

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def follow_stderr(self) -> None:
        """From now on, read stderr in a thread (run with ``--stats-interval``).

        A thread rather than a selector: a text pipe reads ahead, so lines
        can wait in Python's buffer while the selector says nothing is ready.
        """
        assert self.process.stderr is not None and self._stderr_reader is None
        stderr = self.process.stderr

        def read_all() -> None:
            for line in stderr:
                self._stderr_times.append(time.monotonic())
                self._stderr_lines.append(line)

        self._stderr_reader = threading.Thread(target=read_all, daemon=True)
        self._stderr_reader.start()

    def stats_lines(self) -> list[dict[str, int]]:
        """The counters of every stats line read so far, oldest first."""
        return [counters for _, counters in self.timed_stats_lines()]

    def timed_stats_lines(self) -> list[tuple[float, dict[str, int]]]:
        """Each stats line read so far as (its arrival time, its counters)."""
        lines = list(zip(self._stderr_times, self._stderr_lines, strict=False))
        return [(at, parse_counters(line)) for at, line in lines if "requests=" in line]

    def latest_counters(self) -> dict[str, int]:
        """The counters of the last stats line read so far (empty if none yet)."""
        for line in reversed(self._stderr_lines):
            if "requests=" in line:
                return parse_counters(line)
        return {}

    def finish(self, timeout: float = TIMEOUT) -> tuple[int, str]:
        """Wait for exit; return (status, the rest of stderr)."""
        if self._stderr_reader is None:
            _, err = self.process.communicate(timeout=timeout)
            return self.process.returncode, err
        status = self.process.wait(timeout=timeout)
        self._stderr_reader.join(timeout)
        assert not self._stderr_reader.is_alive(), "stderr still open after the broker exited"
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        return status, "".join(self._stderr_lines)


def resident_mib(pid: int) -> float:
    """A process's resident memory (VmRSS) in MiB, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


class PeakMemory:
    """Samples a process's resident memory in a thread; keeps the peak."""

    def __init__(self, pid: int, every: float = 0.01) -> None:
        self.pid = pid
        self.start_mib = self.peak_mib = resident_mib(pid)
        self._every = every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(self._every):
            try:
                self.peak_mib = max(self.peak_mib, resident_mib(self.pid))
            except (OSError, AssertionError):  # the process has ended
                return

    def stop(self) -> float:
        """Stop sampling; return the peak growth over the first sample, in MiB."""
        self._done.set()
        self._thread.join()
        return self.peak_mib - self.start_mib


@contextmanager
def broker_process(*extra: str) -> Iterator[BrokerProcess]:
    """Start a broker, wait for its 'frontend ... backend ...' line, kill it at the end."""
    process = subprocess.Popen(
        lb_ioloop(
            "broker", "--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://127.0.0.1:*", *extra
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    broker = None
    try:
        line = read_line(process.stderr)
        words = line.split()
        assert words[2:3] == ["frontend"] and words[4:5] == ["backend"], line
        broker = BrokerProcess(process, words[3], words[5])
        yield broker
    finally:
        if process.poll() is None:
            process.kill()
        if broker is not None:
            broker.finish()
        else:
            process.communicate(timeout=TIMEOUT)


def wait_until(condition: object, timeout: float = TIMEOUT) -> None:
    """Poll a callable until it returns true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not true within {timeout}s"
        time.sleep(0.005)
