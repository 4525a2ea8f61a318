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

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence

import zmq

from .protocol import DELIMITER, Frames

__all__ = ["NoReply", "client_requests", "client_task", "output_failure", "say", "worker_task"]

logger = logging.getLogger("lb_ioloop.tasks")

_say_lock = threading.Lock()
_say_failures: list[Exception] = []  # the first write to stdout that failed


def say(line: str) -> None:
    """Print ``line`` whole, even with many threads printing at once.

    ``print`` writes the text and the newline separately, so two threads can
    interleave them; one locked write of both cannot.

    If stdout cannot be written (closed, a pipe whose reader left, a full
    disk), the failure is recorded for :func:`output_failure` and the line
    dropped; it never raises, so a worker still sends its reply and the
    example still finishes instead of hanging on a dead thread.
    """
    with _say_lock:
        if _say_failures:
            return
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (OSError, ValueError, AttributeError) as error:
            _say_failures.append(error)
            _silence_stdout()


def output_failure() -> Exception | None:
    """The error that stopped :func:`say` from printing, if any."""
    return _say_failures[0] if _say_failures else None


def _silence_stdout() -> None:
    # Point fd 1 at /dev/null, so that Python's own flush at exit does not
    # fail a second time with an "Exception ignored" message.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


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
    """The example's client: one request, print ``Client: <reply>``, return the reply.

    Waits as long as it takes, like the Perl client thread. With no
    ``context``, the task makes its own and terminates it when done.
    """
    replies = client_requests(
        [endpoint], identity=identity, message=request, timeout=None, context=context, output=output
    )
    return replies[0]


def worker_task(
    endpoint: str,
    identity: bytes | None,
    context: zmq.Context[zmq.Socket[bytes]],
    *,
    reply: bytes | None = b"OK",
    delay: float = 0.0,
    prepare: Callable[[zmq.Socket[bytes]], None] | None = None,
    output: Callable[[str], None] = say,
) -> None:
    """Serve requests over a REQ socket until ``context`` is terminated.

    Says READY once, then for each request prints ``Worker: <request>``,
    waits ``delay`` seconds (simulated work) and answers ``reply``, or the
    request's own body when ``reply`` is None (an echo worker). ``identity``
    None lets ZeroMQ pick one. ``prepare(socket)`` runs before the connect
    (for CURVE keys, say).

    The context is passed in, not made here, because terminating it from
    another thread is how the worker is told to stop: its blocking ``recv``
    raises :class:`zmq.ContextTerminated`, it closes its socket, and
    ``term()`` returns in the thread that asked.
    """
    worker = context.socket(zmq.REQ)
    try:
        worker.linger = 0
        if identity is not None:
            worker.identity = identity
        if prepare is not None:
            prepare(worker)
        worker.connect(endpoint)
        worker.send(b"READY")  # tell the broker we're ready for work
        while True:
            frames = worker.recv_multipart()
            # Everything before the first empty frame is the return address:
            # one frame for a client talking straight to the broker, more if
            # the client sits behind other ROUTER hops. Keep it all.
            try:
                split = frames.index(DELIMITER)
            except ValueError:  # not from a broker of this pattern
                split = -1
            envelope, request = frames[: max(split, 0)], frames[split + 1 :]
            try:
                output(f"Worker: {_text(request)}")
            except Exception:  # a failing printer must not cost the reply
                logger.warning("a worker's output failed", exc_info=True)
            if delay:
                time.sleep(delay)
            answer = request if reply is None else [reply]
            worker.send_multipart([*envelope, DELIMITER, *answer])
    except zmq.ContextTerminated:
        pass  # asked to stop
    finally:
        worker.close()


class NoReply(TimeoutError):
    """A request got no reply within the client's timeout."""


def client_requests(
    endpoints: Sequence[str],
    *,
    count: int = 1,
    message: bytes = b"HELLO",
    timeout: float | None = 10.0,
    identity: bytes | None = None,
    context: zmq.Context[zmq.Socket[bytes]] | None = None,
    prepare: Callable[[zmq.Socket[bytes]], None] | None = None,
    output: Callable[[str], None] = say,
) -> list[Frames]:
    """Send ``count`` requests one after another; print and return each reply.

    With several endpoints (several brokers), the REQ socket deals requests
    out to them in turn: the pattern's way to scale out across hosts. A
    request dealt to a broker that is down waits for it (ZeroMQ reconnects)
    until the timeout fires.
    Raises :class:`NoReply` if a request is not answered within ``timeout``
    seconds (None: wait for ever). ``identity`` None lets ZeroMQ pick one.
    ``prepare(socket)`` runs before the connects (for CURVE keys, say).
    With no ``context``, the function makes its own and terminates it.
    """
    own_context = context is None
    ctx = zmq.Context() if context is None else context
    client = ctx.socket(zmq.REQ)
    timeout_ms = -1 if timeout is None else max(1, int(timeout * 1000))
    replies: list[Frames] = []
    try:
        client.linger = 0
        # Not ZMQ_IMMEDIATE: with it (and a POLLOUT wait before the send), a
        # REQ over tcp was seen here to miss the reply to its first request
        # about once in a dozen runs (libzmq 4.3.5); the cause is not pinned down.
        if identity is not None:
            client.identity = identity  # makes tracing easier; the broker needs none
        if prepare is not None:
            prepare(client)
        for endpoint in endpoints:
            client.connect(endpoint)
        for number in range(1, count + 1):
            client.send(message)
            if not client.poll(timeout_ms, zmq.POLLIN):
                raise NoReply(f"no reply within {timeout:g}s to request {number} of {count}")
            reply = client.recv_multipart()
            output(f"Client: {_text(reply)}")
            replies.append(reply)
        return replies
    finally:
        client.close()
        if own_context:
            ctx.term()
