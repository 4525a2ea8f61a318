"""The ready-worker queue: least recently used first, each worker at most once."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

__all__ = ["ReadyWorkers"]


class ReadyWorkers:
    """Identities of the workers that are waiting for a request, oldest first.

    A worker joins at the tail when it says READY or sends a reply, and the
    broker takes work to the head: the worker that has waited longest, which
    spreads load evenly. (The guide's Python versions use ``list.pop()``, which
    takes the *most* recently used worker instead.)

    An identity is held at most once: a duplicate READY, or a worker that
    reconnects under the same identity, must not get two requests at once.
    An ``OrderedDict`` gives all of that in O(1): append, pop from the head,
    membership, and removal of one identity from the middle.
    """

    __slots__ = ("_identities",)

    def __init__(self) -> None:
        # Keys are worker identities in arrival order; values are unused.
        self._identities: OrderedDict[bytes, None] = OrderedDict()

    def add(self, identity: bytes) -> bool:
        """Queue ``identity`` at the tail; return False if it was already queued."""
        if identity in self._identities:
            return False
        self._identities[identity] = None
        return True

    def pop(self) -> bytes:
        """Take the least recently used worker. Raises ``IndexError`` if none."""
        try:
            identity, _ = self._identities.popitem(last=False)
        except KeyError:
            raise IndexError("pop from an empty ReadyWorkers") from None
        return identity

    def discard(self, identity: bytes) -> bool:
        """Remove ``identity`` wherever it is; return False if it was not queued."""
        if identity not in self._identities:
            return False
        del self._identities[identity]
        return True

    def __len__(self) -> int:
        return len(self._identities)

    def __bool__(self) -> bool:
        return bool(self._identities)

    def __contains__(self, identity: object) -> bool:
        return identity in self._identities

    def __iter__(self) -> Iterator[bytes]:
        """Identities from the next to be served to the last."""
        return iter(list(self._identities))

    def __repr__(self) -> str:
        return f"<ReadyWorkers {list(self._identities)!r}>"
