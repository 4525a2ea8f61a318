"""Faults with real processes on 127.0.0.1: what is lost, and what goes on."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from contextlib import ExitStack

import zmq

from .processes import TIMEOUT, broker_process, lb_ioloop, read_line
from .test_cli_peers import run_client, worker_process


def test_a_worker_killed_mid_request_loses_that_request_only():
    """By the pattern, the request a worker dies with is lost: its client
    times out with one clear line, and the broker serves everybody else."""
    with ExitStack() as stack:
        broker = stack.enter_context(broker_process())
        doomed = stack.enter_context(worker_process(broker.backend, "--delay", "30"))
        victim = subprocess.Popen(
            lb_ioloop("client", "--connect", broker.frontend, "--timeout", "2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stack.callback(victim.kill)
        # The doomed worker prints the request when it takes it.
        assert doomed.stdout is not None
        assert doomed.stdout.readline() == "Worker: HELLO\n"
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=TIMEOUT)
        stack.enter_context(worker_process(broker.backend, "--reply", "alive"))
        others = run_client("--connect", broker.frontend, "--requests", "5")
        _, victim_err = victim.communicate(timeout=TIMEOUT)
        broker.signal(signal.SIGTERM)
        status, err = broker.finish()
    assert victim.returncode == 1
    assert victim_err.splitlines() == [
        "lb-ioloop client: error: no reply within 2s to request 1 of 1"
    ]
    assert others.returncode == 0 and others.stdout.splitlines() == ["Client: alive"] * 5
    assert status == 0 and "requests=6 replies=5" in err


def test_a_client_killed_mid_request_costs_nothing_but_its_reply():
    """The worker answers a client that has died: the reply is counted as
    undeliverable, the worker is ready again, and the others are served."""
    with ExitStack() as stack:
        broker = stack.enter_context(broker_process())
        worker = stack.enter_context(worker_process(broker.backend, "--delay", "1", "--echo"))
        victim = subprocess.Popen(
            lb_ioloop("client", "--connect", broker.frontend, "--message", "lost"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert worker.stdout is not None
        assert worker.stdout.readline() == "Worker: lost\n"  # the request is with the worker
        victim.send_signal(signal.SIGKILL)  # the kernel closes its connection at once
        victim.communicate(timeout=TIMEOUT)
        after = run_client("--connect", broker.frontend, "--message", "kept", "--requests", "3")
        broker.signal(signal.SIGTERM)
        status, err = broker.finish()
    assert after.returncode == 0 and after.stdout.splitlines() == ["Client: kept"] * 3
    assert status == 0 and "Traceback" not in err
    assert "requests=4 replies=3 malformed=0 undeliverable=1" in err


def test_a_thousand_clients_times_ten_requests_each_get_their_own_replies():
    """1000 clients x 10 requests over 50 echo workers: every reply is the
    echo of one of its own client's requests, and none is missing."""
    clients, per_client, worker_count = 1000, 10, 50
    with ExitStack() as stack:
        broker = stack.enter_context(broker_process())
        workers = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lb_ioloop.bench.load",
                "workers",
                broker.backend,
                str(worker_count),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        stack.callback(lambda: (workers.terminate(), workers.communicate(timeout=TIMEOUT)))
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        stack.callback(context.destroy, 0)
        poller = zmq.Poller()
        sockets = []
        for _ in range(clients):
            sock = context.socket(zmq.DEALER)
            sock.connect(broker.frontend)
            poller.register(sock, zmq.POLLIN)
            sockets.append(sock)
        expected = {
            n: {b"client-%d-request-%d" % (n, k) for k in range(per_client)} for n in range(clients)
        }
        for n, sock in enumerate(sockets):
            for body in expected[n]:
                sock.send_multipart([b"", body])
        received = {n: set() for n in range(clients)}
        index = {sock: n for n, sock in enumerate(sockets)}
        deadline = time.monotonic() + TIMEOUT
        outstanding = clients * per_client
        while outstanding:
            assert time.monotonic() < deadline, f"{outstanding} replies missing"
            for sock, _ in poller.poll(200):
                empty, body = sock.recv_multipart()
                n = index[sock]
                assert empty == b"" and body in expected[n], "a reply reached the wrong client"
                assert body not in received[n], "a reply came twice"
                received[n].add(body)
                outstanding -= 1
    assert received == expected


def test_after_a_broker_restart_clients_reconnect_and_idle_workers_must_be_restarted():
    """What README says about a restart, shown: ZeroMQ reconnects everybody,
    but a REQ worker that was idle said READY to the old broker and waits for
    ever, so the new broker has no worker until one (re)starts."""
    with ExitStack() as stack:
        first = stack.enter_context(broker_process())
        frontend, backend = first.frontend, first.backend
        old_worker = stack.enter_context(worker_process(backend, "--reply", "old"))
        assert run_client("--connect", frontend).stdout == "Client: old\n"
        first.signal(signal.SIGTERM)
        assert first.finish()[0] == 0

        restarted = subprocess.Popen(
            lb_ioloop("broker", "--frontend", frontend, "--backend", backend),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        stack.callback(lambda: (restarted.kill(), restarted.communicate(timeout=TIMEOUT)))
        assert "frontend" in read_line(restarted.stderr)
        # The old worker's connection comes back, but it never says READY again.
        unserved = run_client("--connect", frontend, "--timeout", "1")
        assert unserved.returncode == 1
        assert old_worker.poll() is None  # still running, still waiting
        stack.enter_context(worker_process(backend, "--reply", "new"))
        served = run_client("--connect", frontend, "--requests", "2")
        assert served.returncode == 0, served.stderr
        assert served.stdout.splitlines() == ["Client: new"] * 2
