"""The ``lb-ioloop`` command (also ``python -m lb_ioloop``).

``lb-ioloop demo``    the guide's example: clients, workers and broker in one process.
``lb-ioloop broker``  the broker alone, on the endpoints you give, for peers of any language.

This is the only module that configures logging or prints to stderr. Errors a
user can cause (bad arguments, an endpoint that cannot be bound) end in one
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

import zmq

from . import __version__
from .broker import BindError, LoadBalancingBroker
from .demo import TRANSPORTS, run_demo

__all__ = ["main"]

log = logging.getLogger("lb_ioloop.cli")

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not usage plus a line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser for all subcommands (exposed for tests and docs)."""
    parser = _Parser(
        prog="lb-ioloop",
        description="The ZeroMQ guide's load-balancing broker on Tornado's IOLoop.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="what to log on stderr (default: warning)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="run the guide's example: clients, workers and broker in one process"
    )
    demo.add_argument("--clients", type=_positive_int, default=10, help="default: 10")
    demo.add_argument("--workers", type=_positive_int, default=3, help="default: 3")
    demo.add_argument("--transport", choices=TRANSPORTS, default="ipc", help="default: ipc")

    broker = commands.add_parser(
        "broker",
        help="run the broker on the given endpoints until SIGINT/SIGTERM",
        description=(
            "Bind a frontend ROUTER for clients and a backend ROUTER for workers and "
            "route between them. Peers speak the guide's protocol: REQ clients; REQ "
            "workers that send READY (or \\x01) first. Stops cleanly on SIGINT or "
            "SIGTERM, or after --max-replies replies."
        ),
    )
    broker.add_argument(
        "--frontend", required=True, metavar="ENDPOINT", help="e.g. tcp://*:5555 (clients)"
    )
    broker.add_argument(
        "--backend", required=True, metavar="ENDPOINT", help="e.g. tcp://*:5556 (workers)"
    )
    broker.add_argument(
        "--max-replies",
        type=_positive_int,
        default=None,
        metavar="N",
        help="stop after routing N replies (default: run until signalled)",
    )
    return parser


async def serve_broker(frontend: str, backend: str, max_replies: int | None) -> int:
    """Run a broker on ``frontend``/``backend`` until a signal or ``max_replies``."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        try:
            broker = LoadBalancingBroker.from_endpoints(
                frontend, backend, context=context, max_replies=max_replies
            )
        except BindError as error:
            print(f"lb-ioloop broker: error: {error}", file=sys.stderr)
            return EXIT_USAGE
        loop = asyncio.get_running_loop()
        # Through the loop, not signal.signal: the handler then runs as an
        # ordinary loop callback, between two of the broker's callbacks.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, broker.stop)
        try:
            broker.start()
            # Endpoints bound to port * are reported with the real port.
            print(
                f"lb-ioloop broker: frontend {broker.frontend_endpoint} "
                f"backend {broker.backend_endpoint}",
                file=sys.stderr,
                flush=True,
            )
            await broker.wait_stopped()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            broker.close()
        print(f"lb-ioloop broker: stopped; {broker.counters.summary()}", file=sys.stderr)
        return 0
    finally:
        context.term()  # waits at most the sockets' linger for queued replies


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "demo":
        asyncio.run(run_demo(args.clients, args.workers, args.transport))
        return 0
    if args.command == "broker":
        return asyncio.run(serve_broker(args.frontend, args.backend, args.max_replies))
    parser.print_help(sys.stderr)
    return EXIT_USAGE
