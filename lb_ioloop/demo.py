"""The guide's example, parameterised: N clients, M workers, one transport.

Clients and workers run as threads; the broker runs on the asyncio loop that
calls :func:`run_demo`. The broker stops after one reply per client, the
clients print their replies, the workers are told to stop, and every socket,
context, thread and ipc file is gone when the coroutine returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Literal

import zmq

from .broker import BrokerCounters, LoadBalancingBroker
from .tasks import client_task, say, worker_task

__all__ = ["TRANSPORTS", "Transport", "demo_endpoints", "run_demo"]

Transport = Literal["ipc", "tcp", "inproc"]
TRANSPORTS: tuple[Transport, ...] = ("ipc", "tcp", "inproc")


@contextlib.contextmanager
def demo_endpoints(transport: Transport) -> Iterator[tuple[str, str]]:
    """Yield ``(frontend, backend)`` endpoints for a broker to bind.

    ``ipc`` files go in a private temporary folder, removed on exit, so two
    runs in the same directory never collide or leave files behind (the Perl
    program binds ``ipc://frontend.ipc`` in the current directory). ``tcp``
    binds 127.0.0.1 on ports the OS picks; read the real ones back from the
    broker. ``inproc`` names are unique per run.
    """
    if transport == "ipc":
        folder = tempfile.mkdtemp(prefix="lb-ioloop-")
        try:
            yield f"ipc://{folder}/frontend.ipc", f"ipc://{folder}/backend.ipc"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    elif transport == "tcp":
        yield "tcp://127.0.0.1:*", "tcp://127.0.0.1:*"
    elif transport == "inproc":
        tag = f"{id(object()):x}"
        yield f"inproc://frontend-{tag}", f"inproc://backend-{tag}"
    else:
        raise ValueError(f"unknown transport {transport!r}; choose from {', '.join(TRANSPORTS)}")


async def run_demo(
    clients: int = 10,
    workers: int = 3,
    transport: Transport = "ipc",
    *,
    output: Callable[[str], None] = say,
) -> BrokerCounters:
    """Run the example to completion and return the broker's final counters."""
    if clients < 1 or workers < 1:
        raise ValueError("the demo needs at least one client and one worker")
    broker_context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    # inproc connects only sockets of one context; otherwise each peer has its
    # own, as each Perl thread does, and so behaves like a separate process.
    shared = broker_context if transport == "inproc" else None
    worker_contexts = [shared or zmq.Context() for _ in range(workers)]
    with demo_endpoints(transport) as (frontend_endpoint, backend_endpoint):
        broker = LoadBalancingBroker.from_endpoints(
            frontend_endpoint, backend_endpoint, context=broker_context, max_replies=clients
        )
        try:
            broker.start()
            client_threads = [
                threading.Thread(
                    target=client_task,
                    args=(broker.frontend_endpoint, f"client-{n}".encode()),
                    kwargs={"context": shared, "output": output},
                    name=f"client-{n}",
                )
                for n in range(1, clients + 1)
            ]
            worker_threads = [
                threading.Thread(
                    target=worker_task,
                    args=(broker.backend_endpoint, f"worker-{n}".encode(), context),
                    kwargs={"output": output},
                    name=f"worker-{n}",
                )
                for n, context in enumerate(worker_contexts, start=1)
            ]
            for thread in client_threads + worker_threads:
                thread.start()
            await broker.wait_stopped()  # the Perl EV::run, until EV::break
        finally:
            # Linger lets the last replies, already queued, reach their clients.
            broker.close()
        counters = broker.counters
        # Off the loop's thread: joining blocks.
        await asyncio.to_thread(_finish_peers, client_threads, worker_threads, worker_contexts)
        broker_context.term()
    return counters


def _finish_peers(
    client_threads: list[threading.Thread],
    worker_threads: list[threading.Thread],
    worker_contexts: list[zmq.Context[zmq.Socket[bytes]]],
) -> None:
    for thread in client_threads:
        thread.join()
    # Terminating a worker's context wakes its blocking recv with ETERM; the
    # worker closes its socket and term() returns. (With inproc, that context
    # is the broker's, whose sockets are already closed.)
    for context in dict.fromkeys(worker_contexts):
        context.term()
    for thread in worker_threads:
        thread.join()
