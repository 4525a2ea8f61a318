"""A client for code that already runs on the loop: ``await client.request(frames)``.

One DEALER socket carries any number of requests at once. Each request goes
out with a request id as an extra address frame::

    sent:      [request_id, b"", body...]
    frontend:  [dealer_identity, request_id, b"", body...]   (two-frame address)
    back:      [request_id, b"", reply...]

The broker keeps every address frame, so the id comes back with the reply
and picks the future to resolve. This is the "envelopes of any depth" rule
put to work: the broker needs no change to serve it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence

import zmq
from zmq.eventloop.zmqstream import ZMQStream

from .protocol import DELIMITER, Frames

__all__ = ["AsyncClient", "RequestTimeout"]

logger = logging.getLogger("lb_ioloop.async_client")


class RequestTimeout(TimeoutError):
    """No reply came within the request's timeout."""


class AsyncClient:
    """Send requests through a broker's frontend and await their replies.

    Make it inside a running loop (it builds a ZMQStream), e.g.::

        client = AsyncClient(["tcp://127.0.0.1:5555"])
        reply = await client.request([b"HELLO"], timeout=5)
        client.close()

    A reply that comes after its request timed out is dropped. With several
    endpoints, requests are dealt out to the brokers in turn.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.timeout = timeout  # default seconds per request
        socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        socket.linger = 0
        for endpoint in endpoints:
            socket.connect(endpoint)
        self._stream = ZMQStream(socket)  # on the loop this runs on
        self._stream.on_recv(self._on_reply)
        self._waiting: dict[bytes, asyncio.Future[Frames]] = {}  # request id -> its reply
        self._ids = itertools.count(1)

    async def request(self, frames: Sequence[bytes], timeout: float | None = None) -> Frames:
        """Send one request (one or more body frames); return the reply's frames.

        Raises :class:`RequestTimeout` after ``timeout`` seconds (default:
        the client's), and ``RuntimeError`` if the client is closed.
        """
        if self._stream.closed():
            raise RuntimeError("the client is closed")
        request_id = next(self._ids).to_bytes(8, "big")  # never empty, never repeats
        reply: asyncio.Future[Frames] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = reply
        # Through the stream's send queue: it never blocks the loop, and
        # waits for room if the socket is at its high-water mark.
        self._stream.send_multipart([request_id, DELIMITER, *frames])
        limit = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(reply, limit)
        except TimeoutError:
            raise RequestTimeout(f"no reply within {limit:g}s") from None
        finally:
            self._waiting.pop(request_id, None)

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered or timed out."""
        return len(self._waiting)

    def close(self) -> None:
        """Close the socket; requests still waiting fail with RuntimeError."""
        for reply in self._waiting.values():
            if not reply.done():
                reply.set_exception(RuntimeError("the client was closed"))
        self._waiting.clear()
        if not self._stream.closed():
            self._stream.close()

    def _on_reply(self, frames: Frames) -> None:
        # [request_id, b"", reply...]; anything else is not for us.
        if len(frames) < 3 or frames[1] != DELIMITER:
            logger.warning("dropped a reply of unexpected shape (%d frames)", len(frames))
            return
        reply = self._waiting.get(frames[0])
        if reply is None or reply.done():
            logger.debug("dropped a late reply for request %r", frames[0])
            return
        reply.set_result(frames[2:])
