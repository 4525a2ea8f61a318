"""The benchmark's load, run as separate processes: ``python -m lb_ioloop.bench.load``.

``workers BACKEND COUNT [--hold]``
    COUNT REQ workers in one process. Each says READY, then sends every
    request straight back (the body carries the client's timestamp). With
    ``--hold`` they never answer: for the memory run. Stops on SIGTERM.

``clients FRONTEND COUNT DEPTH SECONDS BODY_BYTES``
    COUNT DEALER clients in one process; each keeps DEPTH requests in flight
    for SECONDS, then waits up to a grace period for the rest. Prints one JSON
    line: requests sent and answered, lost, throughput, round-trip p50/p99.

Both use a zmq.Poller over all their sockets, so 1000 peers cost 1000
sockets, not 1000 threads.
"""

from __future__ import annotations

import json
import signal
import struct
import sys
import time
from array import array

import zmq

__all__ = ["run_clients", "run_workers"]

GRACE_SECONDS = 5.0  # after the run, how long to wait for outstanding replies
_STAMP = struct.Struct("<d")


def run_workers(backend: str, count: int, hold: bool = False) -> None:
    """Serve until SIGTERM or SIGINT (see module doc)."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    poller = zmq.Poller()
    sockets = []
    for _ in range(count):
        worker = context.socket(zmq.REQ)
        worker.linger = 0
        worker.connect(backend)
        worker.send(b"READY")
        poller.register(worker, zmq.POLLIN)
        sockets.append(worker)
    stopping: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, frame: stopping.append(number))
    print("ready", flush=True)
    while not stopping:
        for worker, _ in poller.poll(200):
            if hold:
                poller.unregister(worker)  # busy for ever: keeps its request
                continue
            # [client, b"", body]: the envelope and body go straight back.
            worker.send_multipart(worker.recv_multipart())
    for worker in sockets:
        worker.close(0)
    context.term()


def run_clients(
    frontend: str, count: int, depth: int, seconds: float, body_bytes: int
) -> dict[str, float | int]:
    """Drive the load; return the figures (see module doc)."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    poller = zmq.Poller()
    clients = []
    for _ in range(count):
        client = context.socket(zmq.DEALER)
        client.linger = 0
        client.sndhwm = client.rcvhwm = 0  # the test sets the pace, not the HWM
        client.connect(frontend)
        poller.register(client, zmq.POLLIN)
        clients.append(client)
    padding = b"\0" * max(0, body_bytes - _STAMP.size)
    clock = time.perf_counter
    rtts = array("d")
    sent = answered = 0

    def send(client: zmq.Socket[bytes]) -> None:
        nonlocal sent
        client.send_multipart([b"", _STAMP.pack(clock()) + padding])
        sent += 1

    start = clock()
    deadline = start + seconds
    for client in clients:
        for _ in range(depth):
            send(client)
    while True:
        now = clock()
        if now >= deadline and answered == sent:
            break
        if now >= deadline + GRACE_SECONDS:
            break
        for client, _ in poller.poll(100):
            while True:
                try:
                    frames = client.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                received = clock()
                answered += 1
                rtts.append(received - _STAMP.unpack_from(frames[-1])[0])
                if received < deadline:
                    send(client)
    elapsed = clock() - start
    for client in clients:
        client.close(0)
    context.term()
    ordered = sorted(rtts)

    def percentile(fraction: float) -> float:
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1e6

    return {
        "sent": sent,
        "answered": answered,
        "lost": sent - answered,
        "elapsed_s": round(elapsed, 3),
        "rps": round(answered / elapsed, 1) if elapsed else 0.0,
        "p50_us": round(percentile(0.50), 1),
        "p99_us": round(percentile(0.99), 1),
    }


def main(argv: list[str]) -> int:
    """Command-line entry for the two load processes."""
    if argv[:1] == ["workers"] and len(argv) in (3, 4):
        run_workers(argv[1], int(argv[2]), hold=argv[3:] == ["--hold"])
        return 0
    if argv[:1] == ["clients"] and len(argv) == 6:
        figures = run_clients(argv[1], int(argv[2]), int(argv[3]), float(argv[4]), int(argv[5]))
        print(json.dumps(figures), flush=True)
        return 0
    print(
        "usage: python -m lb_ioloop.bench.load workers BACKEND COUNT [--hold]\n"
        "       python -m lb_ioloop.bench.load clients FRONTEND COUNT DEPTH SECONDS BODY_BYTES",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
