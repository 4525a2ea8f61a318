"""A soak run: mixed load for ten minutes while workers and clients come and go.

Not part of ``make test``: run it with ``make soak`` (``pytest -m soak -s``).
``LB_IOLOOP_SOAK_SECONDS`` sets its length (default 600) and
``LB_IOLOOP_SOAK_SEED`` the churn's random seed (default 1).

The load, all over tcp on 127.0.0.1 against an ``lb-ioloop broker`` process:

* steady clients: 8 DEALER clients, all in one thread, each keeping one
  request in flight for the whole run; every request carries an id, so each
  reply is checked against its own client, and a request unanswered after
  5 s is marked overdue and replaced (a late reply is still recognised);
* churn, a step then a pause of 0.1-0.5 s: ``lb-ioloop worker`` processes started,
  stopped (SIGTERM) and killed (SIGKILL); "victims", workers that hold their
  request for an hour and are killed once they have it; ``lb-ioloop client``
  processes of 20 requests each, some of them killed part-way.

What must hold at the end:

* the broker never stopped serving: each one-second stats line came within
  3 s of the one before and shows more requests; no steady request was
  answered late (after 5 s); it exits 0 on SIGTERM, no traceback;
* the counters add up: requests = replies + undeliverable + lost, where lost
  is at least the number of victims (each surely died holding a request) and
  at most the number of workers that left (the broker gives a worker one
  request at a time, so a worker can take at most one with it);
* every loss a client saw (overdue steady requests, client processes that
  timed out) is one of those: at most ``lost`` of them;
* every reply went to its own client; no message was malformed;
* resident memory does not grow: the median of the run's last third is at
  most 2 MiB above the median of its first third, the first minute (or
  tenth of a shorter run) left out as a warm-up.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import statistics
import subprocess
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

import pytest
import zmq

from .processes import TIMEOUT, broker_process, lb_ioloop, parse_counters, read_line, resident_mib

pytestmark = pytest.mark.soak

OVERDUE_AFTER = 5.0  # seconds before a steady request is counted as lost
MIN_WORKERS, MAX_WORKERS = 2, 8
CLIENT_REQUESTS = 20
CLIENT_TIMEOUT = 10


class SteadyClients(threading.Thread):
    """DEALER clients in a thread, each keeping one request in flight until stopped."""

    def __init__(self, frontend: str, count: int) -> None:
        super().__init__(name="steady-clients")
        self.frontend = frontend
        self.count = count
        self.stopping = threading.Event()
        self.answered = 0
        self.late = 0  # answered after being counted overdue
        self.misrouted = 0  # a reply whose id was not one of its client's
        # request id -> its client: not answered (so far) within OVERDUE_AFTER
        self.overdue: dict[bytes, zmq.Socket[bytes]] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # reported by the test, not lost in a thread
            self.error = error

    def _run(self) -> None:
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sockets: list[zmq.Socket[bytes]] = []
        try:
            self._serve(context, sockets)
        finally:
            # The list lives here, not in _serve: a socket nobody holds any
            # more is collected at once, and pyzmq's "unclosed socket"
            # warning for it would fail the test.
            for sock in sockets:
                sock.close(linger=0)
            context.term()

    def _serve(
        self, context: zmq.Context[zmq.Socket[bytes]], sockets: list[zmq.Socket[bytes]]
    ) -> None:
        poller = zmq.Poller()
        for _ in range(self.count):
            sock = context.socket(zmq.DEALER)
            sock.linger = 0
            sock.connect(self.frontend)
            poller.register(sock, zmq.POLLIN)
            sockets.append(sock)
        # request id -> (its client, when it was sent)
        in_flight: dict[bytes, tuple[zmq.Socket[bytes], float]] = {}
        numbers = iter(range(10**12))

        def send(sock: zmq.Socket[bytes]) -> None:
            request_id = b"steady-%d" % next(numbers)
            sock.send_multipart([b"", request_id])
            in_flight[request_id] = (sock, time.monotonic())

        for sock in sockets:
            send(sock)
        next_check = time.monotonic() + 1
        stop_at: float | None = None
        while in_flight:
            if stop_at is None and self.stopping.is_set():
                stop_at = time.monotonic() + 2 * OVERDUE_AFTER  # a grace for the last ones
            if stop_at is not None and time.monotonic() > stop_at:
                break
            for sock, _ in poller.poll(100):
                while True:
                    try:
                        _, request_id = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if self.overdue.get(request_id) is sock:
                        del self.overdue[request_id]
                        self.late += 1
                    elif in_flight.get(request_id, (None,))[0] is sock:
                        del in_flight[request_id]
                        self.answered += 1
                        if stop_at is None:
                            send(sock)
                    else:
                        self.misrouted += 1
            now = time.monotonic()
            if now >= next_check:  # replace requests lost with a worker
                next_check = now + 1
                for request_id, (sock, sent) in list(in_flight.items()):
                    if now - sent > OVERDUE_AFTER:
                        del in_flight[request_id]
                        self.overdue[request_id] = sock
                        if stop_at is None:
                            send(sock)
        self.overdue.update((request_id, sock) for request_id, (sock, _) in in_flight.items())


@dataclass
class Churn:
    """The processes that come and go, and what became of them."""

    backend: str
    frontend: str
    rng: random.Random
    workers: list[subprocess.Popen[str]] = field(default_factory=list)
    clients: list[tuple[subprocess.Popen[str], str]] = field(default_factory=list)
    workers_left: int = 0  # stopped or killed: each may have taken a request
    victims: int = 0  # killed while surely holding a request
    clients_ok: int = 0
    clients_timed_out: int = 0
    clients_killed: int = 0
    clients_wrong: list[str] = field(default_factory=list)
    client_number: int = 0

    def start_worker(self) -> None:
        self.workers.append(
            subprocess.Popen(
                lb_ioloop("worker", "--connect", self.backend, "--echo"),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # it prints every request
                text=True,
            )
        )

    def end_worker(self, signum: signal.Signals) -> None:
        worker = self.workers[self.rng.randrange(len(self.workers))]
        worker.send_signal(signum)
        worker.wait(TIMEOUT)
        self.workers.remove(worker)  # only now: on a timeout, the clean-up kills it
        self.workers_left += 1

    def victim(self) -> None:
        """A worker that takes a request and dies with it: the pattern loses it."""
        worker = subprocess.Popen(
            lb_ioloop("worker", "--connect", self.backend, "--echo", "--delay", "3600"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert read_line(worker.stdout).startswith("Worker: ")
        finally:
            worker.kill()
            worker.communicate(timeout=TIMEOUT)
        self.workers_left += 1
        self.victims += 1

    def start_client(self) -> None:
        self.client_number += 1
        message = f"soak-{self.client_number}"
        process = subprocess.Popen(
            lb_ioloop(
                "client",
                "--connect",
                self.frontend,
                "--requests",
                str(CLIENT_REQUESTS),
                "--timeout",
                str(CLIENT_TIMEOUT),
                "--message",
                message,
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.clients.append((process, message))

    def kill_client(self) -> None:
        running = [entry for entry in self.clients if entry[0].poll() is None]
        if running:
            process, _ = self.rng.choice(running)
            process.kill()

    def reap_clients(self, wait: bool = False) -> None:
        """Account for each client process that has ended (all of them if ``wait``)."""
        still_running = []
        for process, message in self.clients:
            if not wait and process.poll() is None:
                still_running.append((process, message))
                continue
            out, err = process.communicate(timeout=CLIENT_TIMEOUT + TIMEOUT)
            served = [f"Client: {message}"] * CLIENT_REQUESTS  # REQ: its own replies only
            if process.returncode == -signal.SIGKILL:
                self.clients_killed += 1
            elif process.returncode == 0 and out.splitlines() == served:
                self.clients_ok += 1
            elif process.returncode == 1 and "no reply within" in err:
                self.clients_timed_out += 1
            else:
                self.clients_wrong.append(f"{message}: exit {process.returncode} {out!r} {err!r}")
        self.clients = still_running

    def step(self) -> None:
        """One random change to the population."""
        actions = {
            self.start_worker: 3 if len(self.workers) < MAX_WORKERS else 0,
            lambda: self.end_worker(signal.SIGTERM): 2 if len(self.workers) > MIN_WORKERS else 0,
            lambda: self.end_worker(signal.SIGKILL): 1 if len(self.workers) > MIN_WORKERS else 0,
            self.victim: 0.3,
            self.start_client: 3,
            self.kill_client: 1,
        }
        action = self.rng.choices(list(actions), weights=list(actions.values()))[0]
        action()
        self.reap_clients()

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.terminate()
            worker.wait(TIMEOUT)
        self.workers.clear()

    def kill_all(self) -> None:
        """Clean-up after a failure: no process is left running or unwaited."""
        for worker in self.workers:
            worker.kill()
            worker.wait(TIMEOUT)
        for process, _ in self.clients:
            process.kill()
            process.communicate(timeout=TIMEOUT)


def _setting(name: str, default: str, minimum: int) -> int:
    text = os.environ.get(name, default)
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        pytest.fail(f"{name} must be a whole number >= {minimum}, not {text!r}", pytrace=False)
    return value


def test_soak_mixed_load_with_peers_coming_and_going():
    soak_seconds = _setting("LB_IOLOOP_SOAK_SECONDS", "600", minimum=10)
    seed = _setting("LB_IOLOOP_SOAK_SEED", "1", minimum=0)
    rss: list[tuple[float, float]] = []  # (seconds into the run, MiB)
    with ExitStack() as stack:
        broker = stack.enter_context(broker_process("--stats-interval", "1"))
        broker.follow_stderr()
        churn = Churn(broker.backend, broker.frontend, random.Random(seed))
        stack.callback(churn.kill_all)
        for _ in range(4):
            churn.start_worker()
        steady = SteadyClients(broker.frontend, 8)
        steady.start()
        stack.callback(lambda: (steady.stopping.set(), steady.join()))

        start = time.monotonic()
        next_sample = start
        while (now := time.monotonic()) < start + soak_seconds:
            assert broker.process.poll() is None, "the broker died"
            assert steady.is_alive(), f"the steady clients failed: {steady.error!r}"
            if now >= next_sample:
                rss.append((now - start, resident_mib(broker.process.pid)))
                next_sample = now + 1
            churn.step()
            time.sleep(churn.rng.uniform(0.1, 0.5))  # pacing the churn, not waiting on it

        end = time.monotonic()
        steady.stopping.set()
        steady.join()
        churn.reap_clients(wait=True)
        # Nothing is sent any more: wait for three equal stats lines in a row
        # (a second apart), so that whatever was still in flight has landed.
        lines_at_end = len(broker.stats_lines())

        def settled() -> dict[str, int] | None:
            lines = broker.stats_lines()[lines_at_end:]
            return lines[-1] if len(lines) >= 3 and lines[-1] == lines[-2] == lines[-3] else None

        time_limit = TIMEOUT
        deadline = time.monotonic() + time_limit
        while (settled_counters := settled()) is None:
            assert time.monotonic() < deadline, f"the counters still move after {time_limit}s"
            time.sleep(0.2)
        broker.signal(signal.SIGTERM)
        status, err = broker.finish()
        stats = broker.timed_stats_lines()
        churn.stop_workers()

    assert steady.error is None
    assert status == 0 and "Traceback" not in err, err[-2000:]
    final = parse_counters(err.splitlines()[-1])
    assert final == {**settled_counters, "workers_ready": final["workers_ready"]}
    lost = final["requests"] - final["replies"] - final["undeliverable"]
    seen_lost = len(steady.overdue) + churn.clients_timed_out
    warm = [mib for t, mib in rss if t >= min(60.0, soak_seconds / 10)]
    third = max(1, len(warm) // 3)
    first_mib, last_mib = statistics.median(warm[:third]), statistics.median(warm[-third:])
    print(
        f"\nsoak: {soak_seconds:.0f}s seed={seed}: {final}\n"
        f"  {final['requests'] / soak_seconds:.0f} requests/s; workers that left: "
        f"{churn.workers_left} (victims {churn.victims}); lost with them: {lost}; "
        f"seen lost by clients: {seen_lost} (steady overdue {len(steady.overdue)}, "
        f"late {steady.late}, client processes timed out {churn.clients_timed_out})\n"
        f"  client processes: {churn.clients_ok} ok, {churn.clients_killed} killed; "
        f"steady replies {steady.answered}\n"
        f"  broker RSS MiB: first third {first_mib:.1f}, last third {last_mib:.1f}, "
        f"max {max(mib for _, mib in rss):.1f}"
    )
    assert final["malformed"] == 0
    assert churn.victims <= lost <= churn.workers_left
    assert seen_lost <= lost
    assert steady.misrouted == 0 and churn.clients_wrong == []
    # Never stalled: a stats line every second (3 s allowed), each one with
    # more requests than the one before, until the churn ended.
    during_run = [(at, c["requests"]) for at, c in stats if start < at <= end]
    for (at, requests), (next_at, next_requests) in itertools.pairwise(during_run):
        assert next_at - at < 3, f"no stats line for {next_at - at:.1f}s"
        assert next_requests > requests, (
            f"no request routed in the second before {next_at - start:.0f}s"
        )
    assert steady.late == 0, "a steady request was answered after 5 s"
    assert last_mib <= first_mib + 2, "resident memory grew"
