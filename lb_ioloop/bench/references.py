"""Reference brokers for the benchmark, not for use: ``python -m lb_ioloop.bench.references``.

Both keep the pattern's rules that matter for a fair comparison (FIFO ready
queue, the frontend read only while a worker is ready) and nothing else: no
validation of envelopes, no handling of vanished peers.

``poller``  the guide's classic blocking loop on ``zmq.Poller``.
``naive``   the guide's ``lbbroker3.py`` design on ZMQStream: one message per
            callback, every send queued through the stream, and
            ``frontend.on_recv`` re-registered on every backend message.

Usage: ``python -m lb_ioloop.bench.references poller|naive FRONTEND BACKEND``.
Each stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import deque

import zmq
from zmq.eventloop.zmqstream import ZMQStream

__all__ = ["naive_stream_broker", "poller_broker"]


def _bound_routers(
    frontend: str, backend: str
) -> tuple[zmq.Context[zmq.Socket[bytes]], zmq.Socket[bytes], zmq.Socket[bytes]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    front, back = context.socket(zmq.ROUTER), context.socket(zmq.ROUTER)
    front.bind(frontend)
    back.bind(backend)
    return context, front, back


def poller_broker(frontend: str, backend: str) -> None:
    """The guide's blocking-poller broker, FIFO, until SIGTERM/SIGINT."""
    context, front, back = _bound_routers(frontend, backend)
    workers: deque[bytes] = deque()
    both, backend_only = zmq.Poller(), zmq.Poller()
    both.register(back, zmq.POLLIN)
    both.register(front, zmq.POLLIN)
    backend_only.register(back, zmq.POLLIN)
    stopping: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, frame: stopping.append(number))
    while not stopping:
        ready = dict((both if workers else backend_only).poll(200))
        if back in ready:
            message = back.recv_multipart()
            workers.append(message[0])
            if len(message) > 3:
                front.send_multipart(message[2:])
        if workers and front in ready:
            message = front.recv_multipart()
            back.send_multipart([workers.popleft(), b"", *message])
    front.close(0)
    back.close(0)
    context.term()


class _NaiveStreamBroker:
    def __init__(self, front: zmq.Socket[bytes], back: zmq.Socket[bytes]) -> None:
        self.workers: deque[bytes] = deque()
        self.frontend, self.backend = ZMQStream(front), ZMQStream(back)
        self.backend.on_recv(self.handle_backend)

    def handle_backend(self, message: list[bytes]) -> None:
        self.workers.append(message[0])
        if len(message) > 3:
            self.frontend.send_multipart(message[2:])
        self.frontend.on_recv(self.handle_frontend)  # on every message, as lbbroker3.py

    def handle_frontend(self, message: list[bytes]) -> None:
        self.backend.send_multipart([self.workers.popleft(), b"", *message])
        if not self.workers:
            self.frontend.stop_on_recv()


async def naive_stream_broker(frontend: str, backend: str) -> None:
    """The lbbroker3.py design (LRU order corrected), until SIGTERM/SIGINT."""
    context, front, back = _bound_routers(frontend, backend)
    broker = _NaiveStreamBroker(front, back)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    broker.frontend.close(0)
    broker.backend.close(0)
    context.term()


def main(argv: list[str]) -> int:
    """Run the reference broker named in ``argv``."""
    if len(argv) != 3 or argv[0] not in ("poller", "naive"):
        print(
            "usage: python -m lb_ioloop.bench.references poller|naive FRONTEND BACKEND",
            file=sys.stderr,
        )
        return 2
    name, frontend, backend = argv
    if name == "poller":
        poller_broker(frontend, backend)
    else:
        asyncio.run(naive_stream_broker(frontend, backend))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
