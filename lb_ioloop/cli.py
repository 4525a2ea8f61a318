"""The ``lb-ioloop`` command (also ``python -m lb_ioloop``).

``lb-ioloop demo``    the guide's example: clients, workers and broker in one process.
``lb-ioloop broker``  the broker alone, on the endpoints you give, for peers of any language.
``lb-ioloop worker``  a REQ worker of the guide's protocol, as a process of its own.
``lb-ioloop client``  a REQ client: N requests, each reply printed, a timeout.

This is the only module that configures logging or prints to stderr. Errors a
user can cause (bad arguments, an endpoint that cannot be bound) end in one
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import zmq

from . import __version__
from .bench.sweeps import SWEEPS
from .broker import BindError, zmq_reason
from .demo import TRANSPORTS, DemoError, run_demo
from .security import (
    KeyFileError,
    apply_curve_client,
    generate_key_pairs,
    load_public_key,
    load_secret_key,
)
from .service import DEFAULT_MAX_MESSAGE_SIZE, BrokerSettings, serve_broker
from .tasks import NoReply, client_requests, output_failure, worker_task

__all__ = ["main"]

log = logging.getLogger("lb_ioloop.cli")

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not usage plus a line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds >= 0")
    return value


def _endpoint(text: str) -> str:
    # Caught here rather than in pyzmq, which would raise UnicodeEncodeError
    # for an argument that was not valid UTF-8 (Python keeps it as surrogates).
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid UTF-8") from None
    return text


def _whole_number(minimum: int, unit: str = "", maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number (of ``unit``) from ``minimum`` to ``maximum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number{unit}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not at least {minimum}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{value} is more than {maximum}")
        return value

    return parse


_bytes = _whole_number(0, " of bytes")
_positive_int = _whole_number(1)
_hwm = _whole_number(0, " of messages", maximum=2**31 - 1)  # a C int in libzmq


def build_parser() -> argparse.ArgumentParser:
    """The parser for all subcommands (exposed for tests and docs)."""
    parser = _Parser(
        prog="lb-ioloop",
        description="The ZeroMQ guide's load-balancing broker on Tornado's IOLoop.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # --log-level is accepted before or after the command.
    common = _Parser(add_help=False)
    common.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        choices=["debug", "info", "warning", "error"],
        help="what to log on stderr (default: warning)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="what to log on stderr (default: warning)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="run the guide's example: clients, workers and broker in one process",
    )
    demo.add_argument("--clients", type=_positive_int, default=10, help="default: 10")
    demo.add_argument("--workers", type=_positive_int, default=3, help="default: 3")
    demo.add_argument("--transport", choices=TRANSPORTS, default="ipc", help="default: ipc")

    broker = commands.add_parser(
        "broker",
        parents=[common],
        help="run the broker on the given endpoints until SIGINT/SIGTERM",
        description=(
            "Bind a frontend ROUTER for clients and a backend ROUTER for workers and "
            "route between them. Peers speak the guide's protocol: REQ clients; REQ "
            "workers that send READY (or \\x01) first. Stops cleanly on SIGINT or "
            "SIGTERM, or after --max-replies replies."
        ),
    )
    broker.add_argument(
        "--frontend",
        required=True,
        type=_endpoint,
        metavar="ENDPOINT",
        help="e.g. tcp://*:5555 (clients)",
    )
    broker.add_argument(
        "--backend",
        required=True,
        type=_endpoint,
        metavar="ENDPOINT",
        help="e.g. tcp://*:5556 (workers)",
    )
    broker.add_argument(
        "--max-replies",
        type=_positive_int,
        default=None,
        metavar="N",
        help="stop after routing N replies (default: run until signalled)",
    )
    broker.add_argument(
        "--stats-interval",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="print the counters line on stderr this often (default: only at exit)",
    )
    broker.add_argument(
        "--max-message-size",
        type=_bytes,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        metavar="BYTES",
        help=(
            "largest message a client may send; a peer that sends more is disconnected "
            f"(ZMQ_MAXMSGSIZE; default {DEFAULT_MAX_MESSAGE_SIZE} = 16 MiB; 0: no limit)"
        ),
    )
    broker.add_argument(
        "--hwm",
        type=_hwm,
        default=None,
        metavar="N",
        help=(
            "messages queued per peer and direction on both sockets, which bounds "
            "the broker's memory while requests wait (ZMQ_SNDHWM/RCVHWM; "
            "default: ZeroMQ's 1000; 0: no limit)"
        ),
    )
    broker.add_argument(
        "--event-loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="the loop under Tornado (uvloop: the [uvloop] extra; see docs/PERFORMANCE.md)",
    )
    broker.add_argument(
        "--curve-secret-key",
        type=Path,
        metavar="FILE",
        help="serve over CURVE with this .key_secret file (see lb-ioloop keygen)",
    )
    broker.add_argument(
        "--curve-authorized-keys",
        type=Path,
        metavar="DIR",
        help="let in only peers whose public .key file is in DIR (default: any CURVE peer)",
    )
    broker.add_argument(
        "--curve-sockets",
        choices=["both", "frontend", "backend"],
        default="both",
        help="which sockets use CURVE (default: both)",
    )

    worker = commands.add_parser(
        "worker",
        parents=[common],
        help="run a REQ worker that serves requests from a broker's backend",
        description="Say READY, then answer each request; stop on SIGINT or SIGTERM.",
    )
    worker.add_argument(
        "--connect", required=True, type=_endpoint, metavar="ENDPOINT", help="the backend"
    )
    worker.add_argument("--identity", help="routing identity (default: chosen by ZeroMQ)")
    answer = worker.add_mutually_exclusive_group()
    answer.add_argument("--reply", default="OK", metavar="TEXT", help="default: OK")
    answer.add_argument("--echo", action="store_true", help="reply with the request's body")
    worker.add_argument(
        "--delay", type=_seconds, default=0.0, metavar="SECONDS", help="work time per request"
    )

    client = commands.add_parser(
        "client",
        parents=[common],
        help="send requests to one or more brokers' frontends and print the replies",
        description=(
            "Send --requests requests one after another and print each reply. With "
            "several --connect endpoints the requests are dealt out to the brokers in "
            "turn. Exit 0 when every reply arrived; 1 if one did not within --timeout."
        ),
    )
    client.add_argument(
        "--connect",
        required=True,
        type=_endpoint,
        action="append",
        metavar="ENDPOINT",
        help="a broker's frontend; repeat for several brokers",
    )
    client.add_argument("--requests", type=_positive_int, default=1, metavar="N")
    client.add_argument("--message", default="HELLO", metavar="TEXT", help="default: HELLO")
    client.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for each reply (default: 10)",
    )
    for peer in (worker, client):
        peer.add_argument(
            "--curve-server-key",
            type=Path,
            metavar="FILE",
            help="talk CURVE to the broker whose public .key file this is",
        )
        peer.add_argument(
            "--curve-secret-key",
            type=Path,
            metavar="FILE",
            help="this peer's .key_secret file (default: a fresh key pair)",
        )

    bench = commands.add_parser(
        "bench",
        parents=[common],
        help="measure this broker side by side with reference brokers",
        description=(
            "Run the same load against each broker in turn (lb_ioloop, the guide's "
            "blocking poller, the lbbroker3.py stream design, and any --extra), with "
            "the load in separate processes, and report requests/s, the broker's CPU "
            "per request, p50/p99 round trip, requests lost, and ratios to lb_ioloop."
        ),
    )
    bench.add_argument(
        "--brokers",
        default="lb_ioloop,poller,naive",
        metavar="NAMES",
        help="built-in brokers to run, comma-separated (default: lb_ioloop,poller,naive)",
    )
    bench.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="another broker: COMMAND gets the frontend and backend endpoints appended",
    )
    bench.add_argument("--workers", type=_positive_int, default=8, metavar="W")
    bench.add_argument("--clients", type=_positive_int, default=4, metavar="C")
    bench.add_argument(
        "--depth",
        type=_positive_int,
        default=50,
        metavar="D",
        help="requests each client keeps in flight (default: 50)",
    )
    bench.add_argument("--body", type=_positive_int, default=10, metavar="BYTES")
    bench.add_argument("--seconds", type=_seconds, default=2.0, help="per run (default: 2)")
    bench.add_argument("--rounds", type=_positive_int, default=2, help="runs per broker and load")
    bench.add_argument(
        "--sweep",
        action="append",
        default=[],
        choices=[*SWEEPS, "all"],
        help="also run a sweep (repeatable): workers 1-1000, clients 1-1000, "
        "body 10 B-1 MB, latency (1 client, 1 in flight)",
    )
    bench.add_argument(
        "--memory",
        action="store_true",
        help="also: resident memory with 1000 busy workers, 10,000 waiting",
    )
    bench.add_argument("--transport", choices=["tcp", "ipc"], default="tcp")
    bench.add_argument("--json", type=Path, metavar="FILE", help="write all results as JSON")
    bench.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="draw the results (needs matplotlib: the [plot] extra)",
    )

    keygen = commands.add_parser(
        "keygen",
        parents=[common],
        help="write CURVE key pairs (NAME.key public, NAME.key_secret private)",
    )
    keygen.add_argument("folder", metavar="DIR")
    keygen.add_argument(
        "names",
        nargs="*",
        default=["broker", "worker", "client"],
        metavar="NAME",
        help="one key pair per name (default: broker worker client)",
    )
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _error(command: str, message: object, status: int = EXIT_USAGE) -> int:
    print(f"lb-ioloop {command}: error: {message}", file=sys.stderr)
    return status


def run_demo_command(args: argparse.Namespace) -> int:
    """``lb-ioloop demo``: 0 when every client got its reply and printed it."""
    try:
        asyncio.run(run_demo(args.clients, args.workers, args.transport))
    except DemoError as error:
        return _error("demo", error, status=1)
    except BindError as error:  # e.g. an ipc path too long under a long TMPDIR
        return _error("demo", error)
    failure = output_failure()
    if failure is not None:
        return _error("demo", f"could not write the output: {failure}", status=1)
    return 0


def run_broker(args: argparse.Namespace) -> int:
    """``lb-ioloop broker``: serve until a signal or --max-replies; 0 then."""
    if args.curve_authorized_keys and not args.curve_secret_key:
        return _error("broker", "--curve-authorized-keys needs --curve-secret-key")
    settings = BrokerSettings(
        frontend=args.frontend,
        backend=args.backend,
        max_replies=args.max_replies,
        stats_interval=args.stats_interval,
        max_message_size=args.max_message_size,
        hwm=args.hwm,
        curve_secret_key=args.curve_secret_key,
        curve_authorized_keys=args.curve_authorized_keys,
        curve_sockets=args.curve_sockets,
    )

    def report(line: str) -> None:
        print(f"lb-ioloop broker: {line}", file=sys.stderr, flush=True)

    loop_factory = None
    if args.event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            return _error(
                "broker", "--event-loop uvloop needs uvloop: pip install 'lb_ioloop[uvloop]'"
            )
        loop_factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve_broker(settings, report))
    except (BindError, KeyFileError) as error:
        return _error("broker", error)
    return 0


def _curve_client(args: argparse.Namespace) -> Callable[[zmq.Socket[bytes]], None] | None:
    """The CURVE set-up a worker or client asked for, or None. Raises KeyFileError."""
    if args.curve_server_key is None:
        if args.curve_secret_key is not None:
            raise KeyFileError("--curve-secret-key needs --curve-server-key")
        return None
    server_public = load_public_key(args.curve_server_key)
    own = load_secret_key(args.curve_secret_key) if args.curve_secret_key else None
    return lambda socket: apply_curve_client(socket, server_public, own)


def keygen(args: argparse.Namespace) -> int:
    """``lb-ioloop keygen DIR [NAME...]``: write CURVE key pairs."""
    try:
        for path in generate_key_pairs(args.folder, args.names):
            print(path)
    except (KeyFileError, OSError) as error:
        return _error("keygen", error)
    return 0


def run_bench_command(args: argparse.Namespace) -> int:
    """``lb-ioloop bench``: the table on stdout, progress on stderr."""
    from .bench import LoadShape, run_bench
    from .bench.report import format_table, write_json, write_plot
    from .bench.runner import BROKERS, BenchError
    from .bench.sweeps import memory_shape, sweep_shapes

    brokers: dict[str, Sequence[str]] = {}
    for name in filter(None, args.brokers.split(",")):
        if name not in BROKERS:
            return _error("bench", f"unknown broker {name!r}; built in: {', '.join(BROKERS)}")
        brokers[name] = BROKERS[name]
    for extra in args.extra:
        name, _, command = extra.partition("=")
        if not name or not command:
            return _error("bench", f"--extra wants NAME=COMMAND, not {extra!r}")
        brokers[name] = shlex.split(command)
    if any("uvloop" in name for name in brokers):
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return _error("bench", "lb_ioloop+uvloop needs uvloop: pip install 'lb_ioloop[uvloop]'")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return _error("bench", "--plot needs matplotlib: pip install 'lb_ioloop[plot]'")
    base = LoadShape(args.workers, args.clients, args.depth, args.body, args.seconds)
    shapes = [base]
    for sweep in dict.fromkeys(SWEEPS if "all" in args.sweep else args.sweep):
        shapes += [shape for shape in sweep_shapes(sweep, base) if shape not in shapes]
    if args.memory:
        shapes.append(memory_shape())
    interactive = sys.stderr.isatty()

    def progress(line: str) -> None:
        sys.stderr.write(("\r\x1b[K" if interactive else "") + line + ("" if interactive else "\n"))
        sys.stderr.flush()

    try:
        results = run_bench(
            brokers, shapes, rounds=args.rounds, transport=args.transport, progress=progress
        )
    except BenchError as error:
        return _error("bench", error, status=1)
    if interactive:
        sys.stderr.write("\r\x1b[K")
    print(format_table(results))
    if args.json is not None:
        write_json(results, args.json)
    if args.plot is not None:
        write_plot(results, args.plot)
    return 0


def run_worker(args: argparse.Namespace) -> int:
    """``lb-ioloop worker``: serve until SIGINT or SIGTERM, then exit 0."""
    try:
        prepare = _curve_client(args)
    except KeyFileError as error:
        return _error("worker", error)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    # A blocking recv in pyzmq returns to Python on a signal, so the handler's
    # exception ends the loop; worker_task closes its socket on the way out.
    # SIGINT too, explicitly: a shell script's `worker &` starts it with
    # SIGINT ignored, and then Python installs no KeyboardInterrupt handler.
    # (The broker's loop.add_signal_handler replaces an ignored SIGINT too.)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        worker_task(
            args.connect,
            args.identity.encode() if args.identity else None,
            context,
            reply=None if args.echo else args.reply.encode(),
            delay=args.delay,
            prepare=prepare,
        )
    except KeyboardInterrupt:
        pass
    except zmq.ZMQError as error:
        print(
            f"lb-ioloop worker: error: {args.connect!r}: {zmq_reason(error)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    finally:
        context.term()
    return 0


def run_client(args: argparse.Namespace) -> int:
    """``lb-ioloop client``: 0 when every reply arrived, 1 on a timeout."""
    try:
        prepare = _curve_client(args)
    except KeyFileError as error:
        return _error("client", error)
    try:
        client_requests(
            args.connect,
            count=args.requests,
            message=args.message.encode(),
            timeout=args.timeout,
            prepare=prepare,
        )
    except NoReply as error:
        print(f"lb-ioloop client: error: {error}", file=sys.stderr)
        return 1
    except zmq.ZMQError as error:
        print(
            f"lb-ioloop client: error: {zmq_reason(error)} (endpoints: {', '.join(args.connect)})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    commands = {
        "demo": run_demo_command,
        "broker": run_broker,
        "worker": run_worker,
        "client": run_client,
        "keygen": keygen,
        "bench": run_bench_command,
    }
    if args.command not in commands:
        parser.error(f"choose a command: {', '.join(commands)} (lb-ioloop --help says more)")
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:  # Ctrl-C outside the commands' own handling
        return 130
