"""The load shapes of each sweep ``lb-ioloop bench --sweep`` knows."""

from __future__ import annotations

from dataclasses import replace

from .runner import LoadShape

__all__ = ["SWEEPS", "memory_shape", "sweep_shapes"]

SWEEPS = ("workers", "clients", "body", "latency")

MAX_IN_FLIGHT = 2000  # requests in flight in total, when there are many clients
MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024  # request bytes in flight, for big bodies


def sweep_shapes(name: str, base: LoadShape) -> list[LoadShape]:
    """The shapes of one sweep, all else as in ``base``.

    ``clients`` and ``body`` lower the depth where needed, so that the load
    in flight stays under 2,000 requests and 64 MiB.
    """
    if name == "workers":
        return [replace(base, workers=w) for w in (1, 10, 100, 1000)]
    if name == "clients":
        return [
            replace(base, clients=c, depth=max(1, min(base.depth, MAX_IN_FLIGHT // c)))
            for c in (1, 10, 100, 1000)
        ]
    if name == "body":
        return [
            replace(
                base,
                body_bytes=size,
                depth=max(1, min(base.depth, MAX_IN_FLIGHT_BYTES // (base.clients * size))),
            )
            for size in (10, 1000, 100_000, 1_000_000)
        ]
    if name == "latency":
        return [replace(base, clients=1, depth=1)]
    raise ValueError(f"unknown sweep {name!r}; choose from {', '.join(SWEEPS)}")


def memory_shape(seconds: float = 1.0) -> LoadShape:
    """1000 workers all busy for ever, and 10,000 more requests waiting."""
    return LoadShape(
        workers=1000, clients=11, depth=1000, body_bytes=10, seconds=seconds, hold=True
    )
