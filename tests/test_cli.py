"""The ``lb-ioloop broker`` command as a real process, with peers on 127.0.0.1."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator

import pytest
import zmq

from .processes import TIMEOUT, broker_process, lb_ioloop, read_line

POLL_MS = int(TIMEOUT * 1000)


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def round_trip(
    context: zmq.Context[zmq.Socket[bytes]], frontend: str, backend: str, n: int
) -> None:
    """One REQ worker and one REQ client exchange ``n`` requests through the broker."""
    worker = context.socket(zmq.REQ)
    client = context.socket(zmq.REQ)
    try:
        worker.connect(backend)
        client.connect(frontend)
        worker.send(b"READY")
        for i in range(n):
            client.send(b"HELLO-%d" % i)
            assert worker.poll(POLL_MS), "the worker got no request"
            address, empty, body = worker.recv_multipart()
            assert (empty, body) == (b"", b"HELLO-%d" % i)
            worker.send_multipart([address, b"", b"OK-%d" % i])
            assert client.poll(POLL_MS), "the client got no reply"
            assert client.recv() == b"OK-%d" % i
    finally:
        worker.close(0)
        client.close(0)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_broker_serves_then_stops_cleanly_on_a_signal(context, signum):
    with broker_process() as broker:
        round_trip(context, broker.frontend, broker.backend, 3)
        broker.signal(signum)
        status, err = broker.finish()
    assert status == 0, err
    assert "Traceback" not in err
    assert "stopped; requests=3 replies=3 malformed=0" in err


def test_max_replies_ends_the_broker_by_itself(context):
    with broker_process("--max-replies", "2") as broker:
        round_trip(context, broker.frontend, broker.backend, 2)
        status, err = broker.finish()
    assert status == 0, err
    assert "stopped; requests=2 replies=2" in err


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        lb_ioloop(*args), capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL
    )


def test_address_in_use_is_one_line_and_exit_2(context):
    taken = context.socket(zmq.ROUTER)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    try:
        result = run_cli(
            "broker", "--frontend", f"tcp://127.0.0.1:{port}", "--backend", "tcp://127.0.0.1:*"
        )
    finally:
        taken.close(0)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"lb-ioloop broker: error: cannot bind the frontend to 'tcp://127.0.0.1:{port}': "
        "Address already in use"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["broker", "--frontend", "nonsense", "--backend", "tcp://127.0.0.1:*"], "frontend"),
        (["broker", "--frontend", "tcp://127.0.0.1:*", "--backend", "bogus://x"], "backend"),
        (["broker", "--backend", "tcp://127.0.0.1:*"], "--frontend"),
        (
            [
                "broker",
                "--frontend",
                "tcp://127.0.0.1:*",
                "--backend",
                "tcp://127.0.0.1:*",
                "--max-replies",
                "0",
            ],
            "--max-replies",
        ),
        *(
            (
                ["broker", "--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://127.0.0.1:*"]
                + ["--hwm", value],
                f"--hwm: {message}",
            )
            for value, message in [
                ("-1", "-1 is not at least 0"),
                ("2147483648", "2147483648 is more than 2147483647"),  # not a C int
                ("lots", "'lots' is not a whole number of messages"),
            ]
        ),
        (["demo", "--transport", "udp"], "--transport"),
        (["demo", "--clients", "many"], "--clients"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "error:" in lines[0] and message in lines[0]
    assert result.stdout == ""


def test_no_command_is_one_line_and_exit_2():
    result = run_cli()
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "lb-ioloop: error: choose a command: demo, broker, worker, client, keygen, bench "
        "(lb-ioloop --help says more)"
    ]


def test_endpoint_that_is_not_utf8_is_one_line_and_exit_2():
    bad = "tcp://127.0.0.1:" + b"\xff".decode("utf-8", "surrogateescape")
    result = run_cli("broker", "--frontend", bad, "--backend", "tcp://127.0.0.1:*")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "not valid UTF-8" in result.stderr


def test_the_same_endpoint_twice_is_refused(tmp_path):
    endpoint = f"ipc://{tmp_path}/both"
    result = run_cli("broker", "--frontend", endpoint, "--backend", endpoint)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"lb-ioloop broker: error: the frontend and backend are the same endpoint '{endpoint}'"
    ]


def test_a_second_signal_during_shutdown_still_ends_cleanly(context):
    with broker_process() as broker:
        round_trip(context, broker.frontend, broker.backend, 1)
        broker.signal(signal.SIGINT)
        broker.signal(signal.SIGINT)  # Ctrl-C pressed twice
        status, err = broker.finish()
    assert status == 0, err
    assert "Traceback" not in err
    assert "stopped; requests=1 replies=1" in err


def test_the_broker_removes_its_ipc_files_when_it_stops(tmp_path):
    frontend, backend = tmp_path / "front.ipc", tmp_path / "back.ipc"
    process = subprocess.Popen(
        lb_ioloop("broker", "--frontend", f"ipc://{frontend}", "--backend", f"ipc://{backend}"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "frontend ipc://" in read_line(process.stderr)
        assert frontend.exists() and backend.exists()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err
    assert list(tmp_path.iterdir()) == []
