"""``lb-ioloop worker`` and ``lb-ioloop client`` as real processes on 127.0.0.1."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import pytest

from .processes import TIMEOUT, broker_process, lb_ioloop, read_line


@contextmanager
def worker_process(
    backend: str, *extra: str, launcher: Sequence[str] = ()
) -> Iterator[subprocess.Popen[str]]:
    """``lb-ioloop worker --connect BACKEND EXTRA...``, run through ``launcher``."""
    process = subprocess.Popen(
        [*launcher, *lb_ioloop("worker", "--connect", backend, *extra)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=TIMEOUT)


def run_client(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        lb_ioloop("client", *args),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def test_round_trip_through_two_workers_then_sigterm_ends_each_cleanly():
    with ExitStack() as stack:
        broker = stack.enter_context(broker_process())
        workers = [
            stack.enter_context(worker_process(broker.backend, "--reply", f"from-{name}"))
            for name in ("w1", "w2")
        ]
        seen: Counter[str] = Counter()
        deadline = time.monotonic() + TIMEOUT
        # Until both workers have answered: the second may say READY later.
        while len(seen) < 2:
            assert time.monotonic() < deadline, f"only {seen} answered"
            result = run_client("--connect", broker.frontend, "--requests", "2")
            assert result.returncode == 0, result.stderr
            seen.update(line.split()[-1] for line in result.stdout.splitlines())
        assert set(seen) == {"from-w1", "from-w2"}
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
            out, err = worker.communicate(timeout=TIMEOUT)
            assert worker.returncode == 0, err
            assert err == ""
            assert out.splitlines() and set(out.splitlines()) == {"Worker: HELLO"}
        broker.signal(signal.SIGTERM)
        status, err = broker.finish()
        assert status == 0 and f"replies={sum(seen.values())}" in err


# What a shell script's `command &` does: SIGINT ignored, then exec.
IGNORING_SIGINT = ("sh", "-c", 'trap "" INT; exec "$@"', "sh")


def test_a_worker_started_with_sigint_ignored_still_stops_on_sigint():
    """A shell script's ``lb-ioloop worker &`` starts it with SIGINT ignored;
    ``kill -INT`` must still stop it cleanly, as it stops the broker."""
    with (
        broker_process() as broker,
        worker_process(broker.backend, launcher=IGNORING_SIGINT) as worker,
    ):
        # Served a request: it is past installing its handlers.
        assert run_client("--connect", broker.frontend).returncode == 0
        worker.send_signal(signal.SIGINT)
        out, err = worker.communicate(timeout=TIMEOUT)
    assert worker.returncode == 0 and err == "" and out == "Worker: HELLO\n"


def test_echo_worker_and_message():
    with broker_process() as broker, worker_process(broker.backend, "--echo"):
        result = run_client("--connect", broker.frontend, "--message", "ping", "--requests", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Client: ping"] * 3


def test_client_timeout_is_one_line_and_exit_1():
    with broker_process() as broker:  # no worker: nobody will answer
        result = run_client("--connect", broker.frontend, "--timeout", "0.3")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "lb-ioloop client: error: no reply within 0.3s to request 1 of 1"
    ]


def test_one_client_spreads_its_requests_over_two_brokers():
    with ExitStack() as stack:
        brokers = [stack.enter_context(broker_process()) for _ in range(2)]
        for name, broker in zip("AB", brokers, strict=True):
            stack.enter_context(worker_process(broker.backend, "--reply", name))
        result = run_client(
            "--connect",
            brokers[0].frontend,
            "--connect",
            brokers[1].frontend,
            "--requests",
            "6",
        )
    assert result.returncode == 0, result.stderr
    assert Counter(result.stdout.splitlines()) == {"Client: A": 3, "Client: B": 3}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worker", "--connect", "nonsense"], "Invalid argument"),
        (["worker"], "--connect"),
        (["worker", "--connect", "tcp://127.0.0.1:1", "--echo", "--reply", "x"], "not allowed"),
        (["worker", "--connect", "tcp://127.0.0.1:1", "--delay", "soon"], "--delay"),
        (["client", "--connect", "nonsense"], "Invalid argument"),
        (["client", "--connect", "tcp://127.0.0.1:1", "--timeout", "-1"], "--timeout"),
        (["client", "--connect", "tcp://127.0.0.1:1", "--requests", "0"], "--requests"),
    ],
)
def test_bad_peer_arguments_are_one_line_and_exit_2(args, message):
    result = subprocess.run(
        lb_ioloop(*args), capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "error" in lines[0] and message in lines[0], result.stderr


def test_max_message_size_keeps_oversized_requests_out():
    with (
        broker_process("--max-message-size", "1000") as broker,
        worker_process(broker.backend, "--echo"),
    ):
        small = run_client("--connect", broker.frontend, "--message", "x" * 900)
        big = run_client("--connect", broker.frontend, "--message", "x" * 2000, "--timeout", "0.5")
        after = run_client("--connect", broker.frontend, "--message", "still-served")
    assert small.returncode == 0, small.stderr
    assert big.returncode == 1  # disconnected by ZeroMQ: never routed, never answered
    assert after.stdout == "Client: still-served\n"


def test_stats_interval_prints_the_counters_line_while_running():
    with broker_process("--stats-interval", "0.05") as broker:
        line = read_line(broker.process.stderr)
        assert line.startswith("lb-ioloop broker: requests=0 replies=0 malformed=0"), line
        broker.signal(signal.SIGINT)
        status, err = broker.finish()
    assert status == 0
    assert err.splitlines()[-1].startswith("lb-ioloop broker: stopped; requests=0")
