"""An HTTP front door for the broker: one Tornado process, one IOLoop.

Why build a broker on Tornado at all? Because then it can live inside a
Tornado application. This one embeds the load-balancing broker and an
:class:`~lb_ioloop.async_client.AsyncClient` on its own loop, next to an HTTP
server. Each ``POST /`` becomes a request to the least recently used worker,
and the worker's reply becomes the HTTP response. Workers are ordinary
processes of any language that connect to the backend:

    python examples/http_gateway.py --http-port 8080 --backend tcp://127.0.0.1:5556
    lb-ioloop worker --connect tcp://127.0.0.1:5556 --echo      # as many as you like
    curl -d 'hello' http://127.0.0.1:8080/                      # -> hello

Requests wait in ZeroMQ's queues while every worker is busy; a request that
no worker answers within ``--timeout`` seconds gets ``504 Gateway Timeout``.
The frontend is an ``inproc://`` endpoint: the HTTP handlers and the broker
share one context and one thread, so no port is needed for it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import tornado.httpserver
import tornado.netutil
import tornado.web
import zmq

from lb_ioloop import BindError, LoadBalancingBroker
from lb_ioloop.async_client import AsyncClient, RequestTimeout


class RequestHandler(tornado.web.RequestHandler):
    """``POST /``: the body is the request; the worker's reply is the response."""

    def initialize(self, client: AsyncClient) -> None:
        self.client = client

    async def post(self) -> None:
        try:
            reply = await self.client.request([self.request.body])
        except RequestTimeout:
            raise tornado.web.HTTPError(504, reason="No worker replied in time") from None
        self.set_header("Content-Type", "application/octet-stream")
        self.finish(b"".join(reply))


def make_app(client: AsyncClient) -> tornado.web.Application:
    """The HTTP application, given the client it forwards requests through."""
    return tornado.web.Application([(r"/", RequestHandler, {"client": client})])


async def main(http_port: int, backend: str, timeout: float) -> int:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        broker = LoadBalancingBroker.from_endpoints(
            f"inproc://http-gateway-{id(context):x}", backend, context=context
        )
    except BindError as error:
        print(f"http_gateway: error: {error}", file=sys.stderr)
        context.term()
        return 2
    broker.start()
    client = AsyncClient([broker.frontend_endpoint], context=context, timeout=timeout)
    sockets = tornado.netutil.bind_sockets(http_port, address="127.0.0.1")
    server = tornado.httpserver.HTTPServer(make_app(client))
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]  # the real one when asked for port 0
    print(
        f"http_gateway: http://127.0.0.1:{port}/ backend {broker.backend_endpoint}",
        file=sys.stderr,
        flush=True,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, broker.stop)
    try:
        await broker.wait_stopped()
    finally:
        server.stop()
        client.close()
        broker.close()
        context.term()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-port", type=int, default=8080, help="0: any free port")
    parser.add_argument("--backend", default="tcp://127.0.0.1:5556", help="for the workers")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.http_port, arguments.backend, arguments.timeout)))
