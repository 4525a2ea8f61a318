"""Helpers for tests that run the CLI and the example as real processes."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
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


class BrokerProcess:
    """An ``lb-ioloop broker`` process on random 127.0.0.1 ports."""

    def __init__(self, process: subprocess.Popen[str], frontend: str, backend: str) -> None:
        self.process = process
        self.frontend = frontend
        self.backend = backend

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def finish(self, timeout: float = TIMEOUT) -> tuple[int, str]:
        """Wait for exit; return (status, the rest of stderr)."""
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err


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
    try:
        line = read_line(process.stderr)
        words = line.split()
        assert words[2:3] == ["frontend"] and words[4:5] == ["backend"], line
        yield BrokerProcess(process, words[3], words[5])
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=TIMEOUT)


def wait_until(condition: object, timeout: float = TIMEOUT) -> None:
    """Poll a callable until it returns true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not true within {timeout}s"
        time.sleep(0.005)
