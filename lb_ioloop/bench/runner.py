"""Run brokers and load as processes; measure what each broker costs.

For every load shape, the brokers run in turn (A B C A B C ... for several
rounds) and each figure is the median over the rounds, so a burst of noise
from the shared machine lands on one run, not on one broker.

A broker is a command line whose last two arguments are the frontend and
backend endpoints it must bind. Its CPU time (user + system) is read from
``/proc/PID/stat`` just before the clients start and just after they finish,
and divided by the requests answered in between.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["BROKERS", "BenchError", "BenchResult", "LoadShape", "run_bench", "run_once"]

PYTHON = sys.executable

BROKERS: dict[str, list[str]] = {
    "lb_ioloop": [PYTHON, "-m", "lb_ioloop", "broker", "--max-message-size", "0", "--frontend"],
    "lb_ioloop+uvloop": [
        *[PYTHON, "-m", "lb_ioloop", "broker", "--event-loop", "uvloop"],
        *["--max-message-size", "0", "--frontend"],
    ],
    "poller": [PYTHON, "-m", "lb_ioloop.bench.references", "poller"],
    "naive": [PYTHON, "-m", "lb_ioloop.bench.references", "naive"],
}
"""Built-in brokers. ``lb_ioloop`` takes ``--frontend F --backend B``; the
runner fills those in (see :func:`_broker_command`)."""

_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A broker or a load process did not start or did not report."""


@dataclass(frozen=True)
class LoadShape:
    """One load: W workers, C clients each with D requests in flight, a body size."""

    workers: int = 8
    clients: int = 4
    depth: int = 50
    body_bytes: int = 10
    seconds: float = 2.0
    hold: bool = False  # workers never answer: for the memory run

    def label(self) -> str:
        return f"W={self.workers} C={self.clients} D={self.depth} body={self.body_bytes}B"


@dataclass(frozen=True)
class BenchResult:
    """What one broker did under one load (medians over the rounds)."""

    broker: str
    shape: LoadShape
    rps: float
    cpu_us_per_request: float
    p50_us: float
    p99_us: float
    lost: int
    answered: int
    rss_mb: float
    rounds: int

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["shape"] = asdict(self.shape)
        return data


def _free_endpoints(transport: str, folder: Path) -> tuple[str, str]:
    if transport == "ipc":
        return f"ipc://{folder}/frontend", f"ipc://{folder}/backend"
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    return f"tcp://127.0.0.1:{ports[0]}", f"tcp://127.0.0.1:{ports[1]}"


def _broker_command(base: Sequence[str], frontend: str, backend: str) -> list[str]:
    if base and base[-1] == "--frontend":  # lb_ioloop's own option style
        return [*base, frontend, "--backend", backend]
    return [*base, frontend, backend]


def _bound(endpoint: str, deadline: float) -> None:
    """Wait until something listens on ``endpoint`` (the broker has bound)."""
    while time.monotonic() < deadline:
        if endpoint.startswith("ipc://"):
            if os.path.exists(endpoint[len("ipc://") :]):
                return
        else:
            host, port = endpoint[len("tcp://") :].rsplit(":", 1)
            try:
                socket.create_connection((host, int(port)), timeout=0.2).close()
                return
            except OSError:
                pass
        time.sleep(0.02)
    raise BenchError(f"the broker did not bind {endpoint} within 10 s")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def run_once(broker: Sequence[str], shape: LoadShape, transport: str = "tcp") -> dict[str, float]:
    """One broker, one load, one run: the raw figures."""
    load = [PYTHON, "-m", "lb_ioloop.bench.load"]
    folder = Path(tempfile.mkdtemp(prefix="lb-bench-"))
    processes: list[subprocess.Popen[str]] = []
    try:
        frontend, backend = _free_endpoints(transport, folder)
        broker_process = subprocess.Popen(
            _broker_command(broker, frontend, backend),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        processes.append(broker_process)
        _bound(backend, time.monotonic() + 10)
        if broker_process.poll() is not None:
            raise BenchError(f"the broker {broker[:6]} exited at once")
        workers = subprocess.Popen(
            [*load, "workers", backend, str(shape.workers), *(["--hold"] if shape.hold else [])],
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(workers)
        assert workers.stdout is not None
        if workers.stdout.readline().strip() != "ready":
            raise BenchError("the load's workers did not start")
        cpu_before = _cpu_seconds(broker_process.pid)
        clients = subprocess.Popen(
            [
                *load,
                "clients",
                frontend,
                str(shape.clients),
                str(shape.depth),
                str(shape.seconds),
                str(shape.body_bytes),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(clients)
        rss = 0.0
        while clients.poll() is None:  # sample memory while the load runs
            rss = max(rss, _rss_mb(broker_process.pid))
            time.sleep(0.1)
        cpu_after = _cpu_seconds(broker_process.pid)
        assert clients.stdout is not None
        lines = clients.stdout.read().strip().splitlines()
        if clients.returncode != 0 or not lines:
            raise BenchError(f"the load's clients failed (exit {clients.returncode})")
        figures: dict[str, float] = json.loads(lines[-1])
        answered = figures["answered"]
        figures["cpu_us_per_request"] = (
            (cpu_after - cpu_before) / answered * 1e6 if answered else float("nan")
        )
        figures["rss_mb"] = rss
        return figures
    finally:
        for process in reversed(processes):
            _stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def run_bench(
    brokers: dict[str, Sequence[str]],
    shapes: Sequence[LoadShape],
    *,
    rounds: int = 2,
    transport: str = "tcp",
    progress: Callable[[str], None] = lambda line: None,
) -> list[BenchResult]:
    """Every shape against every broker, interleaved; medians per broker and shape."""
    results = []
    total = len(shapes) * rounds * len(brokers)
    step = 0
    for shape in shapes:
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in brokers}
        for _ in range(rounds):
            for name, command in brokers.items():
                step += 1
                progress(f"[{step}/{total}] {name:16s} {shape.label()}")
                runs[name].append(run_once(command, shape, transport))
        for name, figures in runs.items():

            def median(key: str, figures: list[dict[str, float]] = figures) -> float:
                return statistics.median(f[key] for f in figures)

            results.append(
                BenchResult(
                    broker=name,
                    shape=shape,
                    rps=median("rps"),
                    cpu_us_per_request=median("cpu_us_per_request"),
                    p50_us=median("p50_us"),
                    p99_us=median("p99_us"),
                    lost=int(sum(f["lost"] for f in figures)),
                    answered=int(sum(f["answered"] for f in figures)),
                    rss_mb=max(f["rss_mb"] for f in figures),
                    rounds=len(figures),
                )
            )
    return results
