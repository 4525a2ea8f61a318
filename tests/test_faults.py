"""Faults with real processes on 127.0.0.1: what is lost, and what goes on."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from contextlib import ExitStack

import pytest
import zmq

from .processes import (
    TIMEOUT,
    PeakMemory,
    broker_process,
    lb_ioloop,
    parse_counters,
    read_line,
    wait_until,
)
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


def _deaf_request_size(requests: int) -> int:
    """A request size at which ``requests`` replies overflow a connection.

    Whatever the kernel buffers (the broker's send side grows up to
    tcp_wmem's maximum; the receive side is pinned by ZMQ_RCVBUF) takes
    replies off the broker's queue, so the replies must be twice that, with
    room to spare for the 110 held by the two HWMs. 16 KiB with Linux's
    default 4 MiB.
    """
    with open("/proc/sys/net/ipv4/tcp_wmem") as limits:
        send_buffer = int(limits.read().split()[2])
    kernel_bytes = send_buffer + 2 * 64 * 1024  # the kernel doubles ZMQ_RCVBUF
    return max(16 * 1024, -(-2 * kernel_bytes // (requests - 110)))


@pytest.mark.parametrize("hwm", [100, None], ids=["hwm-100", "default-hwm"])
def test_one_slow_worker_and_100000_waiting_requests(hwm):
    """100 clients queue 1000 requests each behind one slow worker.

    * With ``--hwm 100`` the broker takes at most 100 requests per client
      into its own memory; the rest wait in the clients' queues (ZeroMQ's HWM
      rule for a DEALER: a full queue pushes back, it never drops). So the
      broker grows by far less than the 127 MiB that are waiting. With
      ZeroMQ's default HWM (1000, all that each client sends) it takes them
      all: the HWM is what bounds its memory.
    * A newcomer is served within about a round of the frontend's fair
      queue (one request per client per round), not after the 100,000.
    * Then eight more workers drain the backlog. Every request is answered
      exactly once, at its own client; except that two clients, whose
      requests are big (16 KiB here), never read while it drains, so once
      their queues (and the kernel's buffers) are full, the ROUTER drops their
      replies (ZeroMQ's HWM rule for a ROUTER) and the broker counts each one.
    (With the default HWM the broker's queue for each holds all 1000, and
    none is dropped.)
    """
    clients, per_client = 100, 1000
    deaf_count, deaf_body, body = 2, _deaf_request_size(per_client), 1024
    with ExitStack() as stack:
        hwm_option = [] if hwm is None else ["--hwm", str(hwm)]
        broker = stack.enter_context(broker_process(*hwm_option, "--stats-interval", "0.1"))
        broker.follow_stderr()
        memory = PeakMemory(broker.process.pid)
        stack.callback(memory.stop)
        slow = subprocess.Popen(
            lb_ioloop("worker", "--connect", broker.backend, "--echo", "--delay", "0.01"),
            stdout=subprocess.DEVNULL,  # it prints every request; nobody reads them
        )
        stack.callback(lambda: (slow.kill(), slow.wait(TIMEOUT)))
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        stack.callback(context.destroy, 0)

        sockets = []
        for n in range(clients):
            sock = context.socket(zmq.DEALER)
            if n < deaf_count:
                sock.rcvhwm = 10  # replies back up to the broker, not here
                sock.rcvbuf = 64 * 1024  # nor in the kernel: no autotuning
            sock.connect(broker.frontend)
            sockets.append(sock)
        deaf, readers = sockets[:deaf_count], sockets[deaf_count:]

        # The flood: everything at once. NOBLOCK, so that a full queue would
        # fail the test (zmq.Again) rather than hang it; it does not happen,
        # as each client's own send queue (SNDHWM 1000) takes its 1000.
        waiting: dict[zmq.Socket[bytes], set[bytes]] = {sock: set() for sock in sockets}
        for n, sock in enumerate(sockets):
            for k in range(per_client):
                size = deaf_body if n < deaf_count else body
                request = (b"%d:%d:" % (n, k)).ljust(size, b".")
                sock.send_multipart([b"", request], zmq.NOBLOCK)
                waiting[sock].add(request)
        accepted = sum(map(len, waiting.values()))
        assert accepted == clients * per_client == 100_000
        waiting_mib = sum(map(len, itertools.chain(*waiting.values()))) / 2**20

        # The slow worker alone, for a while: 150 requests at 10 ms each.
        wait_until(lambda: broker.latest_counters().get("requests", 0) >= 150)
        answered: dict[zmq.Socket[bytes], set[bytes]] = {sock: set() for sock in sockets}

        def read(sock: zmq.Socket[bytes]) -> int:
            """Take every reply that has arrived; return how many."""
            count = 0
            while True:
                try:
                    empty, reply = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    return count
                assert empty == b"" and reply in waiting[sock], "a reply reached the wrong client"
                assert reply not in answered[sock], "a reply came twice"
                answered[sock].add(reply)
                count += 1

        for sock in readers:  # what the slow worker has answered so far
            read(sock)
        newcomer = context.socket(zmq.DEALER)
        newcomer.connect(broker.frontend)
        newcomer.send_multipart([b"", b"newcomer"])
        poller = zmq.Poller()
        for sock in readers:
            poller.register(sock, zmq.POLLIN)
        before_newcomer = 0  # replies to the readers while the newcomer waits
        deadline = time.monotonic() + TIMEOUT
        while not newcomer.poll(0):
            assert time.monotonic() < deadline, "the newcomer was never served"
            for sock, _ in poller.poll(10):
                before_newcomer += read(sock)
        assert newcomer.recv_multipart() == [b"", b"newcomer"]
        # One round is a request from each of the 101 clients; 98 of them read.
        assert before_newcomer <= 2 * clients, f"the newcomer waited {before_newcomer} replies"

        waiting_growth_mib = memory.peak_mib - memory.start_mib

        # Help arrives: eight fast echo workers drain the backlog.
        helpers = subprocess.Popen(
            [sys.executable, "-m", "lb_ioloop.bench.load", "workers", broker.backend, "8"],
            stdout=subprocess.DEVNULL,
        )
        stack.callback(lambda: (helpers.terminate(), helpers.wait(TIMEOUT)))
        deadline = time.monotonic() + 2 * TIMEOUT
        while any(len(answered[sock]) < len(waiting[sock]) for sock in readers):
            assert time.monotonic() < deadline, "replies are missing"
            for sock, _ in poller.poll(100):
                read(sock)
        # Everything has reached a worker and come back...
        wait_until(
            lambda: (
                (counters := broker.latest_counters())["requests"] == accepted + 1
                and counters["replies"] + counters["undeliverable"] == accepted + 1
            )
        )
        dropped = broker.latest_counters()["undeliverable"]
        # ...and the deaf clients now read all that was not dropped.
        deaf_accepted = sum(len(waiting[sock]) for sock in deaf)

        def deaf_have_read_all() -> bool:
            for sock in deaf:
                read(sock)
            return sum(len(answered[sock]) for sock in deaf) == deaf_accepted - dropped

        wait_until(deaf_have_read_all)
        broker.signal(signal.SIGTERM)
        status, err = broker.finish()
        growth_mib = memory.stop()

    summary = parse_counters(err.splitlines()[-1])
    assert status == 0 and "Traceback" not in err
    assert summary["requests"] == accepted + 1 and summary["malformed"] == 0
    assert summary["replies"] + summary["undeliverable"] == accepted + 1
    print(
        f"\nbroker RSS growth, hwm {hwm or 'default'}: {waiting_growth_mib:.0f} MiB while "
        f"{waiting_mib:.0f} MiB waited, {growth_mib:.0f} MiB at the peak; "
        f"{dropped} replies dropped; the newcomer came after {before_newcomer} replies"
    )
    if hwm is None:
        # It holds all that is waiting (with ZeroMQ's and malloc's overheads),
        # and its queue for each deaf client holds all 1000 replies.
        assert waiting_growth_mib > waiting_mib / 2
        assert dropped == 0
    else:
        # The HWM lets the broker hold 98 x 100 requests of 1 KiB and 2 x 100
        # of 16 KiB: 12.7 MiB, twice that with ZeroMQ's and malloc's
        # overheads. More than 5 MiB shows that the requests did reach it.
        # (Bigger deaf requests, for bigger kernel buffers, scale both sides.)
        assert 5 < waiting_growth_mib and growth_mib < waiting_mib / 2, f"{growth_mib:.0f} MiB"
        assert 0 < dropped < deaf_accepted, "no reply was dropped: no queue was filled"


def test_a_client_with_at_most_half_the_hwm_in_flight_loses_no_reply():
    """With ``--hwm 4``, clients that keep 2 requests in flight and read
    their replies lose none (README, "Memory while requests wait")."""
    with ExitStack() as stack:
        broker = stack.enter_context(broker_process("--hwm", "4"))
        workers = subprocess.Popen(
            [sys.executable, "-m", "lb_ioloop.bench.load", "workers", broker.backend, "8"],
            stdout=subprocess.PIPE,
            text=True,
        )
        stack.callback(lambda: (workers.terminate(), workers.communicate(timeout=TIMEOUT)))
        assert read_line(workers.stdout) == "ready\n"
        # 4 DEALER clients, 2 requests in flight each, for 2 s, 100-byte bodies.
        load = subprocess.run(
            [sys.executable, "-m", "lb_ioloop.bench.load", "clients", broker.frontend]
            + ["4", "2", "2", "100"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        broker.signal(signal.SIGTERM)
        status, err = broker.finish()
    figures = json.loads(load.stdout)
    summary = parse_counters(err.splitlines()[-1])
    assert figures["answered"] > 1000 and figures["lost"] == 0
    assert status == 0 and summary["undeliverable"] == 0
    assert summary["replies"] == figures["answered"]
