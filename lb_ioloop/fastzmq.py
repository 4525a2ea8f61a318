"""Cheaper paths through pyzmq for the broker's hot loop.

pyzmq's convenient calls do work per call that a broker moving tens of
thousands of small messages a second can feel: ``send_multipart`` checks the
type of every frame and combines enum flags in Python for each; reading a
socket option turns the option number into an enum member; ``socket.EVENTS``
goes through a generic attribute lookup. The functions here do the same
things with pyzmq's compiled calls and plain int constants.
docs/PERFORMANCE.md has the measurements (about 5x cheaper sends; together
some 15% of the broker's CPU per request).

Nothing here changes behaviour: the same ZeroMQ calls, the same errors.
"""

from __future__ import annotations

import zmq
import zmq.backend

from .protocol import Message

__all__ = ["StreamSocket", "receive_frames", "send_frames"]

# Plain ints: combining pyzmq's enum flags per frame costs more than the send.
_MORE = int(zmq.SNDMORE | zmq.NOBLOCK)
_LAST = int(zmq.NOBLOCK)
_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_send_frame = zmq.backend.Socket.send
_recv_frame = zmq.backend.Socket.recv
_get_option = zmq.backend.Socket.get

ZERO_COPY_BYTES = 64 * 1024
"""Frames this large stay :class:`zmq.Frame` objects and are forwarded
without a copy; smaller ones become bytes (see docs/PERFORMANCE.md)."""


def send_frames(socket: zmq.Socket[bytes], frames: Message) -> None:
    """``socket.send_multipart(frames, NOBLOCK)``, about five times cheaper.

    Each frame goes straight to the compiled ``send`` with ready-made int
    flags: bytes are copied into the message (cheap for small frames), a
    :class:`zmq.Frame` is handed on without a copy. On a ROUTER, a refusal
    (EHOSTUNREACH under ROUTER_MANDATORY, EAGAIN at the high-water mark)
    comes on the first frame, so nothing is half-sent.
    """
    last = len(frames) - 1
    for index in range(last):
        part = frames[index]
        if part.__class__ is bytes:
            _send_frame(socket, part, _MORE)
        else:
            _send_frame(socket, part, _MORE, False)
    part = frames[last]
    if part.__class__ is bytes:
        _send_frame(socket, part, _LAST)
    else:
        _send_frame(socket, part, _LAST, False)


def receive_frames(socket: zmq.Socket[bytes]) -> Message:
    """``socket.recv_multipart(NOBLOCK)``, without pyzmq's per-frame enum work.

    Each frame is received as a :class:`zmq.Frame`, whose ``more`` flag says
    whether another follows; asking the socket instead (``RCVMORE``) turns
    the option into an enum member on every call, which costs more. Frames
    under :data:`ZERO_COPY_BYTES` are returned as bytes; larger ones as the
    Frame itself, so that :func:`send_frames` forwards them without a copy.

    Raises :class:`zmq.Again` when nothing is queued. Once the first frame is
    in, the rest of the message is already there (ZeroMQ delivers a
    multipart message whole), so only the first receive can find nothing.
    """
    frame = _recv_frame(socket, _NOBLOCK, False)
    frames: Message = [frame.bytes if len(frame) < ZERO_COPY_BYTES else frame]
    while frame.more:
        frame = _recv_frame(socket, _NOBLOCK, False)
        frames.append(frame.bytes if len(frame) < ZERO_COPY_BYTES else frame)
    return frames


class StreamSocket(zmq.Socket):  # type: ignore[type-arg]
    """A :class:`zmq.Socket` whose ``EVENTS`` reads take the direct path.

    ZMQStream reads ``socket.EVENTS`` (and ``socket.events``) on every
    wake-up, and pyzmq answers both through a generic ``__getattr__`` that
    costs about three times a plain ``getsockopt``. Make sockets with
    ``context.socket(zmq.ROUTER, socket_class=StreamSocket)`` to give a
    stream the cheaper path; they are ordinary sockets in every other way.
    """

    @property
    def EVENTS(self) -> int:  # noqa: N802 - the name ZMQStream reads
        """The socket's ``ZMQ_EVENTS`` (POLLIN / POLLOUT bits)."""
        return int(_get_option(self, _EVENTS))

    @property
    def events(self) -> int:
        """The same as :attr:`EVENTS`, under the other name ZMQStream uses."""
        return int(_get_option(self, _EVENTS))
