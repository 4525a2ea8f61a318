"""Fixtures shared by the whole suite.

* ``io_loop`` overrides pytest-tornado's fixture, which calls ``make_current``
  and ``clear_current`` (deprecated since Tornado 6.2), and whose plain
  ``IOLoop()`` warns "There is no current event loop" on Python 3.12+.
* Any ERROR logged while a test runs (Tornado's ``tornado.general`` for a
  failing stream callback, asyncio's handler, the broker's own) fails that test.
* ``zmq_contexts`` gives one context per test (a plain one for the broker's
  ZMQStreams, an asyncio shadow of it for the test's peers); every socket made
  through ``make_socket`` is closed at teardown, and a context that cannot
  terminate (a socket leaked) fails the test instead of hanging the run.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq
import zmq.asyncio
from tornado.ioloop import IOLoop

from lb_ioloop import LoadBalancingBroker


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the soak run out unless ``-m`` names it (``make soak``: ``-m soak``).

    Not ``addopts = -m 'not soak'``: any ``-m`` a user gives would replace it
    and start a ten-minute run by surprise.
    """
    if "soak" in (config.option.markexpr or ""):
        return
    soak = [item for item in items if item.get_closest_marker("soak")]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if not item.get_closest_marker("soak")]


@pytest.fixture
def io_loop() -> Iterator[IOLoop]:
    """A fresh IOLoop on a fresh asyncio loop, made current without deprecated calls."""
    asyncio_loop = asyncio.new_event_loop()
    asyncio.set_event_loop(asyncio_loop)
    loop = IOLoop.current()
    yield loop
    # Peers a test left serving in the background end here, on their loop.
    pending = asyncio.all_tasks(asyncio_loop)
    for task in pending:
        task.cancel()
    asyncio_loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    # Not all_fds=True: the sockets belong to the fixtures that made them,
    # which close them (before this teardown runs, as they depend on it).
    loop.close()  # closes the asyncio loop too
    asyncio.set_event_loop(None)


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def fail_on_logged_errors() -> Iterator[None]:
    """Fail the test if anything logs at ERROR or above while it runs."""
    handler = _ErrorRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
    if handler.records:
        lines = "\n".join(
            f"{r.name}: {r.getMessage()}" + (f"\n{r.exc_text or ''}" if r.exc_info else "")
            for r in handler.records
        )
        pytest.fail(f"errors were logged during the test:\n{lines}")


class ZmqContexts:
    """A test's contexts and the sockets it made, all closed at teardown."""

    def __init__(self) -> None:
        self.sync = zmq.Context()
        self.asyncio = zmq.asyncio.Context.shadow(self.sync.underlying)
        self.sockets: list[zmq.Socket[Any]] = []

    def socket(self, socket_type: int, *, asyncio: bool = True) -> Any:
        """A socket with linger 0, closed at teardown; asyncio unless told not."""
        context = self.asyncio if asyncio else self.sync
        sock = context.socket(socket_type)
        sock.linger = 0
        self.sockets.append(sock)
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            if not sock.closed:
                sock.close(linger=0)
        terminator = threading.Thread(target=self.sync.term, daemon=True)
        terminator.start()
        terminator.join(timeout=5)
        if terminator.is_alive():
            pytest.fail("zmq context did not terminate: a socket was left open")


@pytest.fixture
def zmq_contexts(io_loop: IOLoop) -> Iterator[ZmqContexts]:
    contexts = ZmqContexts()
    yield contexts
    contexts.close()


@pytest.fixture
def make_broker(
    zmq_contexts: ZmqContexts, io_loop: IOLoop
) -> Iterator[Callable[..., LoadBalancingBroker]]:
    """Factory: a broker on two ROUTERs bound to random 127.0.0.1 ports
    (or, with ``transport="inproc"``, to unique inproc names).

    Call it inside the test coroutine (the broker starts on the running loop).
    Every broker made is closed at teardown, before the sockets' context.
    """
    brokers: list[LoadBalancingBroker] = []

    def make(transport: str = "tcp", **options: Any) -> LoadBalancingBroker:
        frontend = zmq_contexts.sync.socket(zmq.ROUTER)
        backend = zmq_contexts.sync.socket(zmq.ROUTER)
        for name, sock in (("frontend", frontend), ("backend", backend)):
            sock.linger = 0
            if transport == "inproc":  # no kernel buffers: HWMs alone bound queues
                sock.bind(f"inproc://{name}-{id(sock):x}")
            else:
                sock.bind("tcp://127.0.0.1:*")
        broker = LoadBalancingBroker(frontend, backend, **options)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.close(linger_ms=0)
