"""The broker as a long-running service: signals, stats, CURVE, a final summary.

:func:`serve_broker` is what ``lb-ioloop broker`` runs; it is a coroutine so
that it can share a loop with other code, and it reports through a callable
rather than printing, so that it can be embedded.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zmq
from tornado.ioloop import PeriodicCallback

from .broker import LoadBalancingBroker
from .security import apply_curve_server, load_secret_key, start_authenticator

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "BrokerSettings", "serve_broker"]

DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
"""Largest request a client may send by default (16 MiB): ZMQ_MAXMSGSIZE."""


@dataclass(frozen=True)
class BrokerSettings:
    """Everything ``lb-ioloop broker`` can be told."""

    frontend: str
    backend: str
    max_replies: int | None = None
    stats_interval: float = 0.0  # seconds; 0: the counters line only at exit
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE  # 0: no limit
    hwm: int | None = None  # messages queued per peer and direction; None: ZeroMQ's 1000
    linger_ms: int = 1000  # how long queued replies may take to leave at exit
    curve_secret_key: Path | None = None  # the broker's .key_secret file
    curve_authorized_keys: Path | None = None  # folder of client/worker .key files
    curve_sockets: str = "both"  # "frontend", "backend" or "both"


async def serve_broker(settings: BrokerSettings, report: Callable[[str], None]) -> None:
    """Run a broker until SIGINT, SIGTERM or ``max_replies``.

    ``report`` gets one line when the broker is bound (with the real ports
    of endpoints bound to ``*``), one every ``stats_interval`` seconds, and a
    summary at the end. Raises :class:`~lb_ioloop.broker.BindError` or
    :class:`~lb_ioloop.security.KeyFileError` before serving if the settings
    cannot be used; nothing is left open then.
    """
    curve_keys = load_secret_key(settings.curve_secret_key) if settings.curve_secret_key else None
    curve_names = {"both": ("frontend", "backend")}.get(
        settings.curve_sockets, (settings.curve_sockets,)
    )

    def prepare(name: str, socket: zmq.Socket[bytes]) -> None:
        if curve_keys is not None and name in curve_names:
            apply_curve_server(socket, *curve_keys)

    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    authenticator = None
    try:
        if settings.curve_authorized_keys is not None:
            # ZAP must be listening before a CURVE socket binds, or the first
            # handshakes would be let through without a check.
            authenticator = start_authenticator(context, settings.curve_authorized_keys)
        broker = LoadBalancingBroker.from_endpoints(
            settings.frontend,
            settings.backend,
            context=context,
            linger_ms=settings.linger_ms,
            frontend_max_message_size=settings.max_message_size or None,
            hwm=settings.hwm,
            prepare_socket=prepare,
            max_replies=settings.max_replies,
        )
        loop = asyncio.get_running_loop()
        stats: PeriodicCallback | None = None
        try:
            # Through the loop, not signal.signal: the handler then runs as an
            # ordinary loop callback, between two of the broker's callbacks.
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, broker.stop)
            broker.start()
            report(f"frontend {broker.frontend_endpoint} backend {broker.backend_endpoint}")
            if settings.stats_interval:
                stats = PeriodicCallback(
                    lambda: report(broker.counters.summary()), settings.stats_interval * 1000
                )
                stats.start()
            await broker.wait_stopped()
        finally:
            if stats is not None:
                stats.stop()
            # The signal handlers stay until the loop closes: a second Ctrl-C
            # while the sockets linger must not interrupt the shutdown (it
            # would leave a socket open and context.term() waiting for ever).
            broker.close()
        report(f"stopped; {broker.counters.summary()}")
    finally:
        if authenticator is not None:
            authenticator.stop()
        context.term()  # waits at most the sockets' linger for queued replies
