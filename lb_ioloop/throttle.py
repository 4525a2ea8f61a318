"""A logger wrapper that keeps a flood of similar warnings down to a trickle."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["ThrottledLog"]


class ThrottledLog:
    """Log each *kind* of event at most once per ``interval`` seconds.

    A hostile or broken peer can make the broker drop thousands of messages a
    second; one log line per drop would bury everything else and cost more
    than the routing. The first event of a kind is always logged; later ones
    within the interval are counted, and the next line that gets through says
    how many were held back. Counters on the broker stay exact regardless.
    """

    def __init__(
        self,
        log: logging.Logger,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.interval = interval
        self._clock = clock
        # kind -> (when its last line was logged, events held back since)
        self._kinds: dict[str, tuple[float, int]] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        """Log ``message % args`` at WARNING unless ``kind`` was logged recently."""
        now = self._clock()
        last, held_back = self._kinds.get(kind, (-self.interval, 0))
        if now - last < self.interval:
            self._kinds[kind] = (last, held_back + 1)
            return
        self._kinds[kind] = (now, 0)
        if held_back:
            message += " (and %d more like it)"
            args = (*args, held_back)
        self.log.warning(message, *args)
