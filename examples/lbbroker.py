"""Load-balancing broker: the ZeroMQ guide's Perl example, ported to Tornado.

Clients and workers are shown here in-process, as threads, just to make the
example easy to start and stop. Each has its own ZeroMQ context and so
conceptually acts as a separate process.

The broker routes requests between the two layers. Workers signal READY when
they start; after that a reply is what makes a worker ready again. Ready
workers wait in a queue, least recently used first. The broker listens to the
backend (workers) all the time, and to the frontend (clients) only while a
worker is ready, so requests it cannot serve yet wait in ZeroMQ's own queues.

Run it: ``python examples/lbbroker.py``. It prints ten ``Client: OK`` lines
and ten ``Worker: HELLO`` lines, then exits 0.

What differs from the Perl program, on purpose (docs/PORTING.md says why):
the ipc files live in a private temporary folder, removed on exit; every
worker line is printed before the program exits; the broker ends its loop
after one reply per client and then stops the workers instead of abandoning
them.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading

import zmq

from lb_ioloop import LoadBalancingBroker, client_task, worker_task

NBR_CLIENTS = 10
NBR_WORKERS = 3


async def main() -> None:
    # Perl binds ipc://frontend.ipc in the current directory; a private folder
    # lets two copies run side by side and leaves nothing behind.
    folder = tempfile.mkdtemp(prefix="lbbroker-")
    frontend_endpoint = f"ipc://{folder}/frontend.ipc"
    backend_endpoint = f"ipc://{folder}/backend.ipc"
    try:
        # Prepare our context and sockets: two ROUTERs, bound, in a broker
        # that will end its loop after one reply per client.
        context = zmq.Context()
        broker = LoadBalancingBroker.from_endpoints(
            frontend_endpoint, backend_endpoint, context=context, max_replies=NBR_CLIENTS
        )

        # threads->create('client_task', ...) for each client; each makes its
        # own context.
        clients = [
            threading.Thread(target=client_task, args=(frontend_endpoint, f"client-{n}".encode()))
            for n in range(1, NBR_CLIENTS + 1)
        ]
        # Workers get a context from us rather than making their own, so that
        # we can stop them: terminating it wakes their blocking recv. (Perl
        # detaches them and lets the process exit under them.)
        worker_contexts = [zmq.Context() for _ in range(NBR_WORKERS)]
        workers = [
            threading.Thread(
                target=worker_task,
                args=(backend_endpoint, f"worker-{n}".encode(), worker_context),
            )
            for n, worker_context in enumerate(worker_contexts, start=1)
        ]
        for thread in clients + workers:
            thread.start()

        # The Perl `AE::io` watcher on the backend and EV::run: the broker's
        # streams now live on this loop until it routes NBR_CLIENTS replies.
        broker.start()
        await broker.wait_stopped()
        broker.close()  # lingers until the last replies are on their way

        # Give client threads time to flush their output: $_->join() for ...
        # (Joins and terms block, so they run off the loop's thread.)
        for thread in clients:
            await asyncio.to_thread(thread.join)
        for worker_context in worker_contexts:
            # The worker sees ETERM, closes its socket, and term() returns.
            await asyncio.to_thread(worker_context.term)
        for thread in workers:
            await asyncio.to_thread(thread.join)
        await asyncio.to_thread(context.term)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
