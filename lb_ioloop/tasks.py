"""The example's clients and workers: blocking REQ peers meant to run in threads.

As in the Perl program, each task would conceptually be a separate process; it
runs in a thread only to make the example easy to start and stop. Each gets
its own ZeroMQ context unless one is passed in (the ``inproc`` transport only
connects sockets that share a context).

The tasks speak the guide's wire protocol, so they work with any broker of
the pattern, and this project's broker works with the guide's peers in any
language.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import zmq

from .protocol import DELIMITER, Frames

__all__ = ["client_task", "say", "worker_task"]

_say_lock = threading.Lock()


def say(line: str) -> None:
    """Print ``line`` whole, even with many threads printing at once.

    ``print`` writes the text and the newline separately, so two threads can
    interleave them; one locked write of both cannot.
    """
    with _say_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _text(frames: Frames) -> str:
    return " ".join(frame.decode("utf-8", "replace") for frame in frames)


def client_task(
    endpoint: str,
    identity: bytes,
    *,
    context: zmq.Context[zmq.Socket[bytes]] | None = None,
    request: bytes = b"HELLO",
    output: Callable[[str], None] = say,
) -> Frames:
    """Send one request over a REQ socket, print ``Client: <reply>``, return the reply.

    Blocks until the reply arrives. With no ``context``, the task makes its own
    and terminates it when done, like the Perl client thread.
    """
    own_context = context is None
    ctx = zmq.Context() if context is None else context
    client = ctx.socket(zmq.REQ)
    try:
        client.linger = 0
        client.identity = identity  # makes tracing easier; the broker needs none
        client.connect(endpoint)
        client.send(request)
        # REQ strips the delimiter: what remains is the body the worker sent.
        reply = client.recv_multipart()
        output(f"Client: {_text(reply)}")
        return reply
    finally:
        client.close()
        if own_context:
            ctx.term()


def worker_task(
    endpoint: str,
    identity: bytes,
    context: zmq.Context[zmq.Socket[bytes]],
    *,
    reply: bytes = b"OK",
    output: Callable[[str], None] = say,
) -> None:
    """Serve requests over a REQ socket until ``context`` is terminated.

    Says READY once, then for each request prints ``Worker: <request>`` and
    answers ``reply``. The context is passed in, not made here, because
    terminating it from another thread is how the worker is told to stop: its
    blocking ``recv`` raises :class:`zmq.ContextTerminated`, it closes its
    socket, and ``term()`` returns in the thread that asked.
    """
    worker = context.socket(zmq.REQ)
    try:
        worker.linger = 0
        worker.identity = identity
        worker.connect(endpoint)
        worker.send(b"READY")  # tell the broker we're ready for work
        while True:
            frames = worker.recv_multipart()
            # Everything before the first empty frame is the return address:
            # one frame for a client talking straight to the broker, more if
            # the client sits behind other ROUTER hops. Keep it all.
            split = frames.index(DELIMITER)
            envelope, request = frames[:split], frames[split + 1 :]
            output(f"Worker: {_text(request)}")
            worker.send_multipart([*envelope, DELIMITER, reply])
    except zmq.ContextTerminated:
        pass  # asked to stop
    finally:
        worker.close()
