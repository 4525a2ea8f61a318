"""The load-balancing broker, as callbacks on Tornado's IOLoop.

This is the Perl program's main loop (``AE::io`` watchers on the sockets'
``ZMQ_FD``, run by ``EV::run``) expressed with pyzmq's :class:`ZMQStream`:

* the **backend** stream (workers) always receives: a worker's message is
  either READY or a reply, and both make the worker ready again;
* the **frontend** stream (clients) receives only while at least one worker is
  ready. Reception starts when the ready queue goes from empty to non-empty
  and stops when it empties, so requests that cannot be served yet wait in
  ZeroMQ's own queues (and, past the high-water mark, block their senders)
  instead of piling up in this process.

Like the Perl ``while ($socket->has_pollin)`` loops, each callback drains what
is already queued before it returns, instead of paying one trip through the
event loop per message: it serves both sockets in turn (:meth:`_pump`) until
neither has anything queued. Sends go straight to the ROUTER sockets.

Two ZeroMQ subtleties shape the code; both are explained where they matter:

1. ``ZMQ_FD`` is edge-triggered. It signals "something changed", and *any*
   operation on the socket (a send, a receive, reading ``EVENTS``) may consume
   that signal. A send on the frontend can therefore swallow the notice that a
   request arrived on the frontend, and the stream would sleep with a message
   pending. So a callback returns only once a receive on each socket has come
   back empty: then ZeroMQ has processed what was pending, and whatever comes
   next raises a fresh edge.
2. No exception may escape a stream callback. pyzmq re-raises it, and the
   stream then skips its own re-check of ``EVENTS``: messages queued behind
   the one that failed sit unread until some other peer sends something.
   Malformed messages are therefore classified, logged and dropped, never
   raised, and each message is handled inside its own ``try``.

.. warning:: Like every ZMQStream, the broker belongs to the thread of the
   IOLoop it was started on. Call its methods from that loop only; other
   threads hop onto it with ``IOLoop.add_callback``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import zmq
from tornado.ioloop import IOLoop
from zmq.eventloop.zmqstream import ZMQStream

from .fastzmq import StreamSocket, receive_frames, send_frames
from .pool import ReadyWorkers
from .protocol import (
    DELIMITER,
    MalformedMessage,
    Message,
    check_request,
    describe_shape,
    reply_to_client,
)
from .throttle import ThrottledLog

__all__ = ["BindError", "BrokerCounters", "LoadBalancingBroker", "zmq_reason"]

logger = logging.getLogger("lb_ioloop.broker")


class BindError(OSError):
    """An endpoint could not be bound; the message names the socket and why."""


@dataclass(frozen=True)
class BrokerCounters:
    """A snapshot of what a broker has done since it started."""

    requests_routed: int
    """Client requests sent on to a worker."""
    replies_routed: int
    """Worker replies sent back to a client."""
    workers_ready: int
    """Workers waiting in the ready queue right now."""
    malformed_dropped: int
    """Messages on either socket whose envelope was wrong, logged and dropped."""
    undeliverable: int
    """Replies that could not be delivered: the client is gone, or has stopped
    reading and its queue is full (a ROUTER never blocks for one peer)."""
    workers_lost: int
    """Ready workers found gone (or unable to take a request) when one was
    sent to them; the request went to the next ready worker instead."""

    def summary(self) -> str:
        """One line for logs: ``requests=5 replies=5 malformed=0 ...``."""
        return (
            f"requests={self.requests_routed} replies={self.replies_routed} "
            f"malformed={self.malformed_dropped} undeliverable={self.undeliverable} "
            f"workers_lost={self.workers_lost} workers_ready={self.workers_ready}"
        )


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"
    CLOSED = "closed"


class LoadBalancingBroker:
    """Route client requests to the least recently used ready worker.

    Give it two ROUTER sockets, already bound (or use :meth:`from_endpoints`),
    then call :meth:`start` on the IOLoop that should run it::

        async def main():
            broker = LoadBalancingBroker.from_endpoints(
                "tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556")
            broker.start()
            await broker.wait_stopped()   # until stop() or max_replies
            broker.close()

        asyncio.run(main())

    While no worker is ready, requests are not read at all; they wait in
    ZeroMQ's queues and are served in turn as workers become ready.

    ``max_replies``: stop by itself after routing that many replies, as the
    guide's example does ("end the loop after N messages").

    Stopping (:meth:`stop`) ends reception on both sockets and wakes
    :meth:`wait_stopped`; :meth:`close` then closes the sockets, with a linger
    so that replies already handed to ZeroMQ still go out.
    """

    MAX_BATCH = 1000
    """Messages handled per callback before yielding to the loop. The natural
    bound is the number of workers (each request needs a ready worker; each
    worker has one reply in flight); this cap only matters under a flood of
    malformed messages, so that timers and signals still get their turn."""

    def __init__(
        self,
        frontend: zmq.Socket[bytes],
        backend: zmq.Socket[bytes],
        *,
        max_replies: int | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        for name, socket in (("frontend", frontend), ("backend", backend)):
            if socket.type != zmq.ROUTER:
                raise ValueError(f"the {name} must be a ROUTER socket, not {socket.type!r}")
        if max_replies is not None and max_replies < 1:
            raise ValueError(f"max_replies must be at least 1, not {max_replies}")

        # ROUTER_MANDATORY: a send to a peer that is gone raises EHOSTUNREACH,
        # and one to a peer whose queue is full raises EAGAIN, instead of
        # being dropped in silence; the broker needs to know, to give the
        # request to another worker or to count the lost reply. (All sends are
        # NOBLOCK: with MANDATORY a blocking send to a full peer would block
        # the whole loop.) ROUTER_HANDOVER: a worker that reconnects under the
        # same identity takes over the old connection instead of being refused.
        for socket in (frontend, backend):
            socket.router_mandatory = 1
        backend.router_handover = 1

        self._frontend = frontend  # ROUTER that clients connect to
        self._backend = backend  # ROUTER that workers connect to
        self._max_replies = max_replies  # stop after this many replies, or never
        self._log = log or logger
        self._throttled = ThrottledLog(self._log)  # for drops a peer can flood
        self._ready = ReadyWorkers()  # identities of idle workers, oldest first
        # A request whose worker turned out to be gone, while no other worker
        # was ready. The frontend is off then, so there is at most one.
        self._held_request: Message | None = None
        self._state = _State.NEW
        # Made in start(): a ZMQStream and its IOLoop belong to a running loop.
        self._io_loop: IOLoop | None = None
        self._frontend_stream: ZMQStream | None = None
        self._backend_stream: ZMQStream | None = None
        self._stopped: asyncio.Future[None] | None = None
        # A pass of _pump is already scheduled on the loop.
        self._pump_scheduled = False
        # ipc socket files this broker bound itself (from_endpoints), removed
        # by close(): libzmq leaves them behind.
        self._ipc_files: list[str] = []
        # Counters, read through .counters.
        self._requests_routed = 0
        self._replies_routed = 0
        self._malformed_dropped = 0
        self._undeliverable = 0
        self._workers_lost = 0

    @classmethod
    def from_endpoints(
        cls,
        frontend_endpoint: str,
        backend_endpoint: str,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        linger_ms: int = 1000,
        frontend_max_message_size: int | None = None,
        hwm: int | None = None,
        prepare_socket: Callable[[str, zmq.Socket[bytes]], None] | None = None,
        max_replies: int | None = None,
        log: logging.Logger | None = None,
    ) -> LoadBalancingBroker:
        """Make two ROUTER sockets, bind them, and wrap them in a broker.

        ``linger_ms`` bounds how long :meth:`close` waits for queued messages.
        ``frontend_max_message_size`` (ZMQ_MAXMSGSIZE, bytes) makes ZeroMQ
        disconnect a client that sends a bigger message, before the broker
        ever holds it; None means no limit. ``hwm`` is the high-water mark,
        in messages, of each peer's queues on both sockets (ZMQ_SNDHWM and
        ZMQ_RCVHWM): None keeps ZeroMQ's 1000, 0 means no limit. It is what
        bounds the broker's memory while requests wait for a worker; keep it
        at least twice the requests a client keeps in flight, or replies to
        that client can be dropped even while it reads (see README).
        ``prepare_socket(name, socket)`` runs for ``"frontend"`` and
        ``"backend"`` before each binds: the place for options that must
        precede bind, such as CURVE keys.
        Raises :class:`BindError` if an endpoint cannot be bound (malformed,
        address in use, ...); no socket is left open in that case.
        """
        if hwm is not None and not 0 <= hwm < 2**31:
            raise ValueError(f"hwm must be from 0 to 2**31 - 1 (a C int), not {hwm}")
        if frontend_endpoint == backend_endpoint and not frontend_endpoint.endswith((":*", ":0")):
            # ipc would even let the second bind succeed, taking the file over.
            raise BindError(f"the frontend and backend are the same endpoint {frontend_endpoint!r}")
        context = context or zmq.Context.instance()
        frontend = context.socket(zmq.ROUTER, socket_class=StreamSocket)
        backend = context.socket(zmq.ROUTER, socket_class=StreamSocket)
        try:
            for name, socket, endpoint in (
                ("frontend", frontend, frontend_endpoint),
                ("backend", backend, backend_endpoint),
            ):
                socket.linger = linger_ms
                if socket is frontend and frontend_max_message_size is not None:
                    socket.maxmsgsize = frontend_max_message_size
                if hwm is not None:
                    # Per peer, not per socket: a ROUTER keeps one pair of
                    # queues for each connection. Set before bind, so that
                    # every connection's queues get it.
                    socket.sndhwm = socket.rcvhwm = hwm
                if prepare_socket is not None:
                    prepare_socket(name, socket)
                try:
                    socket.bind(endpoint)
                except zmq.ZMQError as error:
                    bind_error = BindError(
                        f"cannot bind the {name} to {endpoint!r}: {zmq_reason(error)}"
                    )
                    bind_error.errno = error.errno
                    raise bind_error from None
                except UnicodeError:  # pyzmq encodes the endpoint as UTF-8
                    raise BindError(
                        f"cannot bind the {name} to {endpoint!r}: not valid UTF-8"
                    ) from None
        except BaseException:
            frontend.close(0)
            backend.close(0)
            raise
        broker = cls(frontend, backend, max_replies=max_replies, log=log)
        for socket in (frontend, backend):
            endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
            if endpoint.startswith("ipc://") and not endpoint.startswith("ipc://@"):
                broker._ipc_files.append(endpoint[len("ipc://") :])
        return broker

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Begin serving on the current IOLoop. Call it from a running loop."""
        if self._state is not _State.NEW:
            raise RuntimeError(f"a broker starts once; this one is {self._state.value}")
        try:
            running_loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "LoadBalancingBroker.start() must be called on a running event loop, "
                "e.g. from a coroutine run by asyncio.run()"
            ) from None
        self._io_loop = IOLoop.current()
        self._stopped = running_loop.create_future()
        self._backend_stream = ZMQStream(self._backend)
        self._frontend_stream = ZMQStream(self._frontend)
        self._state = _State.RUNNING
        # The backend is always heard: the Perl `$worker_poller = AE::io ...`.
        # The frontend stays deaf until the first worker is ready.
        self._backend_stream.on_recv(self._on_backend_message)

    def stop(self) -> None:
        """Stop routing: no more reception on either socket. Idempotent.

        Messages already handed to ZeroMQ are not discarded; :meth:`close`
        decides how long to wait for them.
        """
        if self._state is not _State.RUNNING:
            return
        self._state = _State.STOPPED
        assert self._frontend_stream is not None and self._backend_stream is not None
        self._frontend_stream.stop_on_recv()
        self._backend_stream.stop_on_recv()
        assert self._stopped is not None
        if not self._stopped.done():
            self._stopped.set_result(None)

    async def wait_stopped(self) -> None:
        """Wait until the broker stops, by :meth:`stop` or ``max_replies``."""
        if self._stopped is None:
            raise RuntimeError("the broker was never started")
        await asyncio.shield(self._stopped)

    def close(self, linger_ms: int | None = None) -> None:
        """Stop, then close both sockets. Idempotent.

        ``linger_ms`` overrides the sockets' own linger: how long ZeroMQ keeps
        trying to deliver messages still queued (``None`` keeps the sockets'
        setting).
        """
        if self._state is _State.CLOSED:
            return
        self.stop()
        self._state = _State.CLOSED
        for stream, socket in (
            (self._frontend_stream, self._frontend),
            (self._backend_stream, self._backend),
        ):
            if stream is not None:
                stream.close(linger=linger_ms)  # unregisters the fd, then closes
            elif not socket.closed:
                socket.close(linger=linger_ms)
        for path in self._ipc_files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    # -- what users may read -------------------------------------------------

    @property
    def counters(self) -> BrokerCounters:
        """What the broker has routed and dropped so far."""
        return BrokerCounters(
            requests_routed=self._requests_routed,
            replies_routed=self._replies_routed,
            workers_ready=len(self._ready),
            malformed_dropped=self._malformed_dropped,
            undeliverable=self._undeliverable,
            workers_lost=self._workers_lost,
        )

    @property
    def accepting_requests(self) -> bool:
        """True while the frontend stream is receiving (a worker is ready)."""
        return self._frontend_stream is not None and self._frontend_stream.receiving()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._state is _State.RUNNING

    @property
    def frontend_endpoint(self) -> str:
        """The endpoint the frontend last bound (the real port if bound to ``*``)."""
        return self._frontend.getsockopt_string(zmq.LAST_ENDPOINT)

    @property
    def backend_endpoint(self) -> str:
        """The endpoint the backend last bound (the real port if bound to ``*``)."""
        return self._backend.getsockopt_string(zmq.LAST_ENDPOINT)

    def __repr__(self) -> str:
        return f"<LoadBalancingBroker {self._state.value} {self.counters.summary()}>"

    # -- stream callbacks: the Perl poll_backend / poll_frontend -------------

    def _on_backend_message(self, frames: Message) -> None:
        """ZMQStream callback for the backend; never raises (see module doc)."""
        self._route_safely(self._route_worker_message, frames)
        self._pump()

    def _on_frontend_message(self, frames: Message) -> None:
        """ZMQStream callback for the frontend; never raises (see module doc)."""
        self._route_safely(self._route_request, frames)
        self._pump()

    def _pump(self) -> None:
        """Serve both sockets until neither has anything queued.

        The Perl callbacks each loop `while ($socket->has_pollin)`; this does
        the same for both sockets in turn, because serving one feeds the other
        (a request taken makes a reply due; a reply makes a worker ready). It
        returns only when a receive on each socket has come back empty (EAGAIN),
        which also means ZeroMQ has processed their pending commands: whatever
        arrives next raises a fresh edge on ``ZMQ_FD``, so nothing is left
        waiting on a signal that one of our sends consumed.

        A pass handles at most ``MAX_BATCH`` messages; past that it schedules
        itself again, so that timers and signals get their turn.
        """
        budget = self.MAX_BATCH
        while self._state is _State.RUNNING and budget > 0:
            moved = self._drain(self._backend, self._route_worker_message, budget)
            budget -= moved
            if self._ready and budget > 0:  # the frontend is read only while a worker is ready
                served = self._drain(self._frontend, self._route_request, budget)
                budget -= served
                moved += served
            if not moved:
                return
        if self._state is _State.RUNNING and not self._pump_scheduled:
            assert self._io_loop is not None
            self._pump_scheduled = True
            self._io_loop.add_callback(self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._pump_scheduled = False
        self._pump()

    def _drain(
        self, socket: zmq.Socket[bytes], route: Callable[[Message], None], budget: int
    ) -> int:
        """Receive and route queued messages; return how many.

        Stops when the socket is empty, the budget is spent, the broker stops,
        or (on the frontend) the last ready worker has been given a request.
        """
        routing_requests = socket is self._frontend
        count = 0
        while count < budget and self._state is _State.RUNNING:
            if routing_requests and not self._ready:
                break
            try:
                frames = receive_frames(socket)
            except zmq.Again:
                break
            except zmq.ZMQError as error:
                self._log.error("receiving failed: %s", zmq_reason(error))
                break
            try:  # as in _route_safely, written out: this is the hot path
                route(frames)
            except Exception:
                self._log.exception("error routing a message: %s", describe_shape(frames))
            count += 1
        return count

    def _route_safely(self, route: Callable[[Message], None], frames: Message) -> None:
        # The reactor's boundary: an unexpected error is logged, the message
        # dropped, and the loop goes on (an exception escaping a stream
        # callback would leave the messages behind it unread).
        try:
            route(frames)
        except Exception:
            self._log.exception("error routing a message: %s", describe_shape(frames))

    # -- routing: one message each -------------------------------------------

    def _route_worker_message(self, frames: Message) -> None:
        """READY or a reply: either way the worker is ready again."""
        worker = cast(bytes, frames[0])  # an identity: at most 255 bytes, so bytes
        try:
            reply = reply_to_client(frames)
        except MalformedMessage as error:
            self._drop("backend", frames, error)
            if error.worker_is_waiting:
                # A REQ worker that sent a bad reply is still blocked waiting
                # for work; forgetting it would lose the worker for good.
                self._worker_ready(worker)
            return
        # Perl: `push @workers, $worker_id` comes before the reply is sent.
        self._worker_ready(worker)
        if reply is None:
            return  # READY
        if self._send_reply(reply):
            self._replies_routed += 1
            if self._max_replies is not None and self._replies_routed >= self._max_replies:
                self._log.info("routed %d replies: stopping", self._replies_routed)
                self.stop()  # the Perl `EV::break`

    def _route_request(self, frames: Message) -> None:
        """Give one client request to the least recently used worker."""
        try:
            check_request(frames)
        except MalformedMessage as error:
            self._drop("frontend", frames, error)
            return
        self._dispatch(frames)

    def _dispatch(self, request: Message) -> None:
        """Send ``request`` to the first ready worker that can take it.

        Workers are tried least recently used first (Perl: `shift @workers`).
        One that is gone or cannot take the request is forgotten; it will be
        queued again if it sends anything. If no worker can take it, the
        request is held until one is ready.
        """
        while self._ready:
            worker = self._ready.pop()
            try:
                # The worker's REQ socket strips [worker, b""] and hands the
                # worker the client's whole envelope and body to send back.
                send_frames(self._backend, [worker, DELIMITER, *request])
            except zmq.ZMQError as error:
                self._workers_lost += 1
                self._throttled.warning(
                    "worker-lost",
                    "worker %r cannot take a request (%s): trying the next one",
                    worker[:64],
                    _why_unsendable(error),
                )
                continue
            self._requests_routed += 1
            break
        else:
            self._held_request = request
        self._update_frontend()

    def _worker_ready(self, worker: bytes) -> None:
        """Queue ``worker`` once, serve a held request, switch the frontend."""
        if not self._ready.add(worker):
            self._log.debug("worker %r is already in the ready queue", worker)
            return
        if self._held_request is not None:
            request, self._held_request = self._held_request, None
            self._dispatch(request)
        else:
            self._update_frontend()

    def _update_frontend(self) -> None:
        """Frontend reception on exactly while a worker is ready.

        It changes only when the ready queue goes empty -> non-empty (the
        Perl `$client_poller = AE::io ...`) or non-empty -> empty (`undef
        $client_poller`). While it is off, requests wait in ZeroMQ's queues.
        """
        assert self._frontend_stream is not None
        wanted = bool(self._ready) and self._state is _State.RUNNING
        if wanted != self._frontend_stream.receiving():
            if wanted:
                # on_recv also reads EVENTS and schedules a pass if requests
                # are already waiting, since their fd edge may be long gone.
                self._frontend_stream.on_recv(self._on_frontend_message)
            else:
                self._frontend_stream.stop_on_recv()

    def _send_reply(self, reply: Message) -> bool:
        """Send a reply on the frontend; False if it could not be delivered."""
        try:
            send_frames(self._frontend, reply)
        except zmq.ZMQError as error:
            self._undeliverable += 1
            self._throttled.warning(
                "reply-undeliverable",
                "reply to %r dropped: %s",
                cast(bytes, reply[0])[:64],
                _why_unsendable(error),
            )
            return False
        return True

    def _drop(self, side: str, frames: Message, error: MalformedMessage) -> None:
        self._malformed_dropped += 1
        self._throttled.warning(
            f"malformed-{side}",
            "dropped a malformed message on the %s from %r: %s; shape %s",
            side,
            cast(bytes, frames[0])[:64] if frames else b"",
            error.reason,
            describe_shape(frames),
        )


def _why_unsendable(error: zmq.ZMQError) -> str:
    if error.errno == zmq.EHOSTUNREACH:
        return "the peer is gone"
    if error.errno == zmq.EAGAIN:
        # The queue counts a message until ZeroMQ's I/O thread reports it
        # written, which it does in batches of half the HWM: so a peer that
        # reads but keeps more than about HWM/2 messages in flight can find
        # its queue full too.
        return "its queue is full (it is not reading, or has too many requests in flight)"
    return zmq_reason(error)


def zmq_reason(error: zmq.ZMQError) -> str:
    """The reason ZeroMQ gives for ``error``, without pyzmq's ``(addr=...)`` suffix."""
    return zmq.strerror(error.errno) if error.errno is not None else str(error)
