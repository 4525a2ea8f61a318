"""The wire protocol of the load-balancing pattern, as pure functions on frames.

No sockets and no event loop here: the broker calls these functions to decide
what a message *is*, and tests call them directly.

A multipart message is a list of frames (``bytes``). On both of the broker's
ROUTER sockets the first frame is the sender's routing identity, which ZeroMQ
prepends on receipt. What follows is the REQ envelope::

    frontend, from a client:   [client, ...more hops, b"", body...]
    backend, READY:            [worker, b"", b"READY"]          (or b"\\x01")
    backend, a reply:          [worker, b"", client, ...more hops, b"", body...]

Everything before the first empty frame (the *delimiter*) is the return
address. A client that sits behind another ROUTER/DEALER hop has one address
frame per hop, so the broker never assumes there is exactly one. The body is
everything after the delimiter and may itself contain empty frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    import zmq

__all__ = [
    "DELIMITER",
    "READY_TOKENS",
    "Frames",
    "Message",
    "Part",
    "MalformedMessage",
    "check_request",
    "describe_shape",
    "reply_to_client",
]

Frames = list[bytes]
"""A multipart message as pyzmq's ``recv_multipart(copy=True)`` returns it."""

Part = Union[bytes, "zmq.Frame"]
"""One frame as the broker holds it: ``bytes``, or for a large frame a
:class:`zmq.Frame`, which the broker passes on without copying it. A Frame
answers ``len()``, is never equal to ``b""`` and hashes by identity, which is
all these functions ask of a body frame. Addresses and delimiters are small,
so they are always bytes."""

Message = list[Part]
"""A multipart message as the broker holds it (see :data:`Part`)."""

DELIMITER = b""
"""The empty frame that separates a return address from the body."""

READY_TOKENS: frozenset[bytes] = frozenset({b"READY", b"\x01"})
"""What workers send to announce themselves: the Perl and Python guide workers
send ``READY``; the C guide workers send ``\\x01`` (``WORKER_READY``)."""


class MalformedMessage(ValueError):
    """A message that does not have the envelope the pattern requires.

    ``reason`` says in a few words what is wrong; ``worker_is_waiting`` is true
    when the message still has the shape a REQ worker produces (its identity,
    the delimiter, then at least one frame). Such a worker has sent its turn
    and now blocks until it is given a request, so the broker must put it back
    in the ready queue even though its reply cannot be routed; otherwise the
    worker would be lost for good.
    """

    def __init__(self, reason: str, *, worker_is_waiting: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.worker_is_waiting = worker_is_waiting


def check_request(frames: Message) -> None:
    """Accept a client request as the frontend ROUTER delivers it, or raise.

    A request is ``[address..., b"", body...]`` with at least one address frame
    and at least one body frame. The message is forwarded to a worker whole, so
    nothing is returned. Raises :class:`MalformedMessage`.
    """
    try:
        # list.index runs in C and stops at the first match: the delimiter is
        # normally the second frame, so this is cheap.
        delimiter_at = frames.index(DELIMITER)
    except ValueError:
        raise MalformedMessage("no delimiter (empty frame) after the address") from None
    if delimiter_at == 0:
        # Unreachable through a ROUTER socket, which always prepends a
        # non-empty identity; kept so the function is correct on its own.
        raise MalformedMessage("empty return address")
    if delimiter_at == len(frames) - 1:
        raise MalformedMessage("nothing after the delimiter")


def reply_to_client(frames: Message) -> Message | None:
    """Classify a message that arrived on the backend from a worker.

    Returns ``None`` when the message is READY, else the frames to send on the
    frontend: the client's return address, the delimiter and the body, i.e.
    everything after the worker's own ``[identity, b""]`` envelope.

    READY is recognised by *shape*, not by the third frame alone: exactly
    ``[worker, b"", token]`` with no return address. A reply to a client whose
    identity happens to be ``READY`` has more frames and is routed as a reply.

    Raises :class:`MalformedMessage`.
    """
    if len(frames) < 2 or frames[1] != DELIMITER:
        raise MalformedMessage("no delimiter after the worker identity")
    if len(frames) == 2:
        raise MalformedMessage("nothing after the delimiter")
    if len(frames) == 3 and frames[2] in READY_TOKENS:
        return None
    # From here on the worker sent [identity, b"", something...]: the shape a
    # REQ socket produces, so the worker is now waiting for its next request.
    if frames[2] == DELIMITER:
        raise MalformedMessage("empty return address", worker_is_waiting=True)
    try:
        delimiter_at = frames.index(DELIMITER, 3)
    except ValueError:
        raise MalformedMessage(
            "reply has no return address (no second delimiter)", worker_is_waiting=True
        ) from None
    if delimiter_at == len(frames) - 1:
        raise MalformedMessage("nothing after the reply's delimiter", worker_is_waiting=True)
    return frames[2:]


def describe_shape(frames: Message, limit: int = 8) -> str:
    """Describe a message by its frame sizes, for logs: ``3 frames [5B, 0B, 2B]``.

    Sizes rather than contents, because frames are arbitrary binary data and a
    hostile peer should not be able to write into our logs.
    """
    sizes = ", ".join(f"{len(frame)}B" for frame in frames[:limit])
    more = f", +{len(frames) - limit} more" if len(frames) > limit else ""
    return f"{len(frames)} frame{'s' if len(frames) != 1 else ''} [{sizes}{more}]"
