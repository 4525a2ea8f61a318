"""The guide's example, parameterised: N clients, M workers, one transport.

Clients and workers run as threads; the broker runs on the asyncio loop that
calls :func:`run_demo`. The broker stops after one reply per client, the
clients print their replies, the workers are told to stop, and every socket,
context, thread and ipc file is gone when the coroutine returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import resource
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Literal

import zmq

from .broker import BrokerCounters, LoadBalancingBroker
from .tasks import client_task, say, worker_task

__all__ = ["TRANSPORTS", "DemoError", "Transport", "demo_endpoints", "run_demo"]

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


class DemoError(RuntimeError):
    """The demo cannot run as asked, or a client or worker thread failed."""


# File descriptors one client or worker costs, broker side included: its own
# context (I/O thread poller and mailboxes) plus its socket and connection.
_FDS_PER_PEER = {"ipc": 8, "tcp": 8, "inproc": 2}
_FDS_BESIDES = 64  # the broker, the interpreter, the loop


def _make_room(transport: Transport, peers: int) -> None:
    """Raise the open-files limit as far as needed, or fail with a clear error.

    With one context per thread, the demo needs a few descriptors per client
    and worker; libzmq aborts the whole process when it runs out, so check
    first (and lift the soft limit to the hard one if that is enough).
    """
    needed = peers * _FDS_PER_PEER[transport] + _FDS_BESIDES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and needed > soft:
        ceiling = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        if ceiling < needed:
            raise DemoError(
                f"{peers} clients and workers over {transport} need about {needed} open "
                f"files; the limit is {hard} (see ulimit -n)"
            )


def _peer_thread(
    name: str,
    target: Callable[[], object],
    failures: list[BaseException],
    on_failure: Callable[[], None],
) -> threading.Thread:
    """A thread that records a failure and stops the demo instead of dying silently."""

    def run() -> None:
        try:
            target()
        except zmq.ContextTerminated:
            pass  # asked to stop
        except BaseException as error:  # noqa: BLE001 - reported by run_demo
            failures.append(error)
            on_failure()

    return threading.Thread(target=run, name=name)


async def run_demo(
    clients: int = 10,
    workers: int = 3,
    transport: Transport = "ipc",
    *,
    output: Callable[[str], None] = say,
) -> BrokerCounters:
    """Run the example to completion and return the broker's final counters.

    Raises :class:`DemoError` if the machine cannot hold that many peers, or
    if a client or worker thread fails (every thread is still ended first).
    """
    if clients < 1 or workers < 1:
        raise ValueError("the demo needs at least one client and one worker")
    _make_room(transport, clients + workers)
    broker_context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    if transport == "inproc":
        # inproc connects only sockets of one context: everybody shares the
        # broker's, which must then hold them all (libzmq's default is 1023).
        broker_context.max_sockets = clients + workers + 16
        peer_contexts = [broker_context] * (clients + workers)
    else:
        # Otherwise each peer has its own, as each Perl thread does, and so
        # behaves like a separate process. We make them, so we can stop them.
        peer_contexts = [zmq.Context() for _ in range(clients + workers)]
    client_contexts, worker_contexts = peer_contexts[:clients], peer_contexts[clients:]
    loop = asyncio.get_running_loop()
    failures: list[BaseException] = []
    threads: list[threading.Thread] = []
    try:
        with demo_endpoints(transport) as (frontend_endpoint, backend_endpoint):
            broker = LoadBalancingBroker.from_endpoints(
                frontend_endpoint, backend_endpoint, context=broker_context, max_replies=clients
            )
            try:
                broker.start()

                def stop_broker() -> None:  # from a peer thread
                    loop.call_soon_threadsafe(broker.stop)

                for n, context in enumerate(worker_contexts, start=1):
                    serve = functools.partial(
                        worker_task,
                        broker.backend_endpoint,
                        f"worker-{n}".encode(),
                        context,
                        output=output,
                    )
                    threads.append(_peer_thread(f"worker-{n}", serve, failures, stop_broker))
                for n, context in enumerate(client_contexts, start=1):
                    ask = functools.partial(
                        client_task,
                        broker.frontend_endpoint,
                        f"client-{n}".encode(),
                        context=context,
                        output=output,
                    )
                    threads.append(_peer_thread(f"client-{n}", ask, failures, stop_broker))
                for thread in threads:
                    thread.start()
                await broker.wait_stopped()  # the Perl EV::run, until EV::break
            finally:
                # Linger lets the last replies, already queued, reach their clients.
                broker.close()
            # Off the loop's thread: joining blocks.
            await asyncio.to_thread(
                _end_peers, threads[workers:], threads[:workers], peer_contexts, bool(failures)
            )
    finally:
        # After an error or a cancellation (Ctrl-C) some peers may still be
        # blocked in ZeroMQ: wake them all (normally this finds every peer
        # ended already and only terminates the broker's context).
        _end_peers(threads, [], [*peer_contexts, broker_context], wake_clients=True)
    if failures:
        raise DemoError(f"a client or worker failed: {failures[0]!r}")
    return broker.counters


def _end_peers(
    client_threads: list[threading.Thread],
    worker_threads: list[threading.Thread],
    contexts: list[zmq.Context[zmq.Socket[bytes]]],
    wake_clients: bool,
) -> None:
    """Join the clients, stop the workers, join them; idempotent.

    Terminating a worker's context wakes its blocking recv with ETERM; the
    worker closes its socket and ``term()`` returns. (With inproc, that
    context is the broker's, whose sockets are already closed.) With
    ``wake_clients``, every context is terminated first, because something
    broke and clients may wait for ever for a reply that will not come.
    Terminating is safe where destroy() is not: each peer closes its own
    socket, in its own thread.
    """

    def terminate_all() -> None:
        for context in dict.fromkeys(contexts):
            if not context.closed:
                context.term()

    if wake_clients:
        terminate_all()
    for thread in client_threads:
        if thread.ident is not None:  # started
            thread.join()
    terminate_all()
    for thread in worker_threads:
        if thread.ident is not None:
            thread.join()
