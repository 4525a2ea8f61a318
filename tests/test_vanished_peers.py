"""Peers that disappear or stop reading: nothing that could be kept is lost."""

from __future__ import annotations

import logging

import pytest
import zmq

from .peers import Worker, receive, until
from .test_broker import client, ready_in_order, workers


async def close_and_wait_until_seen(zmq_contexts, router, peer_socket) -> None:
    """Close ``peer_socket`` and wait until the broker's ``router`` has seen it go.

    Until ZeroMQ's I/O thread has processed the disconnect, the ROUTER still
    routes to the old pipe; the monitor event says when it has.
    """
    monitor = zmq_contexts.socket(zmq.PAIR)
    address = f"inproc://monitor-{id(monitor):x}"
    router.monitor(address, zmq.EVENT_DISCONNECTED)
    monitor.connect(address)
    peer_socket.close(linger=0)
    await receive(monitor)
    router.disable_monitor()


@pytest.mark.gen_test
async def test_a_request_skips_an_idle_worker_that_has_gone(zmq_contexts, make_broker, caplog):
    broker = make_broker()
    gone, alive = workers(zmq_contexts, broker, 2)
    alive.serve()
    await ready_in_order(broker, [gone, alive])  # `gone` is first in line

    await close_and_wait_until_seen(zmq_contexts, broker._backend, gone.socket)

    sender = client(zmq_contexts, broker)
    with caplog.at_level(logging.WARNING, logger="lb_ioloop"):
        await sender.send(b"HELLO")
        assert await receive(sender) == [b"OK"]
    assert broker.counters.workers_lost == 1
    assert "the peer is gone" in caplog.text
    assert len(alive.requests) == 1


@pytest.mark.gen_test
async def test_a_request_is_held_when_the_only_ready_worker_has_gone(zmq_contexts, make_broker):
    broker = make_broker()
    (gone,) = workers(zmq_contexts, broker, 1)
    await gone.ready()
    await until(lambda: broker.counters.workers_ready == 1)
    await close_and_wait_until_seen(zmq_contexts, broker._backend, gone.socket)

    sender = client(zmq_contexts, broker)
    await sender.send(b"HELLO")
    await until(lambda: broker.counters.workers_lost == 1)
    assert not broker.accepting_requests  # held, and the frontend is off
    late = Worker(zmq_contexts, broker.backend_endpoint, b"late")
    late.serve()
    await late.ready()
    assert await receive(sender) == [b"OK"]


@pytest.mark.gen_test
async def test_a_reply_for_a_client_that_has_gone_is_counted_and_the_worker_serves_on(
    zmq_contexts, make_broker, caplog
):
    broker = make_broker()
    (worker,) = workers(zmq_contexts, broker, 1)
    await worker.ready()
    leaver = client(zmq_contexts, broker)
    await leaver.send(b"HELLO")
    envelope, _ = await worker.take()
    await close_and_wait_until_seen(zmq_contexts, broker._frontend, leaver)
    with caplog.at_level(logging.WARNING, logger="lb_ioloop"):
        await worker.answer(envelope, b"OK")
        await until(lambda: broker.counters.undeliverable == 1)
    assert "the peer is gone" in caplog.text
    assert broker.counters.workers_ready == 1
    worker.serve()
    stayer = client(zmq_contexts, broker)
    await stayer.send(b"HELLO")
    assert await receive(stayer) == [b"OK"]


@pytest.mark.gen_test
async def test_a_client_that_stops_reading_cannot_freeze_the_broker(
    zmq_contexts, make_broker, caplog
):
    """2,000 pipelined requests, a receive HWM of 10, no reading: others are served."""
    broker = make_broker(transport="inproc")  # no kernel buffers: HWMs alone decide
    crew = workers(zmq_contexts, broker, 4)
    for worker in crew:
        worker.serve()
    await ready_in_order(broker, crew)

    stuck = zmq_contexts.socket(zmq.DEALER)
    stuck.rcvhwm = 10
    stuck.sndhwm = 0  # let all 2,000 requests go out
    stuck.connect(broker.frontend_endpoint)
    for n in range(2000):
        await stuck.send_multipart([b"", b"%d" % n])
    with caplog.at_level(logging.WARNING, logger="lb_ioloop"):
        await until(lambda: broker.counters.undeliverable > 0)
    assert "not reading" in caplog.text

    # The loop still serves everybody else while `stuck` reads nothing.
    other = client(zmq_contexts, broker)
    for _ in range(20):
        await other.send(b"HELLO")
        assert await receive(other) == [b"OK"]
    # Every request is answered by a worker; each reply is either handed to
    # ZeroMQ or, when `stuck`'s queue is full, counted as undeliverable.
    await until(lambda: broker.counters.replies_routed + broker.counters.undeliverable == 2000 + 20)
    assert broker.counters.requests_routed == 2000 + 20
    await until(lambda: broker.counters.workers_ready == 4)
    # What was handed over is what `stuck` can now read: nothing more, nothing less.
    delivered = broker.counters.replies_routed - 20
    for _ in range(delivered):
        assert await receive(stuck) == [b"", b"OK"]
    assert not await stuck.poll(100)


@pytest.mark.gen_test
async def test_a_worker_reconnecting_under_its_identity_takes_over(
    zmq_contexts, make_broker, caplog
):
    """ROUTER_HANDOVER: the new connection wins; the identity is queued once."""
    broker = make_broker()
    old = Worker(zmq_contexts, broker.backend_endpoint, b"same-id")
    await old.ready()
    await until(lambda: broker.counters.workers_ready == 1)
    new = Worker(zmq_contexts, broker.backend_endpoint, b"same-id")  # old still open
    new.serve()
    with caplog.at_level(logging.DEBUG, logger="lb_ioloop.broker"):
        await new.ready()
        # Its READY is a duplicate: the broker says so at debug level.
        await until(lambda: "already in the ready queue" in caplog.text)
    assert broker.counters.workers_ready == 1
    sender = client(zmq_contexts, broker)
    for _ in range(3):
        await sender.send(b"HELLO")
        assert await receive(sender) == [b"OK"]
    assert len(new.requests) == 3
    assert old.requests == []
    assert broker.counters.workers_ready == 1
